"""Preallocating the write-ahead log: the file grows, the database does not change.

``db.preallocate_wal`` leaves uncommitted frames in the log file (a rolled-back transaction
spilled them), so the commits that follow overwrite blocks instead of appending. The tests
prove it changes nothing a reader or a crash recovery can see, and that a server's writer
does it when it starts.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from charter.home import Home
from charter.server.deps import Deps
from charter.storage import db
from charter.testing import agent_draft, make_home, raw_db, raw_tx
from charter.tools import audit, identity
from charter.tools.identity import AgentContext

pytestmark = pytest.mark.sqlite_only("SQLite's write-ahead log file")


def _working_size(conn: sqlite3.Connection) -> int:
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    frames = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    return int(32 + frames * (24 + page))


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _schema(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    return conn.execute("SELECT type, name FROM sqlite_master ORDER BY name").fetchall()


async def test_preallocation_grows_the_log_and_changes_nothing_else(tmp_path: Path) -> None:
    home = await make_home(tmp_path / "home")
    await identity.add_agent(home, "mailer", scopes=["audit:read"])
    conn = raw_db(home)
    schema, head = _schema(conn), raw_tx(home).ledger.head()
    cache = conn.execute("PRAGMA cache_size").fetchone()[0]
    wal = _wal(home.layout.db)
    assert wal.stat().st_size < _working_size(conn)  # a new home's log is short

    assert db.preallocate_wal(conn) is True
    assert wal.stat().st_size >= _working_size(conn)
    assert db.preallocate_wal(conn) is False  # already at its working size: nothing to do

    assert not conn.in_transaction
    assert conn.execute("PRAGMA cache_size").fetchone()[0] == cache
    assert _schema(conn) == schema  # the scratch table was rolled back
    assert raw_tx(home).ledger.head() == head
    other = db.connect(home.layout.db)  # another connection sees the same committed state
    assert _schema(other) == schema
    assert other.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    other.close()

    await identity.revoke_agent(home, "mailer", reason="done")  # commits over the spilled frames
    await home.close()
    async with await Home.open(home.settings) as again:
        assert raw_tx(again).ledger.head()[0] == head[0] + 1
        report = await audit.verify_home(again)  # raises at any bad entry, tree or checkpoint
        assert (report.size, report.revoked) == (head[0] + 1, 1)


def test_frames_left_by_preallocation_are_not_recovered_after_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    child = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from charter.storage import db
        conn = db.connect(Path({str(path)!r}))
        conn.execute("CREATE TABLE t (n INTEGER)")
        assert db.preallocate_wal(conn)
        for n in range(3):
            conn.execute("INSERT INTO t VALUES (?)", (n,))
        os._exit(0)  # no close, no checkpoint: recovery must read the log as it is
        """
    )
    subprocess.run([sys.executable, "-c", child], check=True, timeout=60)
    assert _wal(path).stat().st_size > 1_000_000  # the spilled frames are still in the file
    conn = db.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT n FROM t ORDER BY n").fetchall() == [(0,), (1,), (2,)]
    assert [name for _, name in _schema(conn)] == ["t"]  # no scratch table came back
    conn.close()


def test_preallocation_gives_way_to_another_writer(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    holder = db.connect(path)
    holder.execute("CREATE TABLE t (n INTEGER)")
    conn = db.connect(path)
    conn.execute("PRAGMA busy_timeout=10")
    cache = conn.execute("PRAGMA cache_size").fetchone()[0]
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    assert db.preallocate_wal(conn) is False  # the lock is taken: skip, do not wait
    assert not conn.in_transaction
    assert conn.execute("PRAGMA cache_size").fetchone()[0] == cache
    holder.execute("COMMIT")
    assert conn.execute("SELECT n FROM t").fetchall() == [(1,)]
    assert db.preallocate_wal(conn) is True
    holder.close()
    conn.close()


async def _no_agent() -> AgentContext:
    raise AssertionError("no call is made")


async def test_a_new_server_preallocates_before_its_first_commit(tmp_path: Path) -> None:
    home = await make_home(tmp_path / "home")
    size_before = _wal(home.layout.db).stat().st_size
    deps = Deps(home=home, resolve_agent=_no_agent)
    await deps.start()  # the writer's own store grows the log as the server starts
    try:
        assert size_before < _working_size(raw_db(home)) <= os.path.getsize(_wal(home.layout.db))
    finally:
        await deps.shutdown()
    assert (await audit.verify_home(home)).size == raw_tx(home).ledger.head()[0]
    await home.close()


def test_preallocation_leaves_a_transaction_in_progress_alone(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "open.db")
    conn.execute("CREATE TABLE t (n INTEGER)")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t VALUES (1)")
    assert db.preallocate_wal(conn) is False  # rolling back would lose the caller's row
    assert conn.in_transaction
    conn.execute("COMMIT")
    assert conn.execute("SELECT n FROM t").fetchall() == [(1,)]
    conn.close()


async def test_a_failing_preallocation_never_stops_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(conn: sqlite3.Connection) -> bool:
        raise OSError("simulated")

    monkeypatch.setattr("charter.storage.sqlite.preallocate_wal", broken)
    home = await make_home(tmp_path / "home")
    await identity.add_agent(home, "a", scopes=["audit:read"])
    agent = await identity.load_agent(home, "a")
    deps = Deps(home=home, resolve_agent=_no_agent)
    writer = await deps.start()

    async def append_one() -> int:
        draft = agent_draft(
            agent, action="identity.whoami", session="s", call="c", args={}, outcome="ok",
            args_hash="0" * 64, require_agent="a",
        )  # fmt: skip
        return (await writer.append(draft)).seq

    assert await asyncio.wait_for(append_one(), 10) == raw_tx(home).ledger.head()[0] - 1
    await deps.shutdown()
    await home.close()
