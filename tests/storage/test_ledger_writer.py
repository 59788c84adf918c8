"""LedgerWriter: group commit on its thread, or inline when idle (stdio), same guarantees.

An awaited append is committed (another connection sees it), the chain stays valid under
concurrent callers, a revoked agent's draft is refused and the refusal recorded, and the
after-commit hooks run on the writer thread in both modes.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import sqlite3
import threading
from collections.abc import Sequence

import pytest

from charter.errors import AgentRevoked, LedgerUnavailable
from charter.home import Home
from charter.storage.db import connect
from charter.storage.ledger import AfterCommit, Draft, Ledger, LedgerWriter
from charter.testing import agent_draft
from charter.tools import audit, identity


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


def _writer(home: Home, *, inline: bool, hooks: Sequence[AfterCommit] = ()) -> LedgerWriter:
    ledger = Ledger(
        connect(home.layout.db),
        home.identity,
        home.clock,
        log_key=home.log_key,
        hooks=home.ledger.hooks,
    )
    return LedgerWriter(ledger, hooks, inline=inline)


def _close(writer: LedgerWriter) -> None:
    writer.close()
    writer.ledger.conn.close()


@pytest.fixture(params=[False, True], ids=["thread", "inline"])
def inline(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


async def test_an_awaited_append_is_committed(home: Home, inline: bool) -> None:
    alpha = identity.load_agent(home, "alpha")
    writer = _writer(home, inline=inline)
    try:
        entry = await writer.append(_draft(alpha, 1))
        other = sqlite3.connect(home.layout.db)  # a separate connection sees it at once
        row = other.execute("SELECT hash FROM ledger WHERE seq = ?", (entry.seq,)).fetchone()
        other.close()
        assert row == (entry.hash,)
    finally:
        _close(writer)
    audit.verify_home(home)


async def test_concurrent_callers_keep_one_valid_chain(home: Home, inline: bool) -> None:
    alpha = identity.load_agent(home, "alpha")
    writer = _writer(home, inline=inline)
    size, _ = home.ledger.head()
    try:
        entries = await asyncio.gather(*(writer.append(_draft(alpha, i)) for i in range(60)))
    finally:
        _close(writer)
    assert sorted(e.seq for e in entries) == list(range(size, size + 60))
    assert audit.verify_home(home).size == size + 60


async def test_revoked_agent_is_refused_and_the_refusal_recorded(home: Home, inline: bool) -> None:
    alpha = identity.load_agent(home, "alpha")
    writer = _writer(home, inline=inline)
    try:
        identity.revoke_agent(home, "alpha", reason="test")
        with pytest.raises(AgentRevoked):
            await writer.append(_draft(alpha, 1))
    finally:
        _close(writer)
    last = home.ledger.get(home.ledger.head()[0] - 1)
    assert last is not None
    assert (last.fields["outcome"], last.fields["kid"]) == ("denied", home.log_key.kid)
    audit.verify_home(home)


async def test_after_commit_hooks_run_on_the_writer_thread(home: Home, inline: bool) -> None:
    alpha = identity.load_agent(home, "alpha")
    ran = threading.Event()
    threads: list[str] = []

    def hook(conn: sqlite3.Connection) -> None:
        threads.append(threading.current_thread().name)
        ran.set()

    writer = _writer(home, inline=inline, hooks=[hook])
    try:
        await writer.append(_draft(alpha, 1))
        assert await asyncio.to_thread(ran.wait, 10)
    finally:
        _close(writer)
    assert set(threads) == {"charter-ledger"}


async def test_inline_append_queues_while_the_writer_is_busy(home: Home) -> None:
    """While the thread holds the connection (here: a slow hook), appends wait their turn."""
    alpha = identity.load_agent(home, "alpha")
    hook_started, release = threading.Event(), threading.Event()

    def slow_hook(conn: sqlite3.Connection) -> None:
        hook_started.set()
        release.wait(10)

    writer = _writer(home, inline=True, hooks=[slow_hook])
    try:
        await writer.append(_draft(alpha, 1))  # inline; then the hook holds the writer
        assert await asyncio.to_thread(hook_started.wait, 10)
        queued = asyncio.ensure_future(writer.append(_draft(alpha, 2)))
        await asyncio.sleep(0)
        assert not queued.done()  # not committed inline: the writer is busy
        release.set()
        entry = await asyncio.wait_for(queued, 10)
    finally:
        release.set()
        _close(writer)
    assert entry.fields["args"] == {"i": 2}
    audit.verify_home(home)


def _count_commits(writer: LedgerWriter) -> list[str]:
    commits: list[str] = []
    writer.ledger.conn.set_trace_callback(
        lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None
    )
    return commits


async def test_callers_of_one_loop_turn_share_one_inline_commit(home: Home) -> None:
    alpha = identity.load_agent(home, "alpha")
    writer = _writer(home, inline=True)
    commits = _count_commits(writer)
    try:
        entries = await asyncio.gather(*(writer.append(_draft(alpha, i)) for i in range(8)))
        assert len(commits) == 1  # eight entries, one transaction, one fsync
        await writer.append(_draft(alpha, 8))  # a lone caller: its own batch
        assert len(commits) == 2
    finally:
        _close(writer)
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)
    audit.verify_home(home)


async def test_a_cancelled_leader_still_commits_the_batch_it_gathered(home: Home) -> None:
    alpha = identity.load_agent(home, "alpha")
    writer = _writer(home, inline=True)
    try:
        leader, *followers = (
            asyncio.ensure_future(writer.append(_draft(alpha, i))) for i in range(3)
        )
        await asyncio.sleep(0)  # all three have joined the batch; the leader is yielding
        leader.cancel()
        entries = await asyncio.wait_for(asyncio.gather(*followers), 10)
        with pytest.raises(asyncio.CancelledError):
            await leader
    finally:
        _close(writer)
    assert [e.fields["args"] for e in entries] == [{"i": 1}, {"i": 2}]
    # The leader's entry was committed with the batch, as a queued one would have been.
    size, _ = home.ledger.head()
    assert audit.verify_home(home).size == size
    assert {"i": 0} in [home.ledger.get(s).fields["args"] for s in range(size - 3, size)]  # type: ignore[union-attr]


def test_a_failing_effect_fails_its_draft_only(home: Home) -> None:
    alpha = identity.load_agent(home, "alpha")
    size, _ = home.ledger.head()

    def applied(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta(key, value) VALUES ('effect', 'applied')")

    def broken(conn: sqlite3.Connection) -> None:
        applied(conn)  # rolled back with the rest of this draft
        raise RuntimeError("effect failed")

    first, second, third = _draft(alpha, 1), _draft(alpha, 2), _draft(alpha, 3)
    first.effects, third.effects = (broken,), (applied,)
    results = home.ledger.append([first, second, third])
    assert isinstance(results[0], LedgerUnavailable)
    assert [r.seq for r in results[1:]] == [size, size + 1]  # type: ignore[union-attr]
    rows = home.conn.execute("SELECT value FROM meta WHERE key = 'effect'").fetchall()
    assert rows == [("applied",)]  # the third draft's effect, once
    assert audit.verify_home(home).size == size + 2


async def test_a_held_write_lock_never_stalls_the_event_loop(home: Home) -> None:
    """Another process's write transaction: the inline commit hands its batch to the writer
    thread, which waits for the lock; the loop keeps serving meanwhile."""
    alpha = identity.load_agent(home, "alpha")
    writer = _writer(home, inline=True)
    holder = sqlite3.connect(home.layout.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.ensure_future(ticker())
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
        _close(writer)
    assert entry.fields["args"] == {"i": 1}
    audit.verify_home(home)
