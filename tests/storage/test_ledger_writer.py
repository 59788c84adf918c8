"""LedgerWriter: group commit on the store's own thread, never on the event loop.

An awaited append is committed (another connection sees it), the chain stays valid under
concurrent callers, a revoked agent's draft is refused and the refusal recorded, callers that
arrive together share one transaction, callers that arrive during a commit share the next,
the after-commit hooks run off the event loop, and a write lock held by another process never
stalls the loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import sqlite3
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest

from charter.errors import AgentRevoked, LedgerUnavailable
from charter.home import Home
from charter.storage.ledger import Draft
from charter.storage.ports import Tx
from charter.storage.sqlite import SqliteStore
from charter.storage.writer import AfterCommit, LedgerWriter
from charter.testing import agent_draft, conn_of, raw_db, raw_tx
from charter.tools import audit, identity

pytestmark = pytest.mark.sqlite_only(
    "drives a SqliteStore of its own (commit traces); the store contract suite covers the"
    " writer's PostgreSQL store"
)


def _draft(agent: identity.AgentContext, i: int) -> Draft:
    return agent_draft(
        agent,
        action="identity.whoami",
        phase="call",
        session="s",
        call=secrets.token_hex(8),
        args={"i": i},
        args_hash=hashlib.sha256(str(i).encode()).hexdigest(),
        outcome="ok",
        require_agent=agent.name,
    )


@asynccontextmanager
async def _writer(home: Home, hooks: Sequence[AfterCommit] = ()) -> AsyncIterator[LedgerWriter]:
    """A writer on a store of its own, as a server's (``Deps.start``)."""
    store = await SqliteStore.open(home.layout.db)
    store.bind(home.identity, home.clock, home.log_key)
    writer = LedgerWriter(store, hooks)
    try:
        yield writer
    finally:
        await writer.close()
        await store.close()


async def _count_commits(writer: LedgerWriter) -> list[str]:
    store = writer.store
    assert isinstance(store, SqliteStore)
    commits: list[str] = []

    def trace(conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(
            lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None
        )

    await store.run(trace)
    return commits


async def test_an_awaited_append_is_committed(home: Home) -> None:
    alpha = await identity.load_agent(home, "alpha")
    async with _writer(home) as writer:
        entry = await writer.append(_draft(alpha, 1))
        other = sqlite3.connect(home.layout.db)  # a separate connection sees it at once
        row = other.execute("SELECT hash FROM ledger WHERE seq = ?", (entry.seq,)).fetchone()
        other.close()
        assert row == (entry.hash,)
    await audit.verify_home(home)


async def test_concurrent_callers_keep_one_valid_chain(home: Home) -> None:
    alpha = await identity.load_agent(home, "alpha")
    size, _ = raw_tx(home).ledger.head()
    async with _writer(home) as writer:
        entries = await asyncio.gather(*(writer.append(_draft(alpha, i)) for i in range(60)))
    assert sorted(e.seq for e in entries) == list(range(size, size + 60))
    assert (await audit.verify_home(home)).size == size + 60


async def test_revoked_agent_is_refused_and_the_refusal_recorded(home: Home) -> None:
    alpha = await identity.load_agent(home, "alpha")
    async with _writer(home) as writer:
        await identity.revoke_agent(home, "alpha", reason="test")
        with pytest.raises(AgentRevoked):
            await writer.append(_draft(alpha, 1))
    last = raw_tx(home).ledger.get(raw_tx(home).ledger.head()[0] - 1)
    assert last is not None
    assert (last.fields["outcome"], last.fields["kid"]) == ("denied", home.log_key.kid)
    await audit.verify_home(home)


async def test_after_commit_hooks_run_off_the_event_loop(home: Home) -> None:
    alpha = await identity.load_agent(home, "alpha")
    ran = asyncio.Event()
    threads: list[threading.Thread] = []
    loop = asyncio.get_running_loop()

    def hook(tx: Tx) -> None:
        threads.append(threading.current_thread())
        loop.call_soon_threadsafe(ran.set)

    async with _writer(home, hooks=[hook]) as writer:
        await writer.append(_draft(alpha, 1))
        await asyncio.wait_for(ran.wait(), 10)
    assert threads and threading.main_thread() not in threads


async def test_callers_of_one_loop_turn_share_one_commit(home: Home) -> None:
    alpha = await identity.load_agent(home, "alpha")
    async with _writer(home) as writer:
        commits = await _count_commits(writer)
        entries = await asyncio.gather(*(writer.append(_draft(alpha, i)) for i in range(8)))
        assert len(commits) == 1  # eight entries, one transaction, one fsync
        await writer.append(_draft(alpha, 8))  # a lone caller: its own batch
        assert len(commits) == 2
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)
    await audit.verify_home(home)


async def test_callers_arriving_during_a_commit_share_the_next_one(home: Home) -> None:
    """Group commit: while one batch waits (here for another process's write lock), every
    caller that arrives joins the next batch: two transactions for six entries."""
    alpha = await identity.load_agent(home, "alpha")
    holder = sqlite3.connect(home.layout.db, isolation_level=None)
    async with _writer(home) as writer:
        commits = await _count_commits(writer)
        holder.execute("BEGIN IMMEDIATE")
        try:
            first = asyncio.ensure_future(writer.append(_draft(alpha, 0)))
            await asyncio.sleep(0.2)  # the first batch is on the store's thread, waiting
            rest = [asyncio.ensure_future(writer.append(_draft(alpha, i))) for i in range(1, 6)]
            await asyncio.sleep(0.05)
            assert not first.done()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        entries = await asyncio.wait_for(asyncio.gather(first, *rest), 30)
        assert len(commits) == 2
    assert [e.fields["args"]["i"] for e in entries] == list(range(6))
    await audit.verify_home(home)


async def test_a_cancelled_caller_does_not_stop_its_batch(home: Home) -> None:
    alpha = await identity.load_agent(home, "alpha")
    async with _writer(home) as writer:
        first, *others = (asyncio.ensure_future(writer.append(_draft(alpha, i))) for i in range(3))
        await asyncio.sleep(0)  # all three have joined the batch
        first.cancel()
        entries = await asyncio.wait_for(asyncio.gather(*others), 10)
        with pytest.raises(asyncio.CancelledError):
            await first
    assert [e.fields["args"] for e in entries] == [{"i": 1}, {"i": 2}]
    # The cancelled caller's entry was committed with the batch (it was already under way).
    size, _ = raw_tx(home).ledger.head()
    assert (await audit.verify_home(home)).size == size
    bodies = [raw_tx(home).ledger.get(s) for s in range(size - 3, size)]
    assert {"i": 0} in [b.fields["args"] for b in bodies if b is not None]


async def test_a_failing_effect_fails_its_draft_only(home: Home) -> None:
    alpha = await identity.load_agent(home, "alpha")
    size, _ = raw_tx(home).ledger.head()

    def applied(tx: Tx) -> None:
        conn_of(tx).execute("INSERT INTO meta(key, value) VALUES ('effect', 'applied')")

    def broken(tx: Tx) -> None:
        applied(tx)  # rolled back with the rest of this draft
        raise RuntimeError("effect failed")

    first, second, third = _draft(alpha, 1), _draft(alpha, 2), _draft(alpha, 3)
    first.effects, third.effects = (broken,), (applied,)
    results = await home.store.append([first, second, third])
    assert isinstance(results[0], LedgerUnavailable)
    assert [r.seq for r in results[1:]] == [size, size + 1]  # type: ignore[union-attr]
    rows = raw_db(home).execute("SELECT value FROM meta WHERE key = 'effect'").fetchall()
    assert rows == [("applied",)]  # the third draft's effect, once
    assert (await audit.verify_home(home)).size == size + 2


async def test_a_held_write_lock_never_stalls_the_event_loop(home: Home) -> None:
    """Another process's write transaction: the batch waits for the lock on the store's
    thread; the loop keeps serving meanwhile."""
    alpha = await identity.load_agent(home, "alpha")
    holder = sqlite3.connect(home.layout.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.ensure_future(ticker())
    async with _writer(home) as writer:
        try:
            append = asyncio.ensure_future(writer.append(_draft(alpha, 1)))
            await asyncio.sleep(0.5)
            assert not append.done()  # still waiting for the lock
            assert ticks >= 15  # ~50 at 10 ms; a loop blocked in SQLite's busy wait ticks ~0
            holder.execute("ROLLBACK")
            entry = await asyncio.wait_for(append, 10)
        finally:
            ticking.cancel()
            if holder.in_transaction:
                holder.execute("ROLLBACK")
            holder.close()
    assert entry.fields["args"] == {"i": 1}
    await audit.verify_home(home)
