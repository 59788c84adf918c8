"""Charter's ledger append on PostgreSQL against a raw INSERT + COMMIT baseline (issue 18).

    python -m bench.bench_pg [--seconds 3] [--writers 1,4,8] [--dsn URL]

Without ``--dsn`` it starts a private cluster (tests/support/pg.py: loopback, ``fsync=on``,
``synchronous_commit=on``) and removes it at the end. Both sides run in this process, one
after the other for each writer count, on the same server:

- **baseline**: N threads, each with its own psycopg connection (autocommit), INSERT the same
  ~900 bytes an entry body holds into a table with a generated key: each INSERT is its own
  durable commit (``synchronous_commit=on``). No order, no chain, no signature: the least a
  durable append can cost with N connections.
- **charter**: N concurrent callers in one server process awaiting
  ``LedgerWriter.append`` of a signed entry (what the gate does for every call): the
  writer's group commit under the ``ledger_head`` row lock, on the store's connections.

Rows: entries per second (charter / baseline; issue 18's goal is >= 0.7x with 1, 4 and 8
writers) and the p50/p99 latency of one append (submit to acknowledgement).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from charter.config import Settings
from charter.home import Home
from charter.storage.writer import LedgerWriter
from charter.testing import call_draft
from charter.tools import identity
from charter.tools.identity import load_agent

BODY = b"x" * 900


def baseline(dsn: str, writers: int, seconds: float) -> tuple[float, list[float]]:
    """N connections, each INSERT + COMMIT in a loop: (rows per second, latencies)."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("DROP TABLE IF EXISTS raw_append")
        admin.execute("CREATE TABLE raw_append (id BIGSERIAL PRIMARY KEY, body BYTEA NOT NULL)")
    latencies: list[list[float]] = [[] for _ in range(writers)]
    stop = threading.Event()
    ready = threading.Barrier(writers + 1)

    def loop(mine: list[float]) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            ready.wait()
            while not stop.is_set():
                t0 = time.perf_counter()
                conn.execute("INSERT INTO raw_append (body) VALUES (%s)", (BODY,))
                mine.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=loop, args=(lat,)) for lat in latencies]
    for t in threads:
        t.start()
    ready.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    flat = [x for lat in latencies for x in lat]
    return len(flat) / elapsed, flat


async def charter(home: Home, writers: int, seconds: float) -> tuple[float, list[float]]:
    """N callers awaiting LedgerWriter.append: (entries per second, latencies)."""
    agent = await load_agent(home, "bench")
    writer = LedgerWriter(home.store)
    latencies: list[float] = []
    stop = asyncio.Event()

    async def caller(n: int) -> None:
        i = 0
        while not stop.is_set():
            t0 = time.perf_counter()
            await writer.append(call_draft(agent, f"s{n}", i))
            latencies.append(time.perf_counter() - t0)
            i += 1

    tasks = [asyncio.ensure_future(caller(n)) for n in range(writers)]
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    await writer.close()
    return len(latencies) / elapsed, latencies


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1e3 if len(values) > 1 else 0.0


async def run(create: Callable[[str], str], writers: list[int], seconds: float) -> None:
    """Print one table row per writer count (``create`` makes a database, returns its URL)."""
    url = create("bench_charter")
    raw_url = create("bench_raw")
    root = Path(tempfile.mkdtemp(prefix="charter-bench-pg-")) / "home"
    home = await Home.init(
        Settings(home=root, database_url=url), owner="bench@example.com", cheap_kdf=True
    )
    await identity.add_agent(home, "bench", scopes=["audit:read"])
    print("| writers | baseline rows/s | charter entries/s | ratio | p50 base/charter ms "
          "| p99 base/charter ms |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    try:
        for n in writers:
            b_rate, b_lat = await asyncio.to_thread(baseline, raw_url, n, seconds)
            c_rate, c_lat = await charter(home, n, seconds)
            print(
                f"| {n} | {b_rate:.0f} | {c_rate:.0f} | {c_rate / b_rate:.2f}x | "
                f"{pct(b_lat, 50):.2f} / {pct(c_lat, 50):.2f} | "
                f"{pct(b_lat, 99):.2f} / {pct(c_lat, 99):.2f} |",
                flush=True,
            )
    finally:
        await home.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--writers", default="1,4,8")
    parser.add_argument("--dsn", default=None, help="a superuser URL of an existing server")
    args = parser.parse_args(argv)
    writers = [int(w) for w in args.writers.split(",")]
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
    import pg  # tests/support/pg.py: a private cluster

    if args.dsn:

        def create(name: str) -> str:
            with psycopg.connect(args.dsn, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                admin.execute(f"CREATE DATABASE {name}")
            return str(args.dsn).rsplit("/", 1)[0] + f"/{name}"

        asyncio.run(run(create, writers, args.seconds))
        return
    with pg.PgCluster() as cluster:
        asyncio.run(run(cluster.create_database, writers, args.seconds))


if __name__ == "__main__":
    main()
