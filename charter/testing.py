"""Helpers for tests (ours and yours): a frozen clock, throwaway homes, in-process servers."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from pathlib import Path
from typing import Any

from charter.config import Settings
from charter.home import Home
from charter.server.app import CharterServer
from charter.server.deps import Deps
from charter.server.wiring import build_server
from charter.storage.ledger import Draft
from charter.tools.identity import AgentContext, load_agent


class FrozenClock:
    """A clock that only moves when told to."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.current = start or dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)

    def now(self) -> dt.datetime:
        """The frozen time."""
        return self.current

    def advance(self, **delta: float) -> None:
        """Move forward by ``timedelta(**delta)``."""
        self.current += dt.timedelta(**delta)


async def make_home(
    root: Path,
    *,
    owner: str = "owner@example.com",
    clock: FrozenClock | None = None,
    passphrase: bytes | None = None,
) -> Home:
    """Create a new home at ``root`` (cheap key derivation, for speed)."""
    return await Home.init(
        Settings(home=root), owner=owner, clock=clock, passphrase=passphrase, cheap_kdf=True
    )


async def server_for(home: Home, agent: str) -> CharterServer:
    """An in-process server acting as ``agent`` (what ``charter serve --agent`` builds)."""
    ctx = await load_agent(home, agent)

    async def resolve() -> AgentContext:
        return ctx

    return build_server(Deps(home=home, resolve_agent=resolve))


def agent_draft(agent: AgentContext, *, action: str, phase: str = "call", **fields: Any) -> Draft:
    """A draft signed by ``agent`` under its current charter, as the gate builds them; any
    other :class:`~charter.storage.ledger.Draft` field can be given."""
    return Draft(
        actor=agent.agent_id,
        owner=agent.owner_id,
        action=action,
        phase=phase,
        signer=agent.key,
        charter=agent.charter.hash,
        **fields,
    )


def call_draft(agent: AgentContext, session: str, i: int) -> Draft:
    """An entry like the one an ``audit_query`` call writes (about 900 bytes)."""
    args = {"action": "email.send", "limit": 50, "cursor": i}
    return agent_draft(
        agent,
        action="audit.query",
        session=session,
        call=secrets.token_hex(8),
        args=args,
        args_hash=hashlib.sha256(repr(args).encode()).hexdigest(),
        outcome="ok",
        result_hash=hashlib.sha256(str(i).encode()).hexdigest(),
        require_agent=agent.name,
    )
