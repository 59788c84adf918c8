"""Shared fixtures: a clean environment, a frozen clock, a throwaway home with agents."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from charter.home import Home
from charter.testing import FrozenClock, close_raw_dbs, make_home
from charter.tools import identity

# pytest's importlib mode puts no test folder on sys.path: shared test helpers (real mail
# servers, security helpers) live in tests/support and are imported by module name.
_SUPPORT = str(Path(__file__).resolve().parent / "support")
if _SUPPORT not in sys.path:
    sys.path.insert(0, _SUPPORT)

# The private PostgreSQL cluster's fixtures (tests/support/pgfixtures.py), for every test.
from pgfixtures import pg_cluster, pg_database, pg_own_cluster  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's CHARTER_* settings."""
    for name in list(os.environ):
        if name.startswith("CHARTER_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _close_raw_connections() -> Iterator[None]:
    """The raw connections a test opened (charter.testing.raw_db) close after it."""
    yield
    close_raw_dbs()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def home(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[Home]:
    """A new home with agent ``alpha`` (audit:read) and ``beta`` (no scopes)."""
    h = await make_home(tmp_path / "home", clock=clock)
    await identity.add_agent(
        h, "alpha", scopes=["audit:read"], audiences=["https://api.example.com"]
    )
    await identity.add_agent(h, "beta", scopes=[])
    yield h
    await h.close()


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    """Both MCP protocol generations: 2026-07-28 (auto) and the initialize handshake."""
    return str(request.param)
