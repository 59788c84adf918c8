"""Agents and their charters: register, update, revoke, look up (owner side and server side)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from charter.clock import rfc3339
from charter.errors import AgentRevoked, ConfigError, InvalidInput, NotFound, ScopeDenied
from charter.evidence.canonical import canonical_json
from charter.evidence.charters import (
    CharterView,
    agent_spiffe_id,
    charter_hash,
    check_validity,
    make_charter,
    validate_agent_name,
)
from charter.evidence.jwk import Ed25519Signer, public_jwk
from charter.home import ActingOwner, Home
from charter.keys import KeyHandle, agent_ref
from charter.storage.ports import Draft, Tx
from charter.tools import approvals, owners, vault
from charter.tools.charter_views import charter_view
from charter.tools.guards import check_reason, refuse_during_lockdown

DEFAULT_VALIDITY = dt.timedelta(days=90)


class AgentInfo(BaseModel):
    """What the owner (and the agent itself) may see about an agent."""

    name: str
    agent_id: str
    owner: str
    kid: str
    status: str
    scopes: list[str]
    audiences: list[str]
    policy: dict[str, Any]
    charter_hash: str
    not_before: str
    not_after: str
    created_at: str
    revoked_at: str | None = None
    revoked_reason: str | None = None
    #: A sub-agent's parent agent (by name); None for an agent the owner chartered.
    parent: str | None = None


@dataclass(frozen=True, slots=True)
class AgentContext:
    """A loaded agent, as a server acting for it needs it: key, charter and ids."""

    name: str
    key: KeyHandle
    charter: CharterView
    #: Over HTTP, the scopes of the bearer token the call came with: a call may use only
    #: what both the charter and the token grant. None over stdio (the charter alone).
    token_scopes: tuple[str, ...] | None = None

    @property
    def agent_id(self) -> str:
        """SPIFFE ID."""
        return self.charter.agent_id

    @property
    def owner_id(self) -> str:
        """The responsible human."""
        return self.charter.owner_id


def parse_duration(text: str) -> dt.timedelta:
    """Parse ``30d``, ``12h``, ``45m``, ``90s`` or ``2w``.

    Raises:
        InvalidInput: for anything else.
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise InvalidInput(f"invalid duration {text!r}: use e.g. 90d, 12h, 30m")
    seconds = int(text[:-1]) * units[text[-1]]
    if not 0 < seconds <= 10 * 365 * 86400:
        raise InvalidInput("duration must be between 1 second and 10 years")
    return dt.timedelta(seconds=seconds)


async def add_agent(
    home: Home,
    name: str,
    *,
    scopes: list[str],
    audiences: list[str] | None = None,
    valid_for: dt.timedelta = DEFAULT_VALIDITY,
    policy: dict[str, Any] | None = None,
    passphrase: bytes | None = None,
    by: ActingOwner | None = None,
) -> AgentInfo:
    """Create an agent's key and owner-signed charter, and record ``agent.register``.

    ``by``: in an organization home, the owner registering it (default: the home's default
    owner); the agent is theirs.

    Raises:
        InvalidInput: bad name, unknown scope, bad audience, or a lockdown is in effect.
        ConfigError: the agent already exists.
    """
    validate_agent_name(name)

    def check(tx: Tx) -> None:
        refuse_during_lockdown(tx)
        if tx.agents.exists(name):
            raise InvalidInput(f"agent {name!r} already exists (use `charter agent update`)")

    await home.read(check)
    by = await acting_or_default(home, by, passphrase, "agent.register")
    owner_key: Ed25519Signer = home.owner_key(passphrase) if by is None else by.key
    owner_id = home.owner_id if by is None else by.owner_id
    home.signer.remove(agent_ref(name))  # a leftover of an interrupted add is never reused
    key = KeyHandle.of(home.signer, home.signer.create(agent_ref(name)))
    now = home.clock.now()
    agent_id = agent_spiffe_id(home.trust_domain, owner_id, name)
    charter = make_charter(
        owner_key=owner_key,
        owner_id=owner_id,
        agent_id=agent_id,
        agent_name=name,
        agent_public_key=key.public_key,
        scopes=scopes,
        audiences=audiences or [],
        not_before=now,
        not_after=now + valid_for,
        policy=policy,
    )
    h = charter_hash(charter)
    event = home.owner_event(
        "agent.register",
        {"agent": name, "agent_id": agent_id, "charter": charter, "charter_hash": h},
        passphrase=passphrase,
        by=by,
    )

    def store(tx: Tx) -> AgentInfo:
        refuse_during_lockdown(tx)
        if by is not None and tx.owners.active(by.owner_id) is None:
            raise ScopeDenied(f"{by.owner_id} is no longer an owner of this organization")
        if not tx.agents.insert(
            name=name,
            agent_id=agent_id,
            public_key=public_jwk(key.public_key)["x"],
            kid=key.kid,
            charter_hash=h,
            created_at=rfc3339(now),
        ):
            raise InvalidInput(f"agent {name!r} already exists (use `charter agent update`)")
        if by is not None:
            tx.owners.set_agent_owner(name, by.owner_id)
        _store_charter(tx, name, charter, h)
        tx.ledger.append_one(event)
        return agent_info(home, tx, name)

    return await home.write(store)


async def update_agent(
    home: Home,
    name: str,
    *,
    scopes: list[str] | None = None,
    audiences: list[str] | None = None,
    valid_for: dt.timedelta | None = None,
    policy: dict[str, Any] | None = None,
    passphrase: bytes | None = None,
    by: ActingOwner | None = None,
) -> AgentInfo:
    """Re-issue an agent's charter with new grants (same key); record ``agent.update``.

    Fields left as None keep their current value. The old charter stops being accepted.

    Raises:
        NotFound: unknown agent.  AgentRevoked: the agent is revoked.
    """
    current = await get_agent(home, name)
    if current.status != "active":
        raise AgentRevoked(f"agent {name!r} is revoked; add a new agent instead")
    by = await acting_or_default(home, by, passphrase, "agent.update")
    await owners.guarded(home, name, by, "agent.update")
    view = await load_charter(home, current.charter_hash)
    now = home.clock.now()
    charter, h = successor_charter(
        home,
        name,
        view,
        owner_key=home.owner_key(passphrase) if by is None else by.key,
        now=now,
        not_after=now + valid_for
        if valid_for
        else max(view.not_after, now + dt.timedelta(seconds=1)),
        scopes=scopes,
        audiences=audiences,
        policy=policy,
    )
    event = successor_event(
        home, "agent.update", name, view, charter, h, passphrase=passphrase, by=by
    )

    def store(tx: Tx) -> AgentInfo:
        tx.agents.set_charter(name, h)
        record_successor(tx, event, name, charter, h)
        return agent_info(home, tx, name)

    return await home.write(store)


def successor_charter(
    home: Home,
    name: str,
    old: CharterView,
    *,
    owner_key: Ed25519Signer,
    now: dt.datetime,
    not_after: dt.datetime,
    scopes: list[str] | None = None,
    audiences: list[str] | None = None,
    policy: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], str]:
    """A new owner-signed charter for agent ``name`` (the id and key of ``old``), valid from
    ``now``, and its hash. ``scopes``, ``audiences`` and ``policy`` left as None keep ``old``'s.

    Raises:
        InvalidInput: an unknown scope, a bad audience or an empty validity window, or
            ``old`` is a sub-agent's delegation charter (only its parent signs those).
    """
    if old.parent_id is not None:
        raise InvalidInput(
            f"agent {name!r} is a sub-agent: its charter is signed by its parent, so it cannot "
            "be updated or reinstated (revoke it; its parent may delegate a new one)"
        )
    charter = make_charter(
        owner_key=owner_key,
        owner_id=old.owner_id if home.organization else home.owner_id,
        agent_id=old.agent_id,
        agent_name=name,
        agent_public_key=old.agent_key,
        scopes=list(old.scopes) if scopes is None else scopes,
        audiences=list(old.audiences) if audiences is None else audiences,
        not_before=now,
        not_after=not_after,
        policy=old.policy if policy is None else policy,
    )
    return charter, charter_hash(charter)


def record_successor(tx: Tx, event: Draft, name: str, charter: dict[str, Any], h: str) -> None:
    """Store a :func:`successor_charter` and append its :func:`successor_event`.

    Call it inside the transaction that points the agent at the new charter.
    """
    _store_charter(tx, name, charter, h)
    tx.ledger.append_one(event)


def successor_event(
    home: Home,
    action: str,
    name: str,
    old: CharterView,
    charter: dict[str, Any],
    h: str,
    *,
    passphrase: bytes | None,
    by: ActingOwner | None = None,
) -> Draft:
    """The owner's ``action`` entry for a :func:`successor_charter` (it replaces ``old``)."""
    return home.owner_event(
        action,
        {
            "agent": name,
            "agent_id": old.agent_id,
            "charter": charter,
            "charter_hash": h,
            "replaces": old.hash,
        },
        passphrase=passphrase,
        by=by,
    )


async def revoke_agent(
    home: Home,
    name: str,
    *,
    reason: str = "",
    passphrase: bytes | None = None,
    by: ActingOwner | None = None,
) -> AgentInfo:
    """Revoke an agent: an owner-signed ``agent.revoke`` entry; all its later calls are refused.

    Raises:
        NotFound: unknown agent.  InvalidInput: already revoked.
    """
    info = await get_agent(home, name)
    if info.status == "revoked":
        raise InvalidInput(f"agent {name!r} is already revoked")
    check_reason(reason)
    by = await acting_or_default(home, by, passphrase, "agent.revoke")
    await owners.guarded(home, name, by, "agent.revoke")
    now = rfc3339(home.clock.now())
    event = home.owner_event(
        "agent.revoke",
        {
            "agent": name,
            "agent_id": info.agent_id,
            "charter_hash": info.charter_hash,
            "reason": reason,
        },
        passphrase=passphrase,
        by=by,
    )

    def store(tx: Tx) -> AgentInfo:
        tx.agents.mark_revoked(name, at=now, reason=reason or None)
        tx.ledger.append_one(event)
        return agent_info(home, tx, name)

    return await home.write(store)


async def live_tokens(home: Home, charter: str) -> int:
    """How many tokens issued under ``charter`` (a hash) are unrevoked and unexpired: the
    ones a new charter stops (the token check wants the current charter)."""
    now = rfc3339(home.clock.now())
    return await home.read(lambda tx: tx.tokens.count_live_for_charter(charter, now))


def check_audience(audience: str) -> None:
    """Refuse an audience that is not an absolute ``http(s)://host…`` URL: a token is only
    ever checked against a resource server's URL, so anything else can never be used.

    Raises:
        InvalidInput: naming the audience.
    """
    parts = urlsplit(audience)
    try:
        host = parts.hostname
    except ValueError:
        host = None
    if parts.scheme not in ("https", "http") or not host or audience != audience.strip():
        raise InvalidInput(
            f"invalid audience {audience!r}: use the absolute URL of the service, "
            "e.g. https://api.example.com"
        )


async def check_settings(
    home: Home,
    *,
    scopes: list[str],
    audiences: list[str],
    policy: dict[str, Any],
    new_rules: tuple[str, ...] = (),
) -> list[str]:
    """Refuse or warn about charter settings that cannot take effect (before signing one).

    ``scopes``, ``audiences`` and ``policy`` are what the charter will hold; ``new_rules``
    are the approval patterns the owner gives now (older rules kept from the previous
    charter only warn).

    Returns:
        Warnings for the owner: a literal ``secret:use:NAME`` / ``secret:read:NAME`` for a
        secret that does not exist (yet), a kept approval rule no granted scope matches.

    Raises:
        InvalidInput: an audience that is not an absolute http(s) URL, or a new approval
            rule for a scope the charter does not grant.
    """
    for audience in audiences:
        check_audience(audience)
    warnings = []
    for rule in approvals.rules_of(policy):
        if approvals.can_apply(rule.pattern, scopes):
            continue
        if rule.pattern in new_rules:
            raise InvalidInput(
                f"approval rule {rule.pattern!r} can never apply: the charter does not grant "
                f"a scope it matches (grant one with --scope, e.g. --scope {rule.pattern})"
            )
        warnings.append(
            f"approval rule {rule.pattern!r} no longer applies: no granted scope matches it"
        )
    existing = {info.name for info in await vault.list_secrets(home)}
    for scope in scopes:
        family, _, name = scope.rpartition(":")
        literal = not any(c in name for c in "*?[")
        if family in ("secret:use", "secret:read") and literal and name not in existing:
            warnings.append(
                f"{scope} grants nothing yet: there is no secret {name!r} "
                f"(add it with `charter secret set {name}`)"
            )
    return warnings


def tree_order(agents: list[AgentInfo]) -> list[tuple[int, AgentInfo]]:
    """``agents`` in tree order (each sub-agent right under its parent) with their depth (0:
    an agent the owner chartered; a sub-agent whose parent is not listed counts as one)."""
    names = {a.name for a in agents}
    children: dict[str | None, list[AgentInfo]] = {}
    for a in agents:
        children.setdefault(a.parent if a.parent in names else None, []).append(a)
    out: list[tuple[int, AgentInfo]] = []

    def walk(parent: str | None, depth: int) -> None:
        for a in children.get(parent, []):
            out.append((depth, a))
            walk(a.name, depth + 1)

    walk(None, 0)
    return out


async def list_agents(home: Home) -> list[AgentInfo]:
    """Every agent of this home, by name."""
    return await home.read(lambda tx: [agent_info(home, tx, n) for n in tx.agents.list_names()])


async def get_agent(home: Home, name: str) -> AgentInfo:
    """One agent's current state and charter.

    Raises:
        NotFound: unknown agent.
    """
    return await home.read(lambda tx: agent_info(home, tx, name))


def agent_info(home: Home, tx: Tx, name: str) -> AgentInfo:
    """:func:`get_agent` inside a unit of work."""
    record = tx.agents.get(name)
    if record is None:
        raise NotFound(f"no agent named {name!r} (see `charter agent list`)")
    view = charter_view(home, tx, record.charter_hash)
    return AgentInfo(
        name=record.name,
        agent_id=record.agent_id,
        owner=view.owner_id,
        kid=record.kid,
        status=record.status,
        scopes=list(view.scopes),
        audiences=list(view.audiences),
        policy=view.policy,
        charter_hash=record.charter_hash,
        not_before=rfc3339(view.not_before),
        not_after=rfc3339(view.not_after),
        created_at=record.created_at,
        revoked_at=record.revoked_at,
        revoked_reason=record.revoked_reason,
        parent=view.doc["parent"]["id"].rsplit("/", 1)[-1] if view.parent_id else None,
    )


async def load_charter(home: Home, h: str) -> CharterView:
    """Load and re-verify a stored charter by hash.

    Raises:
        ConfigError: the stored charter is missing or fails verification (database tampered).
    """
    return await home.read(lambda tx: charter_view(home, tx, h))


async def load_agent(home: Home, name: str) -> AgentContext:
    """Load what a server needs to act as ``name``, refusing a revoked or expired agent.

    Raises:
        NotFound: unknown agent.  AgentRevoked: revoked, expired or not yet valid.
        ConfigError: key file missing/corrupt or not the charter's key.
    """
    info = await get_agent(home, name)
    if info.status != "active":
        raise AgentRevoked(f"agent {name!r} has been revoked and cannot be served")
    refusal = await home.read(lambda tx: tx.agent_refusal(name, info.charter_hash))
    if refusal is not None:  # a sub-agent whose ancestor was revoked or re-chartered
        raise refusal
    view = await load_charter(home, info.charter_hash)
    check_validity(view, home.clock.now())
    key = KeyHandle.of(home.signer, agent_ref(name))
    if key.public_key != view.agent_key:
        raise ConfigError(f"key file for agent {name!r} does not match its charter")
    return AgentContext(name=name, key=key, charter=view)


def _store_charter(tx: Tx, name: str, charter: dict[str, Any], h: str) -> None:
    tx.agents.insert_charter(
        h, agent_name=name, body=canonical_json(charter), issued_at=charter["issued_at"]
    )


async def acting_or_default(
    home: Home, by: ActingOwner | None, passphrase: bytes | None, action: str
) -> ActingOwner | None:
    """``by``, or in an organization home the default owner when none is given."""
    if by is not None and by.is_org and action != "agent.revoke":
        raise InvalidInput("the organization key does not sign charters: an owner does that")
    if by is None and home.organization is not None:
        return await owners.acting_owner(home, passphrase=passphrase)
    return by
