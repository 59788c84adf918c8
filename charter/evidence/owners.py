"""Organizations: owner certificates and the verification steps they add (AUDIT-FORMAT §13).

In an organization ledger the pinned key is the organization's; it certifies owners (each with
their own key) in ``owner.certify`` entries, and each owner signs the charters of their own
agents. The chain an auditor checks: organization key → owner certificates → charters → entries.
Pure functions over the verifier's state (:class:`OwnerState`); nothing here touches storage.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

from charter.clock import parse_rfc3339, rfc3339
from charter.errors import InvalidInput, LedgerIntegrityError
from charter.evidence.canonical import canonical_json
from charter.evidence.jwk import (
    Ed25519Signer,
    b64url,
    b64url_decode,
    public_jwk,
    public_key_from_jwk,
    thumbprint,
)
from charter.evidence.jwk import verify_signature as ed25519_verify

OWNER_CERT_PREFIX = b"charter.owner-certificate.v1\x00"
ORG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
#: What an owner's own key may sign (each only for that owner's own agents).
OWNER_ACTIONS = frozenset(
    {
        "agent.register", "agent.update", "agent.reinstate", "agent.revoke",
        "approval.approve", "approval.deny",
    }
)  # fmt: skip
#: What the organization key may not sign in an organization ledger (owners do).
_NOT_BY_ORG = frozenset(
    {"agent.register", "agent.update", "agent.reinstate", "approval.approve", "approval.deny"}
)
_CHARTER_ACTIONS = ("agent.register", "agent.update", "agent.reinstate")


def validate_org_name(name: str) -> str:
    """Return ``name`` if it is a valid organization name.

    Raises:
        InvalidInput: otherwise.
    """
    if not ORG_NAME.match(name) or "@" in name:
        raise InvalidInput(
            f"invalid organization name {name!r}: use 1-63 letters, digits, '.', '_' or '-'"
        )
    return name


def certificate_hash(cert: dict[str, Any]) -> str:
    """Hex SHA-256 of the certificate's canonical bytes (signature included)."""
    return hashlib.sha256(canonical_json(cert)).hexdigest()


def make_owner_certificate(
    *,
    org_key: Ed25519Signer,
    org_id: str,
    owner_id: str,
    owner_public_key: bytes,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> dict[str, Any]:
    """Build and sign an owner certificate (AUDIT-FORMAT §13.1).

    Raises:
        InvalidInput: an empty validity window.
    """
    if not_after <= not_before:
        raise InvalidInput("the owner certificate's validity window is empty")
    doc: dict[str, Any] = {
        "v": 1,
        "type": "owner-certificate",
        "serial": secrets.token_hex(16),
        "organization": {"id": org_id, "key": public_jwk(org_key.public_key)},
        "owner": {"id": owner_id, "key": public_jwk(owner_public_key)},
        "issued_at": rfc3339(not_before),
        "not_before": rfc3339(not_before),
        "not_after": rfc3339(not_after),
    }
    doc["sig"] = b64url(org_key.sign(OWNER_CERT_PREFIX + canonical_json(doc)))
    return doc


@dataclass(frozen=True, slots=True)
class OwnerCertView:
    """A verified owner certificate's fields."""

    doc: dict[str, Any]
    hash: str
    org_id: str
    owner_id: str
    owner_key: bytes
    not_before: dt.datetime
    not_after: dt.datetime


def verify_owner_certificate(doc: Any, org_key: bytes, org_id: str) -> OwnerCertView:
    """Check a certificate's shape and its signature by ``org_key`` for organization ``org_id``.

    Raises:
        ValueError: describing the first problem found.
    """
    if not isinstance(doc, dict) or doc.get("type") != "owner-certificate" or doc.get("v") != 1:
        raise ValueError("not a version 1 owner certificate")
    try:
        org, owner = doc["organization"], doc["owner"]
        signed_by = public_key_from_jwk(org["key"])
        view = OwnerCertView(
            doc=doc,
            hash=certificate_hash(doc),
            org_id=str(org["id"]),
            owner_id=str(owner["id"]),
            owner_key=public_key_from_jwk(owner["key"]),
            not_before=parse_rfc3339(doc["not_before"]),
            not_after=parse_rfc3339(doc["not_after"]),
        )
        sig = b64url_decode(doc["sig"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed owner certificate: {exc}") from exc
    if signed_by != org_key or view.org_id != org_id:
        raise ValueError("owner certificate names another organization or key")
    unsigned = {k: v for k, v in doc.items() if k != "sig"}
    if not ed25519_verify(signed_by, OWNER_CERT_PREFIX + canonical_json(unsigned), sig):
        raise ValueError("owner certificate signature is invalid")
    return view


@dataclass
class CertifiedOwner:
    """An owner as the ledger tells it."""

    cert: OwnerCertView
    removed_at: int | None = None


@dataclass
class OwnerState:
    """The organization part of the verifier's state (empty for a single-owner ledger)."""

    organization: str | None = None
    by_kid: dict[str, CertifiedOwner] = field(default_factory=dict)
    by_id: dict[str, CertifiedOwner] = field(default_factory=dict)
    #: Every owner key id ever certified (a key is never certified twice).
    ever: set[str] = field(default_factory=set)


class _AgentLike(Protocol):
    """What these steps read of the verifier's agents (``verifier._Agent``)."""

    @property
    def charter(self) -> Any: ...

    revoked_at: int | None
    by_lockdown: bool


def _fail(seq: int, reason: str) -> NoReturn:
    raise LedgerIntegrityError(seq, reason)


def note_genesis(entry: Mapping[str, Any], st: OwnerState) -> None:
    """At ``ledger.init``: an ``organization`` member makes this an organization ledger."""
    org = entry["args"].get("organization")
    if org is not None:
        if not isinstance(org, str) or entry["actor"] != org:
            _fail(0, "ledger.init names an organization that is not the ledger's owner")
        st.organization = org


def check_org_entry(seq: int, entry: Mapping[str, Any], st: OwnerState) -> None:
    """The rules for an entry signed by the pinned key that organizations add."""
    action = entry["action"]
    if st.organization is None:
        if action in ("owner.certify", "owner.remove"):
            _fail(seq, f"{action} in a ledger that is not an organization's")
    elif action in _NOT_BY_ORG:
        _fail(seq, f"{action} must be signed by the agent's owner, not the organization key")


def owner_signer(
    seq: int,
    entry: Mapping[str, Any],
    st: OwnerState,
    agents: Mapping[str, _AgentLike],
    approvals: Mapping[str, Any],
) -> CertifiedOwner:
    """Resolve and check an entry signed by a certified owner's key (§13.3, step 6)."""
    owner = st.by_kid[entry["kid"]]
    cert = owner.cert
    if owner.removed_at is not None:
        _fail(seq, f"signed by owner {cert.owner_id}, removed at entry {owner.removed_at}")
    if entry["actor"] != cert.owner_id or entry["charter"] is not None:
        _fail(seq, "owner-signed entry must name that owner as actor and carry no charter")
    ts = parse_rfc3339(entry["ts"])
    if not cert.not_before <= ts < cert.not_after:
        _fail(seq, "entry made outside its owner certificate's validity window")
    action, args = entry["action"], entry["args"]
    if action not in OWNER_ACTIONS:
        _fail(seq, f"an owner key may not sign {action}")
    if action in _CHARTER_ACTIONS:
        charter = args.get("charter")
        named = charter.get("owner") if isinstance(charter, dict) else None
        if not isinstance(named, dict) or named.get("id") != cert.owner_id:
            _fail(seq, f"{action} carries a charter of another owner")
    targets: list[Any] = []
    if action in _CHARTER_ACTIONS:
        agent_doc = args["charter"].get("agent")
        targets.append(agent_doc.get("id") if isinstance(agent_doc, dict) else None)
    if action == "approval.approve" or action == "approval.deny":
        approval = approvals.get(str(args.get("approval")))
        targets.append(None if approval is None else approval.actor)
    elif action != "agent.register":
        targets.append(args.get("agent_id"))
    for agent_id in targets:
        agent = agents.get(str(agent_id))
        if agent is not None and agent.charter.owner_id != cert.owner_id:
            _fail(seq, f"{action} by owner {cert.owner_id} for another owner's agent")
    return owner


class _StateLike(Protocol):
    """What :func:`apply_org_event` reads of the verifier's ``VerifyState``."""

    owners: OwnerState
    agents_by_id: Any


def apply_org_event(
    seq: int,
    entry: Mapping[str, Any],
    state: _StateLike,
    org_key: bytes,
    others: tuple[str, Mapping[str, Any]],
) -> bool:
    """Apply ``owner.certify`` / ``owner.remove`` (signed by the pinned key); False for any
    other action. ``others``: the log key's id and the agents by key id (keys in use)."""
    st: OwnerState = state.owners
    agents: Mapping[str, _AgentLike] = state.agents_by_id
    action, args = entry["action"], entry["args"]
    if action == "owner.certify":
        assert st.organization is not None  # check_org_entry ran first
        try:
            cert = verify_owner_certificate(args.get("certificate"), org_key, st.organization)
        except ValueError as exc:
            _fail(seq, f"owner.certify carries an invalid certificate: {exc}")
        if args.get("certificate_hash") != cert.hash:
            _fail(seq, "owner.certify certificate hash does not match")
        kid = thumbprint(cert.owner_key)
        current = st.by_id.get(cert.owner_id)
        if current is not None and current.removed_at is None:
            _fail(seq, f"owner.certify for {cert.owner_id}, already a current owner")
        if kid in st.ever or kid == others[0] or kid in others[1] or cert.owner_key == org_key:
            _fail(seq, "owner.certify for a key already in use in this ledger")
        owner = CertifiedOwner(cert)
        st.by_id[cert.owner_id] = owner
        st.by_kid[kid] = owner
        st.ever.add(kid)
        return True
    if action == "owner.remove":
        owner_or_none = st.by_id.get(str(args.get("owner_id")))
        if owner_or_none is None or owner_or_none.removed_at is not None:
            _fail(seq, "owner.remove names no current owner")
        if args.get("certificate_hash") != owner_or_none.cert.hash:
            _fail(seq, "owner.remove names another certificate")
        owner_or_none.removed_at = seq
        for agent in agents.values():
            if agent.charter.owner_id == owner_or_none.cert.owner_id and agent.revoked_at is None:
                agent.revoked_at = seq
                agent.by_lockdown = False
        return True
    return False


def check_charter_signers(st: OwnerState, charters: list[Any], org_key: bytes) -> None:
    """Every charter in a (resumed) state is signed by the pinned key or a certified owner.

    Raises:
        ValueError: otherwise.
    """
    keys = {o.cert.owner_key for o in st.by_kid.values()} | {org_key}
    for view in charters:
        if view.owner_key not in keys:
            raise ValueError("verifier state holds a charter no certified owner signed")
