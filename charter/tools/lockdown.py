"""The owner's kill switch: revoke every agent at once, lift, reinstate agents one by one.

``charter lockdown`` writes one owner-signed ``owner.lockdown`` entry that revokes every active
agent (the verifier applies it to all agents) and cancels every open approval. Running
servers re-check the agent's status on every call and inside every ledger append, so the very
next call is refused. Tokens die with their agent.

``charter lockdown --lift`` (``owner.lockdown.lift``) ends the lockdown but reinstates no one:
the owner re-approves each agent with ``charter agent reinstate NAME`` (``agent.reinstate``:
a new owner-signed charter for the same agent and key). Only agents a lockdown revoked can be
reinstated; ``charter agent revoke`` stays final. While locked down, no agent can be added,
updated or reinstated.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel

from charter.clock import rfc3339
from charter.errors import InvalidInput
from charter.evidence.jwk import Ed25519Signer
from charter.home import ActingOwner, Home
from charter.storage.ports import Tx
from charter.tools import owners
from charter.tools.approvals import cancel_open
from charter.tools.charter_views import charter_view
from charter.tools.guards import check_reason, refuse_during_lockdown
from charter.tools.identity import (
    AgentInfo,
    acting_or_default,
    agent_info,
    record_successor,
    successor_charter,
    successor_event,
)


class LockdownState(BaseModel):
    """Whether the owner's kill switch is on, since when, why, and whom it revoked."""

    active: bool
    lockdown_id: int | None = None
    since: str | None = None
    reason: str | None = None
    agents: list[str] = []
    awaiting_reinstatement: list[str] = []


async def get_state(home: Home) -> LockdownState:
    """The current (or, when lifted, the latest) lockdown and who still awaits reinstatement."""
    return await home.read(lockdown_state)


def lockdown_state(tx: Tx) -> LockdownState:
    """:func:`get_state` inside a unit of work."""
    repo = tx.lockdown
    latest = repo.latest()
    waiting = repo.list_awaiting_reinstatement()
    if latest is None:
        return LockdownState(active=False, awaiting_reinstatement=waiting)
    return LockdownState(
        active=latest.active,
        lockdown_id=latest.id,
        since=latest.started_at,
        reason=latest.reason,
        agents=repo.agents_of(latest.id),
        awaiting_reinstatement=waiting,
    )


async def lockdown(
    home: Home, *, reason: str = "", passphrase: bytes | None = None
) -> LockdownState:
    """Revoke every active agent and cancel every open approval, in one signed entry.

    Idempotent: while a lockdown is in effect, returns its state and records nothing.

    Raises:
        InvalidInput: reason too long.  ConfigError: wrong owner passphrase.
    """
    check_reason(reason)
    home.owner_key(passphrase)
    now = rfc3339(home.clock.now())

    def work(tx: Tx) -> LockdownState:
        current = lockdown_state(tx)
        if current.active:
            return current
        agents, lockdowns = tx.agents, tx.lockdown
        active = agents.list_active()
        lockdown_id = lockdowns.insert(started_at=now, reason=reason or None)
        agents.mark_all_revoked(at=now, reason=f"lockdown: {reason}" if reason else "lockdown")
        lockdowns.add_agents(lockdown_id, [a.name for a in active])
        cancelled = cancel_open(tx, reason="lockdown", now=now)
        event = home.owner_event(
            "owner.lockdown",
            {
                "lockdown": lockdown_id,
                "reason": reason,
                "agents": [a.agent_id for a in active],
                "approvals_cancelled": cancelled,
            },
            passphrase=passphrase,
        )
        tx.ledger.append_one(event)
        return lockdown_state(tx)

    return await home.write(work)


async def lift(home: Home, *, passphrase: bytes | None = None) -> LockdownState:
    """End the lockdown (``owner.lockdown.lift``); every agent stays revoked until reinstated.

    Raises:
        InvalidInput: no lockdown is in effect.  ConfigError: wrong owner passphrase.
    """
    home.owner_key(passphrase)
    now = rfc3339(home.clock.now())

    def work(tx: Tx) -> LockdownState:
        state = lockdown_state(tx)
        if not state.active:
            raise InvalidInput("Charter is not locked down")
        assert state.lockdown_id is not None  # an active lockdown has an id
        tx.lockdown.mark_lifted(state.lockdown_id, at=now)
        tx.ledger.append_one(
            home.owner_event(
                "owner.lockdown.lift", {"lockdown": state.lockdown_id}, passphrase=passphrase
            )
        )
        return lockdown_state(tx)

    return await home.write(work)


async def reinstate_agent(
    home: Home,
    name: str,
    *,
    scopes: list[str] | None = None,
    audiences: list[str] | None = None,
    valid_for: dt.timedelta | None = None,
    passphrase: bytes | None = None,
    by: ActingOwner | None = None,
) -> AgentInfo:
    """Re-approve an agent a lockdown revoked: a new owner-signed charter for the same key
    (in an organization home, signed by the agent's own owner: ``by``, else the default one).

    Fields left as None keep the old charter's value (the validity window restarts now, for
    the old window's length unless ``valid_for`` is given); the policy is kept.

    Raises:
        NotFound: unknown agent.  InvalidInput: locked down, not revoked by a lockdown, or
        already reinstated.  ConfigError: wrong owner passphrase.
    """
    by = await acting_or_default(home, by, passphrase, "agent.reinstate")
    if by is not None:
        await owners.guarded(home, name, by, "agent.reinstate")
    owner_key: Ed25519Signer = home.owner_key(passphrase) if by is None else by.key

    def work(tx: Tx) -> AgentInfo:
        refuse_during_lockdown(tx)
        info = agent_info(home, tx, name)
        lockdowns = tx.lockdown
        if info.status != "revoked" or lockdowns.find_unreinstated(name) is None:
            raise InvalidInput(
                f"agent {name!r} was not revoked by a lockdown; only those can be reinstated"
                " (a revocation by `charter agent revoke` is final: add a new agent instead)"
            )
        old = charter_view(home, tx, info.charter_hash)
        now = home.clock.now()
        charter, h = successor_charter(
            home,
            name,
            old,
            owner_key=owner_key,
            now=now,
            not_after=now + (valid_for or (old.not_after - old.not_before)),
            scopes=scopes,
            audiences=audiences,
        )
        tx.agents.mark_active(name, h)
        lockdowns.mark_reinstated(name, at=rfc3339(now))
        event = successor_event(
            home, "agent.reinstate", name, old, charter, h, passphrase=passphrase, by=by
        )
        record_successor(tx, event, name, charter, h)
        return agent_info(home, tx, name)

    return await home.write(work)
