"""PostgreSQL drivers and sequencing schemes for the ledger's append, measured (issue 18).

    python -m bench.pg_drivers [--seconds 2] [--rounds 2] [--writers 1,4,8] [--dsn URL]
                               [--drivers D,..] [--variants V,..] [--servers S]

Without ``--dsn`` it starts a private cluster (tests/support/pg.py: loopback, a temporary
folder, ``fsync=on``, ``synchronous_commit=on``) and removes it at the end. The drivers it
compares are not all in the ``postgres`` extra; install the others ad hoc first:

    pip install -e '.[postgres]' 'psycopg[binary]>=3.2'     # asyncpg (the extra) + psycopg 3

What one writer does, in a loop, on its own connection (``synchronous_commit=on``):

- ``raw``: the baseline. One INSERT of the entry's bytes (600 bytes) into a table with a
  generated key, COMMIT. No order, no chain: the least a durable append can cost.
- ``pattern``: the log's append without sequencing: the entry INSERT (seq from a sequence)
  plus a small second INSERT (an index row), COMMIT.
- ``row-1`` / ``adv-1``: one entry per transaction under the sequencing lock: ``SELECT ... FOR
  UPDATE`` of the one-row head table (``row``) or ``pg_advisory_xact_lock`` (``adv``), read the
  head, INSERT entry and index row with seq = size, next hash = SHA-256(prev || body), UPDATE
  the head, COMMIT. Every writer takes the lock itself (as many processes with one caller
  each would): the lock is held across the commit's fsync, so commits cannot share one.
- ``row-batch`` / ``adv-batch``: the same lock, but the writers hand their entries to one
  sequencer (per process) that writes everything pending, up to 256 entries, in one
  transaction (two ``INSERT ... SELECT unnest(...)``), then acknowledges them: how Trillian
  and Tessera sequence on MySQL/PostgreSQL.

- ``cas-1`` / ``cas-batch`` (asyncpg only): the head row as a compare-and-set. The writer
  (or sequencer) remembers the head it last wrote; one statement moves the head row from it
  and inserts the entries only if it did (the UPDATE's row lock serializes writers), so an
  append is BEGIN, one statement, COMMIT, as in ``raw``. When another writer moved the head,
  the statement changes nothing: read the head, chain again, retry.

- ``hybrid-batch`` (asyncpg): the sequencer tries the compare-and-set first and, when another
  process moved the head, takes the head row's lock in the same transaction, reads the head
  and writes (one statement): no retry loop.

``--servers S`` runs S sequencers (each its own connection, as S server processes would)
sharing the writers of the ``-batch`` variants; ``--variants`` picks variants (``raw`` is
always run: it is the baseline).

Drivers: ``asyncpg`` (async), ``psycopg`` 3 async (``psycopg-async``), psycopg 3 sync with a
worker thread per writer (``psycopg-thread``). Each cell reports entries/s (median of the
rounds; baseline and subjects alternate, order flipped each round), per-entry latency p50/p99
(submit to acknowledgement) and the ratio of its entries/s to the same driver's ``raw`` with
the same number of writers. After every sequenced cell the log is checked: entries 0..n-1, each
chained to the one before, the head at the end (the run stops if not).
docs/POSTGRES-NOTES.md has a run and the choice made from it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BODY = os.urandom(600)
SMALL = "agent-7"
BATCH_MAX = 256
LOCK_KEY = 0x43686172  # "Char"
SCHEMA = """
DROP TABLE IF EXISTS raw_entries, entries, entry_index, head;
DROP SEQUENCE IF EXISTS entry_seq;
CREATE TABLE raw_entries (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body BYTEA NOT NULL);
CREATE SEQUENCE entry_seq;
CREATE TABLE entries (seq BIGINT PRIMARY KEY, prev BYTEA NOT NULL UNIQUE, body BYTEA NOT NULL);
CREATE TABLE entry_index (seq BIGINT PRIMARY KEY, actor TEXT NOT NULL);
CREATE INDEX entry_index_actor ON entry_index(actor, seq);
CREATE TABLE head (id INT PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL, hash BYTEA NOT NULL);
INSERT INTO head VALUES (1, 0, '\\x00');
"""
DRIVERS = ("asyncpg", "psycopg-async", "psycopg-thread")
VARIANTS = (
    "raw",
    "pattern",
    "row-1",
    "adv-1",
    "row-batch",
    "adv-batch",
    "cas-1",
    "cas-batch",
    "hybrid-batch",
)
#: Variants only the asyncpg functions implement (the recommended driver's refinement).
ASYNCPG_ONLY = ("cas-1", "cas-batch", "hybrid-batch")

# -- SQL, written once with $n placeholders (psycopg gets %s) ---------------------------------

RAW = "INSERT INTO raw_entries(body) VALUES ($1)"
PATTERN_ENTRY = "INSERT INTO entries(seq, prev, body) VALUES (nextval('entry_seq'), $1, $2)"
PATTERN_INDEX = "INSERT INTO entry_index(seq, actor) VALUES (currval('entry_seq'), $1)"
LOCK_ROW = "SELECT size, hash FROM head WHERE id = 1 FOR UPDATE"
LOCK_ADV = f"SELECT pg_advisory_xact_lock({LOCK_KEY})"
HEAD = "SELECT size, hash FROM head WHERE id = 1"
ENTRY = "INSERT INTO entries(seq, prev, body) VALUES ($1, $2, $3)"
INDEX = "INSERT INTO entry_index(seq, actor) VALUES ($1, $2)"
ENTRIES = (
    "INSERT INTO entries(seq, prev, body)"
    " SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bytea[])"
)
INDEXES = "INSERT INTO entry_index(seq, actor) SELECT * FROM unnest($1::bigint[], $2::text[])"
SET_HEAD = "UPDATE head SET size = $1, hash = $2 WHERE id = 1"
# The head row as a compare-and-set: one statement moves the head from the (size, hash) this
# sequencer last saw and inserts the batch only if it did; the UPDATE's row lock serializes
# writers. Zero rows: another process appended since; read the head and chain again.
CAS = (
    "WITH h AS (UPDATE head SET size = $4, hash = $5 WHERE id = 1 AND size = $6 AND hash = $7"
    " RETURNING size),"
    " e AS (INSERT INTO entries(seq, prev, body)"
    "  SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bytea[])"
    "  WHERE EXISTS (SELECT 1 FROM h)),"
    " i AS (INSERT INTO entry_index(seq, actor)"
    "  SELECT s, $8 FROM unnest($1::bigint[]) s WHERE EXISTS (SELECT 1 FROM h))"
    " SELECT count(*) FROM h"
)
#: The head each asyncpg connection last wrote or read (cas variants).
_HEADS: dict[int, tuple[int, bytes]] = {}


def _ps(sql: str) -> str:
    import re

    return re.sub(r"\$\d+", "%s", sql)


def _chain(size: int, prev: bytes, n: int) -> tuple[list[int], list[bytes], bytes]:
    """Seqs and prev hashes for n entries after a head (size, hash); the new head hash."""
    seqs, prevs = [], []
    for i in range(n):
        seqs.append(size + i)
        prevs.append(prev)
        prev = hashlib.sha256(prev + BODY).digest()
    return seqs, prevs, prev


# -- one transaction per driver ----------------------------------------------------------------
# Each returns after COMMIT; `n` entries are written (n > 1 only in the batch variants).


async def _asyncpg_cas(conn: Any, n: int) -> None:
    while True:
        if id(conn) not in _HEADS:
            row = await conn.fetchrow(HEAD)
            _HEADS[id(conn)] = (row[0], row[1])
        size, prev = _HEADS[id(conn)]
        seqs, prevs, new = _chain(size, prev, n)
        async with conn.transaction():
            moved = await conn.fetchval(
                CAS, seqs, prevs, [BODY] * n, size + n, new, size, prev, SMALL
            )
        if moved:
            _HEADS[id(conn)] = (size + n, new)
            return
        del _HEADS[id(conn)]  # another writer moved the head: read it, chain again


async def _asyncpg_hybrid(conn: Any, n: int) -> None:
    """The compare-and-set first (one statement when no other process appended since), else,
    in the same transaction, the head row's lock: wait for it, read the head, write. Never
    more than one extra round trip, never a retry loop."""
    async with conn.transaction():
        if id(conn) in _HEADS:
            size, prev = _HEADS[id(conn)]
            seqs, prevs, new = _chain(size, prev, n)
            args = (seqs, prevs, [BODY] * n, size + n, new, size, prev, SMALL)
            if await conn.fetchval(CAS, *args):
                _HEADS[id(conn)] = (size + n, new)
                return
        row = await conn.fetchrow(LOCK_ROW)
        size, prev = row[0], row[1]
        seqs, prevs, new = _chain(size, prev, n)
        args = (seqs, prevs, [BODY] * n, size + n, new, size, prev, SMALL)
        if not await conn.fetchval(CAS, *args):  # we hold the lock: it cannot move
            raise RuntimeError("the head moved under its lock")
        _HEADS[id(conn)] = (size + n, new)


async def _asyncpg_txn(conn: Any, variant: str, n: int) -> None:
    if variant.startswith("cas"):
        await _asyncpg_cas(conn, n)
        return
    if variant.startswith("hybrid"):
        await _asyncpg_hybrid(conn, n)
        return
    async with conn.transaction():
        if variant == "raw":
            await conn.execute(RAW, BODY)
            return
        if variant == "pattern":
            await conn.execute(PATTERN_ENTRY, b"\x00" + os.urandom(8), BODY)
            await conn.execute(PATTERN_INDEX, SMALL)
            return
        if variant.startswith("adv"):
            await conn.execute(LOCK_ADV)
        row = await conn.fetchrow(LOCK_ROW if variant.startswith("row") else HEAD)
        seqs, prevs, new = _chain(row[0], row[1], n)
        if n == 1:
            await conn.execute(ENTRY, seqs[0], prevs[0], BODY)
            await conn.execute(INDEX, seqs[0], SMALL)
        else:
            await conn.execute(ENTRIES, seqs, prevs, [BODY] * n)
            await conn.execute(INDEXES, seqs, [SMALL] * n)
        await conn.execute(SET_HEAD, seqs[-1] + 1, new)


async def _psycopg_async_txn(conn: Any, variant: str, n: int) -> None:
    async with conn.transaction():
        if variant == "raw":
            await conn.execute(_ps(RAW), (BODY,))
            return
        if variant == "pattern":
            await conn.execute(_ps(PATTERN_ENTRY), (b"\x00" + os.urandom(8), BODY))
            await conn.execute(_ps(PATTERN_INDEX), (SMALL,))
            return
        if variant.startswith("adv"):
            await conn.execute(LOCK_ADV)
        cur = await conn.execute(LOCK_ROW if variant.startswith("row") else HEAD)
        row = await cur.fetchone()
        seqs, prevs, new = _chain(row[0], row[1], n)
        if n == 1:
            await conn.execute(_ps(ENTRY), (seqs[0], prevs[0], BODY))
            await conn.execute(_ps(INDEX), (seqs[0], SMALL))
        else:
            await conn.execute(_ps(ENTRIES), (seqs, prevs, [BODY] * n))
            await conn.execute(_ps(INDEXES), (seqs, [SMALL] * n))
        await conn.execute(_ps(SET_HEAD), (seqs[-1] + 1, new))


def _psycopg_sync_txn(conn: Any, variant: str, n: int) -> None:
    with conn.transaction():
        if variant == "raw":
            conn.execute(_ps(RAW), (BODY,))
            return
        if variant == "pattern":
            conn.execute(_ps(PATTERN_ENTRY), (b"\x00" + os.urandom(8), BODY))
            conn.execute(_ps(PATTERN_INDEX), (SMALL,))
            return
        if variant.startswith("adv"):
            conn.execute(LOCK_ADV)
        row = conn.execute(LOCK_ROW if variant.startswith("row") else HEAD).fetchone()
        seqs, prevs, new = _chain(row[0], row[1], n)
        if n == 1:
            conn.execute(_ps(ENTRY), (seqs[0], prevs[0], BODY))
            conn.execute(_ps(INDEX), (seqs[0], SMALL))
        else:
            conn.execute(_ps(ENTRIES), (seqs, prevs, [BODY] * n))
            conn.execute(_ps(INDEXES), (seqs, [SMALL] * n))
        conn.execute(_ps(SET_HEAD), (seqs[-1] + 1, new))


Txn = Callable[[int], Awaitable[None]]  # write n entries in one transaction


async def _open_asyncpg(dsn: str, pool: ThreadPoolExecutor) -> tuple[Any, Any]:
    asyncpg = importlib.import_module("asyncpg")
    conn = await asyncpg.connect(dsn)

    async def run(variant: str, n: int) -> None:
        await _asyncpg_txn(conn, variant, n)

    return run, conn.close


async def _open_psycopg_async(dsn: str, pool: ThreadPoolExecutor) -> tuple[Any, Any]:
    psycopg = importlib.import_module("psycopg")
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)

    async def run(variant: str, n: int) -> None:
        await _psycopg_async_txn(conn, variant, n)

    return run, conn.close


async def _open_psycopg_thread(dsn: str, pool: ThreadPoolExecutor) -> tuple[Any, Any]:
    psycopg = importlib.import_module("psycopg")
    loop = asyncio.get_running_loop()
    conn = await loop.run_in_executor(pool, lambda: psycopg.connect(dsn, autocommit=True))

    async def run(variant: str, n: int) -> None:
        await loop.run_in_executor(pool, _psycopg_sync_txn, conn, variant, n)

    async def close() -> None:
        await loop.run_in_executor(pool, conn.close)

    return run, close


OPENERS = {
    "asyncpg": _open_asyncpg,
    "psycopg-async": _open_psycopg_async,
    "psycopg-thread": _open_psycopg_thread,
}


@dataclass
class Cell:
    driver: str
    variant: str
    writers: int
    rates: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _measure(dsn: str, cell: Cell, seconds: float, servers: int = 1) -> None:
    """Run cell.writers writers for `seconds`; add one rate and the latencies to the cell."""
    pool = ThreadPoolExecutor(max_workers=cell.writers + 1)
    opener = OPENERS[cell.driver]
    batch = cell.variant.endswith("-batch")
    count = min(servers, cell.writers) if batch else cell.writers
    sessions = [await opener(dsn, pool) for _ in range(count)]
    done = 0
    stop_at = 0.0
    latencies: list[float] = []

    async def writer(run: Callable[[str, int], Awaitable[None]]) -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            began = time.perf_counter()
            await run(cell.variant, 1)
            latencies.append(time.perf_counter() - began)
            done += 1

    queues: list[asyncio.Queue[tuple[float, asyncio.Future[None]]]] = [
        asyncio.Queue() for _ in sessions
    ]

    async def submitter(queue: asyncio.Queue[tuple[float, asyncio.Future[None]]]) -> None:
        nonlocal done
        loop = asyncio.get_running_loop()
        while time.perf_counter() < stop_at:
            fut: asyncio.Future[None] = loop.create_future()
            began = time.perf_counter()
            queue.put_nowait((began, fut))
            await fut
            latencies.append(time.perf_counter() - began)
            done += 1

    async def sequencer(
        run: Callable[[str, int], Awaitable[None]],
        queue: asyncio.Queue[tuple[float, asyncio.Future[None]]],
    ) -> None:
        while True:
            first = await queue.get()
            items = [first]
            while not queue.empty() and len(items) < BATCH_MAX:
                items.append(queue.get_nowait())
            await run(cell.variant, len(items))
            cell.batches.append(len(items))
            for _, fut in items:
                fut.set_result(None)

    # warm up: connections open, statements prepared
    for run, _ in sessions:
        for _ in range(3):
            await run(cell.variant.replace("-batch", "-1"), 1)
    stop_at = time.perf_counter() + seconds
    started = time.perf_counter()
    if batch:
        tasks = [
            asyncio.create_task(sequencer(run, queue))
            for (run, _), queue in zip(sessions, queues, strict=True)
        ]
        await asyncio.gather(*(submitter(queues[i % len(queues)]) for i in range(cell.writers)))
        for task in tasks:
            task.cancel()
    else:
        await asyncio.gather(*(writer(run) for run, _ in sessions))
    elapsed = time.perf_counter() - started
    cell.rates.append(done / elapsed)
    cell.latencies.extend(latencies)
    for _, close in sessions:
        await close()
    pool.shutdown()


def _reset(dsn: str) -> None:
    async def reset() -> None:
        asyncpg = importlib.import_module("asyncpg")  # the postgres extra's driver
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(SCHEMA)
        finally:
            await conn.close()

    asyncio.run(reset())


def _check_log(dsn: str) -> None:
    """After a sequenced cell: one chain, no fork, no gap, the head at its end."""

    async def check() -> None:
        asyncpg = importlib.import_module("asyncpg")
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT seq, prev FROM entries ORDER BY seq")
            size, head = await conn.fetchrow(HEAD)
            indexed = await conn.fetchval("SELECT count(*) FROM entry_index")
        finally:
            await conn.close()
        prev = b"\x00"
        for i, (seq, got) in enumerate(rows):
            if seq != i or got != prev:
                raise SystemExit(f"sequencing broke at entry {i}: a gap or a fork")
            prev = hashlib.sha256(prev + BODY).digest()
        if (size, head, indexed) != (len(rows), prev, len(rows)):
            raise SystemExit("the head or the index rows do not match the entries")

    asyncio.run(check())


def _installed(driver: str) -> bool:
    module = "asyncpg" if driver == "asyncpg" else "psycopg"
    try:
        importlib.import_module(module)
    except ImportError:
        print(f"skipping {driver}: pip install {module}", file=sys.stderr)
        return False
    return True


def run(
    dsn: str,
    drivers: list[str],
    writers: list[int],
    seconds: float,
    rounds: int,
    servers: int = 1,
    variants: tuple[str, ...] = VARIANTS,
) -> list[Cell]:
    cells = {
        (d, v, w): Cell(d, v, w)
        for d in drivers
        for v in variants
        for w in writers
        if d == "asyncpg" or v not in ASYNCPG_ONLY
    }
    for r in range(rounds):
        order = list(cells.values())
        if r % 2:
            order.reverse()
        for cell in order:
            _reset(dsn)
            _HEADS.clear()
            asyncio.run(_measure(dsn, cell, seconds, servers))
            if cell.variant not in ("raw", "pattern"):
                _check_log(dsn)
            print(
                f"  round {r + 1} {cell.driver:15} {cell.variant:10} w={cell.writers}"
                f" {cell.rates[-1]:8.0f}/s",
                file=sys.stderr,
            )
    return list(cells.values())


def table(cells: list[Cell]) -> str:
    raw = {(c.driver, c.writers): c.rate for c in cells if c.variant == "raw"}
    lines = [
        "| driver | variant | writers | entries/s | p50 ms | p99 ms | x raw (same driver)"
        " | x best raw | mean batch |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in sorted(cells, key=lambda c: (c.writers, c.driver, VARIANTS.index(c.variant))):
        best = max(v for (_, w), v in raw.items() if w == c.writers)
        mean_batch = f"{statistics.mean(c.batches):.1f}" if c.batches else ""
        lines.append(
            f"| {c.driver} | {c.variant} | {c.writers} | {c.rate:.0f} | {c.pct(0.5):.2f}"
            f" | {c.pct(0.99):.2f} | {c.rate / raw[(c.driver, c.writers)]:.2f}"
            f" | {c.rate / best:.2f} | {mean_batch} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="an empty database to use (default: a private cluster)")
    parser.add_argument("--seconds", type=float, default=2.0, help="per cell and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--writers", default="1,4,8")
    parser.add_argument("--drivers", default=",".join(DRIVERS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--servers",
        type=int,
        default=1,
        help="sequencers (processes' worth) sharing the writers in the -batch variants",
    )
    args = parser.parse_args(argv)
    drivers = [d for d in args.drivers.split(",") if d and _installed(d)]
    writers = [int(w) for w in args.writers.split(",")]
    cluster = None
    dsn = args.dsn
    if dsn is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
        pg = importlib.import_module("pg")
        cluster = pg.PgCluster()
        cluster.start()
        dsn = cluster.create_database("bench")
    try:
        chosen = [v for v in args.variants.split(",") if v]
        variants = tuple(v for v in VARIANTS if v in chosen or v == "raw")  # raw: the baseline
        cells = run(dsn, drivers, writers, args.seconds, args.rounds, args.servers, variants)
    finally:
        if cluster is not None:
            cluster.close()
    print(table(cells))


if __name__ == "__main__":
    main()
