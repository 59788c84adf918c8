"""The inline SQLite store (charter/storage/inline.py): the same units of work, transactions
and ledger as the threaded store, run on the caller's thread and never suspending, so
``charter hook claude-code`` runs without an event loop (issue 26)."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from charter.cli.hook import _sqlite_home, _step
from charter.errors import AgentRevoked, ConfigError, InvalidInput, LedgerUnavailable
from charter.evidence.entries import Entry
from charter.home import Home
from charter.storage.inline import InlineSqliteStore
from charter.storage.ports import Draft, Tx
from charter.testing import agent_draft, make_home
from charter.tools import audit, identity

pytestmark = pytest.mark.sqlite_only("the inline store is SQLite's")
T = TypeVar("T")


def step(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end in one step (fails if it suspends)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise AssertionError("suspended")


@pytest.fixture
async def home(tmp_path: Path) -> AsyncIterator[Home]:
    h = await make_home(tmp_path / "home")
    await identity.add_agent(h, "alpha", scopes=["audit:read"])
    yield h
    await h.close()


def _draft(agent: identity.AgentContext, i: int) -> Draft:
    return agent_draft(
        agent,
        action="identity.whoami",
        session="s",
        call=secrets.token_hex(8),
        args={"i": i},
        args_hash=hashlib.sha256(str(i).encode()).hexdigest(),
        outcome="ok",
        require_agent=agent.name,
    )


async def test_units_of_work_run_inline_and_never_suspend(home: Home) -> None:
    inline = step(Home.open(home.settings, inline=True))
    try:
        assert isinstance(inline.store, InlineSqliteStore)
        here = threading.get_ident()
        assert step(inline.read(lambda tx: threading.get_ident())) == here
        assert step(inline.write(lambda tx: threading.get_ident())) == here
        step(inline.write(lambda tx: tx.meta.set("inline:seen", "yes")))
    finally:
        step(inline.close())
    assert await home.read(lambda tx: tx.meta.get("inline:seen")) == "yes"


async def test_a_write_is_all_or_nothing(home: Home) -> None:
    inline = step(Home.open(home.settings, inline=True))

    def half_then_fail(tx: Tx) -> None:
        tx.meta.set("inline:first", "1")
        raise InvalidInput("refused halfway")

    try:
        with pytest.raises(InvalidInput, match="refused halfway"):
            step(inline.write(half_then_fail))
        assert step(inline.read(lambda tx: tx.meta.get("inline:first"))) is None
    finally:
        step(inline.close())


async def test_its_appends_and_the_threaded_stores_form_one_chain(home: Home) -> None:
    alpha = await identity.load_agent(home, "alpha")
    size = await home.read(lambda tx: tx.queries.size())
    inline = step(Home.open(home.settings, inline=True))
    try:
        for b in range(3):
            mine = step(inline.store.append([_draft(alpha, 10 * b), _draft(alpha, 10 * b + 1)]))
            theirs = await home.store.append([_draft(alpha, 10 * b + 2)])
            assert all(isinstance(e, Entry) for e in [*mine, *theirs])
    finally:
        step(inline.close())
    assert (await audit.verify_home(home)).size == size + 9


async def test_a_revoked_agent_is_refused_inside_the_append(home: Home) -> None:
    alpha = await identity.load_agent(home, "alpha")
    await identity.revoke_agent(home, "alpha", reason="inline")
    inline = step(Home.open(home.settings, inline=True))
    try:
        (result,) = step(inline.store.append([_draft(alpha, 1)]))
    finally:
        step(inline.close())
    assert isinstance(result, AgentRevoked)
    await audit.verify_home(home)


async def test_a_closed_or_missing_store_refuses_with_a_clear_error(
    home: Home, tmp_path: Path
) -> None:
    inline = step(Home.open(home.settings, inline=True))
    store = inline.store
    step(inline.close())
    with pytest.raises(LedgerUnavailable, match="closed"):
        step(store.read(lambda tx: tx.meta.get("origin")))
    with pytest.raises(ConfigError, match="no database"):
        InlineSqliteStore.open(tmp_path / "nowhere.db")


async def test_the_hook_runs_inline_only_on_a_sqlite_home(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHARTER_DATABASE_URL", raising=False)
    assert _sqlite_home(home.settings.home)
    monkeypatch.setenv("CHARTER_DATABASE_URL", "postgresql://charter@localhost/charter")
    assert not _sqlite_home(home.settings.home)  # PostgreSQL: the event loop path


async def test_a_hook_that_would_suspend_fails_instead_of_blocking() -> None:
    import asyncio

    async def waits() -> Any:
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="suspended"):
        _step(waits())
