"""Shared fixtures: a clean environment, a frozen clock, a throwaway home with agents."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from charter import testing
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

#: ``CHARTER_TEST_DATABASE=postgresql``: the whole suite over PostgreSQL (issue 18). Every home
#: ``make_home`` (and so the ``home`` fixture) creates lives on a database of its own on one
#: session cluster (tests/support/pg.py); tests SQLite-specific by nature carry
#: ``@pytest.mark.sqlite_only("why")`` and are skipped on that run with their reason.
ON_POSTGRESQL = os.environ.get("CHARTER_TEST_DATABASE", "sqlite") == "postgresql"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not ON_POSTGRESQL:
        return
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            why = marker.args[0] if marker.args else "SQLite-specific"
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {why}"))


@pytest.fixture(scope="session", autouse=True)
def _suite_database(request: pytest.FixtureRequest) -> Iterator[None]:
    """On the PostgreSQL run: homes go to the session cluster (see ``ON_POSTGRESQL``)."""
    if not ON_POSTGRESQL:
        yield
        return
    cluster = request.getfixturevalue("pg_cluster")
    testing.use_postgresql(cluster.dsn())
    try:
        yield
    finally:
        testing.use_postgresql(None)


@pytest.fixture(scope="module", autouse=True)
def _drop_scratch_databases() -> Iterator[None]:
    """The PostgreSQL run's per-home databases are dropped after each module (a module's
    fixtures may keep a home across its tests)."""
    yield
    if ON_POSTGRESQL:
        close_raw_dbs()
        testing.drop_scratch_databases()


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
