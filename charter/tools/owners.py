"""Owners of an organization home (issue 28): certify, list, remove; who is acting.

An organization home's owner key slot holds the organization key: it certifies owners
(``owner.certify``), removes them (``owner.remove``, revoking their agents in the same
transaction, so their next call is refused by the gate's one revocation query), revokes any
agent and locks down. Each owner signs their own agents' charters and approvals with their own
key (``--owner-key FILE``, or the home's default owner). See AUDIT-FORMAT.md §13.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from charter.clock import parse_rfc3339, rfc3339
from charter.errors import InvalidInput, NotFound, ScopeDenied
from charter.evidence.jwk import Ed25519Signer, public_jwk, thumbprint
from charter.home import ActingOwner, Home, check_email
from charter.keys import KeyHandle
from charter.keys.owner_files import load_owner_key_file, owner_public_key_file
from charter.keys.signer import DEFAULT_OWNER
from charter.storage.owners import OwnerRecord
from charter.storage.ports import Draft, Tx


class OwnerInfo(BaseModel):
    """An owner as ``charter owner list`` shows it."""

    owner: str
    kid: str
    public_key: dict[str, str]
    status: str
    certificate: str
    added_at: str
    valid_until: str
    removed_at: str | None = None
    default: bool = False


def _info(home: Home, rec: OwnerRecord) -> OwnerInfo:
    return OwnerInfo(
        owner=rec.owner_id,
        kid=rec.kid,
        public_key={"kty": "OKP", "crv": "Ed25519", "x": rec.public_key},
        status=rec.status,
        certificate=rec.cert_hash,
        added_at=rec.added_at,
        valid_until=rec.not_after,
        removed_at=rec.removed_at,
        default=rec.owner_id == home.meta.get("default_owner") and rec.status == "active",
    )


def require_org(home: Home) -> str:
    """The organization's name.

    Raises:
        InvalidInput: the home has no organization.
    """
    if home.organization is None:
        raise InvalidInput(
            "this home has one owner and no organization (make one with `charter init --org`)"
        )
    return home.organization


async def add_owner(
    home: Home, owner_id: str, public_key: bytes, *, passphrase: bytes | None = None
) -> OwnerInfo:
    """Certify ``owner_id``'s key with the organization key (``owner.certify``).

    Raises:
        InvalidInput: no organization, a bad email, a current owner, or a key in use.
    """
    require_org(home)
    check_email(owner_id)
    if thumbprint(public_key) in (thumbprint(home.owner_public_key), home.log_key.kid):
        raise InvalidInput("that is one of the home's own keys, not an owner's")
    certify = home.owner_certification(owner_id, public_key, passphrase=passphrase)

    def store(tx: Tx) -> OwnerInfo:
        certify(tx)
        rec = tx.owners.active(owner_id)
        assert rec is not None
        return _info(home, rec)

    return await home.write(store)


async def list_owners(home: Home) -> list[OwnerInfo]:
    """Every owner, current and removed."""
    require_org(home)
    return await home.read(lambda tx: [_info(home, r) for r in tx.owners.all_owners()])


async def remove_owner(
    home: Home, owner_id: str, *, reason: str = "", passphrase: bytes | None = None
) -> tuple[OwnerInfo, list[str]]:
    """Remove an owner (``owner.remove``, organization-signed) and revoke their agents in the
    same transaction. Returns the owner and the names of the agents revoked.

    Raises:
        NotFound: no current owner with that email.
    """
    require_org(home)
    rec = await home.read(lambda tx: tx.owners.active(owner_id))
    if rec is None:
        raise NotFound(f"{owner_id} is not a current owner (see `charter owner list`)")
    agents = await home.read(lambda tx: tx.owners.active_agents_of(owner_id))
    now = rfc3339(home.clock.now())
    event = home.owner_event(
        "owner.remove",
        {
            "owner_id": owner_id,
            "certificate_hash": rec.cert_hash,
            "reason": reason,
            "agents": [agent_id for _, agent_id in agents],
        },
        passphrase=passphrase,
    )

    def store(tx: Tx) -> tuple[OwnerInfo, list[str]]:
        current = tx.owners.active(owner_id)
        if current is None or current.kid != rec.kid:
            raise NotFound(f"{owner_id} is not a current owner (see `charter owner list`)")
        if tx.owners.active_agents_of(owner_id) != agents:  # an agent was added meanwhile
            raise InvalidInput("the owner's agents changed meanwhile; run it again")
        tx.owners.mark_removed(rec.kid, at=now)
        tx.owners.revoke_agents_of(owner_id, at=now, reason=f"owner {owner_id} removed")
        tx.ledger.append_one(event)
        removed = tx.owners.by_kid(rec.kid)
        assert removed is not None
        return _info(home, removed), [name for name, _ in agents]

    return await home.write(store)


async def acting_owner(
    home: Home,
    *,
    owner_key: Path | None = None,
    as_org: bool = False,
    passphrase: bytes | None = None,
) -> ActingOwner | None:
    """Who signs an owner action: None in a home without an organization (its one owner);
    else the organization key (``as_org``), the owner whose key file is ``owner_key``, or the
    home's default owner.

    Raises:
        InvalidInput: those options in a home without an organization.
        ScopeDenied: the key is not a current owner's of this organization.
    """
    if home.organization is None:
        if owner_key is not None or as_org:
            raise InvalidInput("--owner-key and --as-org need an organization home")
        return None
    if as_org:
        if owner_key is not None:
            raise InvalidInput("--owner-key and --as-org contradict each other")
        return ActingOwner(home.owner_id, home.owner_key(passphrase), is_org=True)
    signer: Ed25519Signer
    if owner_key is not None:
        signer = load_owner_key_file(owner_key, passphrase)
    else:
        home.signer.unlock(DEFAULT_OWNER, passphrase)
        signer = KeyHandle.of(home.signer, DEFAULT_OWNER)
    public, kid = signer.public_key, thumbprint(signer.public_key)
    rec = await home.read(lambda tx: tx.owners.by_kid(kid))
    if rec is None or rec.status != "active" or rec.public_key != public_jwk(public)["x"]:
        raise ScopeDenied("that key is not a current owner's of this organization")
    if home.clock.now() >= parse_rfc3339(rec.not_after):
        raise ScopeDenied(f"the owner certificate of {rec.owner_id} has expired")
    return ActingOwner(rec.owner_id, signer)


async def owner_of_key(home: Home, owner_key: Path | None = None) -> str:
    """The current owner whose public key is in ``owner_key`` (else the home's default
    owner's): no passphrase needed, nothing signed (for listings).

    Raises:
        InvalidInput: no organization.  ScopeDenied: not a current owner's key.
    """
    require_org(home)
    if owner_key is not None:
        public = owner_public_key_file(owner_key)
    else:
        public = home.signer.public_key(DEFAULT_OWNER)
    rec = await home.read(lambda tx: tx.owners.by_kid(thumbprint(public)))
    if rec is None or rec.status != "active":
        raise ScopeDenied("that key is not a current owner's of this organization")
    return rec.owner_id


def check_owns(tx: Tx, home: Home, name: str, by: ActingOwner | None, action: str) -> None:
    """Refuse ``action`` on agent ``name`` unless ``by`` is its owner or the organization.

    A refusal is recorded in the ledger (``owner.refusal``, denied, under the log key) in
    this unit of work; the caller must let the transaction commit (see :func:`refuse`).
    """
    if by is None or by.is_org:
        return
    owner = tx.owners.agent_owner(name)
    if owner == by.owner_id:
        return
    raise _Refused(
        _refusal(home, by, action, name),
        f"agent {name!r} belongs to another owner; only its owner or the organization may "
        f"{action.split('.', 1)[1]} it",
    )


class _Refused(Exception):
    def __init__(self, draft: Draft, message: str) -> None:
        super().__init__(message)
        self.draft = draft
        self.message = message


def _refusal(home: Home, by: ActingOwner, action: str, name: str) -> Draft:
    args = {"attempted": action, "agent": name, "by": by.owner_id}
    return Draft(
        actor=by.owner_id,
        owner=home.owner_id,
        action="owner.refusal",
        phase="event",
        signer=home.log_key,
        args=args,
        args_hash=None,
        outcome="denied",
        reason="another owner's agent",
    )


async def guarded(home: Home, name: str, by: ActingOwner | None, action: str) -> None:
    """Check before signing anything that ``by`` may do ``action`` to ``name``; a refusal is
    recorded (committed) and raised as :class:`ScopeDenied`.

    Raises:
        ScopeDenied: another owner's agent.  NotFound: unknown agent.
    """

    def check(tx: Tx) -> str | None:
        if not tx.agents.exists(name):
            raise NotFound(f"no agent named {name!r} (see `charter agent list`)")
        try:
            check_owns(tx, home, name, by, action)
        except _Refused as refused:
            tx.ledger.append_one(refused.draft)
            return refused.message
        return None

    message = await home.write(check)
    if message is not None:
        raise ScopeDenied(message)
