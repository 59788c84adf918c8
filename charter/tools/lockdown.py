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
import sqlite3

from pydantic import BaseModel

from charter.clock import rfc3339
from charter.errors import InvalidInput
from charter.home import Home
from charter.storage.db import transaction
from charter.tools.approvals import cancel_open
from charter.tools.identity import (
    AgentInfo,
    check_reason,
    get_agent,
    load_charter,
    record_successor,
    successor_charter,
)


class LockdownState(BaseModel):
    """Whether the owner's kill switch is on, since when, why, and whom it revoked."""

    active: bool
    lockdown_id: int | None = None
    since: str | None = None
    reason: str | None = None
    agents: list[str] = []
    awaiting_reinstatement: list[str] = []


def lockdown_state(conn: sqlite3.Connection) -> LockdownState:
    """The current (or, when lifted, the latest) lockdown and who still awaits reinstatement."""
    row = conn.execute(
        "SELECT id, started_at, reason, lifted_at FROM lockdowns ORDER BY id DESC LIMIT 1"
    ).fetchone()
    waiting = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT la.agent FROM lockdown_agents la JOIN agents a ON a.name = la.agent"
            " WHERE la.reinstated_at IS NULL AND a.status = 'revoked' ORDER BY la.agent"
        )
    ]
    if row is None:
        return LockdownState(active=False, awaiting_reinstatement=waiting)
    agents = [
        r[0]
        for r in conn.execute(
            "SELECT agent FROM lockdown_agents WHERE lockdown_id = ? ORDER BY agent", (row[0],)
        )
    ]
    return LockdownState(
        active=row[3] is None,
        lockdown_id=row[0],
        since=row[1],
        reason=row[2],
        agents=agents,
        awaiting_reinstatement=waiting,
    )


def refuse_during_lockdown(conn: sqlite3.Connection) -> None:
    """Raise :class:`InvalidInput` while a lockdown is in effect."""
    state = lockdown_state(conn)
    if state.active:
        raise InvalidInput(
            f"Charter is locked down (since {state.since}); lift it first with "
            "`charter lockdown --lift`, then reinstate agents one by one"
        )


def lockdown(home: Home, *, reason: str = "", passphrase: bytes | None = None) -> LockdownState:
    """Revoke every active agent and cancel every open approval, in one signed entry.

    Idempotent: while a lockdown is in effect, returns its state and records nothing.

    Raises:
        InvalidInput: reason too long.  ConfigError: wrong owner passphrase.
    """
    check_reason(reason)
    home.owner_key(passphrase)
    now = rfc3339(home.clock.now())
    with transaction(home.conn):
        current = lockdown_state(home.conn)
        if current.active:
            return current
        active = home.conn.execute(
            "SELECT name, agent_id FROM agents WHERE status = 'active' ORDER BY name"
        ).fetchall()
        lockdown_id = home.conn.execute(
            "INSERT INTO lockdowns(started_at, reason) VALUES (?, ?)", (now, reason or None)
        ).lastrowid
        home.conn.execute(
            "UPDATE agents SET status = 'revoked', revoked_at = ?, revoked_reason = ?"
            " WHERE status = 'active'",
            (now, f"lockdown: {reason}" if reason else "lockdown"),
        )
        home.conn.executemany(
            "INSERT INTO lockdown_agents(lockdown_id, agent) VALUES (?, ?)",
            [(lockdown_id, name) for name, _ in active],
        )
        cancelled = cancel_open(home.conn, reason="lockdown", now=now)
        home.record_owner_event(
            "owner.lockdown",
            {
                "lockdown": lockdown_id,
                "reason": reason,
                "agents": [agent_id for _, agent_id in active],
                "approvals_cancelled": cancelled,
            },
            passphrase=passphrase,
        )
    return lockdown_state(home.conn)


def lift(home: Home, *, passphrase: bytes | None = None) -> LockdownState:
    """End the lockdown (``owner.lockdown.lift``); every agent stays revoked until reinstated.

    Raises:
        InvalidInput: no lockdown is in effect.  ConfigError: wrong owner passphrase.
    """
    home.owner_key(passphrase)
    with transaction(home.conn):
        state = lockdown_state(home.conn)
        if not state.active:
            raise InvalidInput("Charter is not locked down")
        home.conn.execute(
            "UPDATE lockdowns SET lifted_at = ? WHERE id = ?",
            (rfc3339(home.clock.now()), state.lockdown_id),
        )
        home.record_owner_event(
            "owner.lockdown.lift", {"lockdown": state.lockdown_id}, passphrase=passphrase
        )
    return lockdown_state(home.conn)


def reinstate_agent(
    home: Home,
    name: str,
    *,
    scopes: list[str] | None = None,
    audiences: list[str] | None = None,
    valid_for: dt.timedelta | None = None,
    passphrase: bytes | None = None,
) -> AgentInfo:
    """Re-approve an agent a lockdown revoked: a new owner-signed charter for the same key.

    Fields left as None keep the old charter's value (the validity window restarts now, for
    the old window's length unless ``valid_for`` is given); the policy is kept.

    Raises:
        NotFound: unknown agent.  InvalidInput: locked down, not revoked by a lockdown, or
        already reinstated.  ConfigError: wrong owner passphrase.
    """
    owner_key = home.owner_key(passphrase)
    with transaction(home.conn):
        refuse_during_lockdown(home.conn)
        info = get_agent(home, name)
        row = home.conn.execute(
            "SELECT lockdown_id FROM lockdown_agents WHERE agent = ? AND reinstated_at IS NULL",
            (name,),
        ).fetchone()
        if info.status != "revoked" or row is None:
            raise InvalidInput(
                f"agent {name!r} was not revoked by a lockdown; only those can be reinstated"
                " (a revocation by `charter agent revoke` is final: add a new agent instead)"
            )
        old = load_charter(home, info.charter_hash)
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
        home.conn.execute(
            "UPDATE agents SET status = 'active', charter_hash = ?, revoked_at = NULL,"
            " revoked_reason = NULL WHERE name = ?",
            (h, name),
        )
        home.conn.execute(
            "UPDATE lockdown_agents SET reinstated_at = ?"
            " WHERE agent = ? AND reinstated_at IS NULL",
            (rfc3339(now), name),
        )
        record_successor(home, "agent.reinstate", name, old, charter, h, passphrase=passphrase)
    return get_agent(home, name)
