"""A server's writer store copies the write-ahead log back on a thread of its own
(charter/storage/wal.py) while it appends: the log stays bounded and is reused, every entry
stays durable and verifiable, and closing the store stops the thread."""

from __future__ import annotations

import asyncio
import hashlib
import secrets

import pytest

from charter.home import Home
from charter.storage.ledger import Draft
from charter.storage.sqlite import SqliteStore
from charter.testing import agent_draft
from charter.tools import audit, identity

pytestmark = pytest.mark.sqlite_only("SQLite's write-ahead log")

#: One page plus its frame header, as SQLite lays out the log (db.preallocate_wal).
FRAME = 24 + 4096


def _draft(agent: identity.AgentContext, i: int) -> Draft:
    return agent_draft(
        agent,
        action="identity.whoami",
        session="s",
        call=secrets.token_hex(8),
        args={"i": i, "pad": "x" * 3000},  # ~1 page per entry
        args_hash=hashlib.sha256(str(i).encode()).hexdigest(),
        outcome="ok",
        require_agent=agent.name,
    )


async def _writer_store(home: Home) -> SqliteStore:
    """The store a server's writer appends on (``Deps.start``)."""
    store = await SqliteStore.open(home.layout.db)
    store.bind(home.identity, home.clock, home.log_key)
    await store.warm()
    return store


async def test_the_writer_never_checkpoints_in_a_commit_and_the_log_stays_bounded(
    home: Home,
) -> None:
    agent = await identity.load_agent(home, "alpha")
    store = await _writer_store(home)
    checkpointer = store._checkpointer
    assert checkpointer is not None and checkpointer.alive
    try:
        wal = home.layout.db.with_name(home.layout.db.name + "-wal")
        size = wal.stat().st_size
        for i in range(600):  # ~1800 pages through the log
            await store.append([_draft(agent, i)])
        await asyncio.sleep(checkpointer.idle_seconds + 0.2)
        assert checkpointer.checkpoints >= 3
        # the log is reused, not grown: it never held much more than its preallocated pages
        assert wal.stat().st_size <= max(size, 1100 * FRAME)
    finally:
        await store.close()
    assert not checkpointer._thread.is_alive()  # closing the store stops its thread
    assert (await audit.verify_home(home)).size >= 600


async def test_a_token_issue_writes_few_pages_and_one_merkle_page() -> None:
    """The schema keeps an append's pages few (0015): what a token_issue's commit writes, read
    from the write-ahead log itself. Fails if the Merkle tree goes back to a page per level,
    or a random-key index comes back on the ledger or the tokens."""
    from bench._pages import frames_per_call
    from bench.bench_toolcall import AUDIENCE

    commits, tables = await frames_per_call("token_issue", {"audience": AUDIENCE}, 60)
    assert len(commits) == 60
    per_table: dict[str, int] = {}
    for commit in commits:
        for page in commit:
            name = tables.get(page, "?")
            per_table[name] = per_table.get(name, 0) + 1
    assert sum(map(len, commits)) / 60 <= 11, per_table
    assert per_table["merkle_nodes"] / 60 <= 1.3, per_table
    assert not [name for name in per_table if name.startswith("sqlite_autoindex_ledger")]
    assert not [name for name in per_table if name.startswith("sqlite_autoindex_tokens")]
