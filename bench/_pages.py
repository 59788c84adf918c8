"""``python -m bench.diagnose pages``: database pages written per tool call, by table.

A durable commit's cost grows with the pages it writes (each a frame of the write-ahead log,
all synced together; BENCHMARKS.md "Pages per commit"). This serves each tool in process with
the log's checkpoints off, makes ``n`` calls, then reads the log itself (SQLite's WAL format:
a 32-byte header, then 24-byte frame headers each followed by one page; a frame whose second
word is non-zero ends a commit) and names each page's table or index with ``dbstat``.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import sqlite3
import statistics
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bench._common import scratch_dir
from bench._ledgers import AGENT, INBOX, new_home
from bench.bench_toolcall import AUDIENCE
from charter.server.deps import Deps
from charter.server.wiring import build_server
from charter.storage import sqlite as sqlite_backend
from charter.tools import identity

K = TypeVar("K", int, float)

CALLS: list[tuple[str, dict[str, Any]]] = [
    ("identity_whoami", {}),
    ("token_issue", {"audience": AUDIENCE, "scopes": ["audit:read"]}),
    ("email_send", {"to": INBOX, "subject": "bench", "text": "a short note"}),
]


def wal_commits(db: Path) -> list[list[int]]:
    """The page numbers each commit in ``db``'s write-ahead log wrote, oldest first."""
    data = Path(f"{db}-wal").read_bytes()
    if len(data) < 32:
        return []
    page_size = struct.unpack(">I", data[8:12])[0]
    salts = data[16:24]
    commits: list[list[int]] = []
    frame: list[int] = []
    offset = 32
    while offset + 24 + page_size <= len(data) and data[offset + 8 : offset + 16] == salts:
        page, commit_size = struct.unpack(">II", data[offset : offset + 8])
        frame.append(page)
        if commit_size:
            commits.append(frame)
            frame = []
        offset += 24 + page_size
    return commits


def _tables(db: Path) -> dict[int, str]:
    with sqlite3.connect(db) as conn:
        return {
            int(page): str(name) for name, page in conn.execute("SELECT name, pageno FROM dbstat")
        }


async def frames_per_call(
    tool: str, args: dict[str, Any], n: int
) -> tuple[list[list[int]], dict[int, str]]:
    """Make ``n`` calls of ``tool`` on a new home; return the pages each call's commit wrote
    (oldest first) and the table of each page."""
    from mcp import Client

    async def keep_frames(self: sqlite_backend.SqliteStore) -> None:
        # no checkpoints on the writer's store: the log keeps every frame for the count
        await self.run(lambda conn: conn.execute("PRAGMA wal_autocheckpoint=0"))

    home = await new_home(scratch_dir(f"pages-{tool}") / "home")
    agent = await identity.load_agent(home, AGENT)

    async def resolve() -> identity.AgentContext:
        return agent

    real_warm = sqlite_backend.SqliteStore.warm
    sqlite_backend.SqliteStore.warm = keep_frames  # type: ignore[method-assign]
    try:
        server = build_server(Deps(home=home, resolve_agent=resolve))
        async with Client(server, mode="legacy") as client:
            for _ in range(n):
                result = await client.call_tool(tool, args)
                if result.is_error:
                    raise RuntimeError(f"{tool}: {result.content}")
            return wal_commits(home.layout.db)[-n:], _tables(home.layout.db)
    finally:
        sqlite_backend.SqliteStore.warm = real_warm  # type: ignore[method-assign]
        await home.close()


def _commit_p50s(
    settings: list[K],
    n: int,
    prepare: Callable[[sqlite3.Connection], None],
    timed_commit: Callable[[sqlite3.Connection, K], float],
) -> dict[K, float]:
    """p50 microseconds of ``timed_commit(db, setting)`` (it returns the seconds it timed) for
    each setting, in alternating rounds of 20, on a scratch database that ``prepare`` fills,
    with Charter's pragmas (WAL, synchronous=FULL) and its log preallocated."""
    from charter.storage.db import connect, preallocate_wal

    db = connect(scratch_dir("commit") / "commit.db")
    prepare(db)
    preallocate_wal(db)
    samples: dict[K, list[float]] = {setting: [] for setting in settings}
    for _ in range(max(n // 20, 1)):
        for setting in settings:
            samples[setting].extend(timed_commit(db, setting) for _ in range(20))
    db.close()
    return {setting: statistics.median(v) * 1e6 for setting, v in samples.items()}


def commit_cost(pages: list[int], n: int) -> dict[int, float]:
    """p50 microseconds of a durable commit that rewrites ``k`` random pages of a table, for
    each ``k`` in ``pages``."""

    def prepare(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
        db.execute("BEGIN")
        rows = ((i, os.urandom(400)) for i in range(20_000))
        db.executemany("INSERT INTO t VALUES (?, ?)", rows)
        db.execute("COMMIT")

    def rewrite(db: sqlite3.Connection, k: int) -> float:
        keys = random.sample(range(0, 20_000, 10), k)  # ~10 rows a page: k pages
        started = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        for key in keys:
            db.execute("UPDATE t SET v = ? WHERE k = ?", (os.urandom(400), key))
        db.execute("COMMIT")
        return time.perf_counter() - started

    return _commit_p50s(pages, n, prepare, rewrite)


def commit_after_idle(gaps_ms: list[float], n: int) -> dict[float, float]:
    """p50 microseconds of a one-row durable commit made ``gap`` ms after the previous one
    returned, for each gap: a server's commits come one per call, with the client's round
    trip in between, not back to back."""

    def prepare(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE calls (n INTEGER PRIMARY KEY, at REAL NOT NULL)")

    def insert_after(db: sqlite3.Connection, gap: float) -> float:
        if gap:
            time.sleep(gap / 1000)
        started = time.perf_counter()
        db.execute("INSERT INTO calls(at) VALUES (?)", (time.time(),))
        return time.perf_counter() - started

    return _commit_p50s(gaps_ms, n, prepare, insert_after)


def pages(n: int) -> None:
    """Print what a commit costs by the pages it writes and by the idle time before it, then
    the mean pages per call of each tool and which tables they belong to."""
    cost = commit_cost([1, 2, 4, 6, 8, 10, 13, 16, 20], n)
    print(
        "  p50 of a durable commit by pages written: "
        + ", ".join(f"{k}: {us:,.0f} us" for k, us in cost.items())
    )
    idle = commit_after_idle([0, 0.2, 1, 5], n)
    print(
        "  p50 of a one-row durable commit by the idle time before it: "
        + ", ".join(f"{gap:g} ms: {us:,.0f} us" for gap, us in idle.items())
    )
    for tool, args in CALLS:
        commits, names = asyncio.run(frames_per_call(tool, args, n))
        by_table = collections.Counter(names.get(p, "?") for c in commits for p in c)
        mean = sum(map(len, commits)) / max(len(commits), 1)
        counts = by_table.most_common()
        parts = ", ".join(f"{name} {k / len(commits):.1f}" for name, k in counts if k)
        print(f"  {tool:16s} {mean:5.1f} pages per call ({len(commits)} calls): {parts}")
