"""Shared fixtures: a clean environment, a frozen clock, a throwaway home with agents."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from charter.home import Home
from charter.testing import FrozenClock, make_home
from charter.tools import identity

# pytest's importlib mode puts no test folder on sys.path: shared test helpers (real mail
# servers, security helpers) live in tests/support and are imported by module name.
_SUPPORT = str(Path(__file__).resolve().parent / "support")
if _SUPPORT not in sys.path:
    sys.path.insert(0, _SUPPORT)


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's CHARTER_* settings."""
    for name in list(os.environ):
        if name.startswith("CHARTER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def home(tmp_path: Path, clock: FrozenClock) -> Iterator[Home]:
    """A new home with agent ``alpha`` (audit:read) and ``beta`` (no scopes)."""
    h = make_home(tmp_path / "home", clock=clock)
    identity.add_agent(h, "alpha", scopes=["audit:read"], audiences=["https://api.example.com"])
    identity.add_agent(h, "beta", scopes=[])
    yield h
    h.close()


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    """Both MCP protocol generations: 2026-07-28 (auto) and the initialize handshake."""
    return str(request.param)
