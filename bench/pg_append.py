"""Charter's ledger append on PostgreSQL against a raw INSERT + COMMIT baseline (issue 18).

    python -m bench.pg_append [--seconds 3] [--writers 1,4,8] [--dsn URL]

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

``--growth N`` instead: one PostgreSQL ledger grown to 10^3, 10^4, ... up to N entries (in
batches of 256); at each size the p50 of 30 single appends and of 30 audit queries (an
agent's first page of 50 entries, by the (actor, seq) index).

``--http S`` instead: tool calls over HTTP (``charter serve --http``, the harness of
bench/bench_http_load.py) with S concurrent sessions, the same home made once on SQLite and
once on PostgreSQL: calls per second and p50/p99 of ``identity_whoami`` (read-only: one entry)
and ``token_issue`` (side-effecting: intent and outcome) on each backend.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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


async def http_compare(admin_url: str, sessions: int, seconds: float) -> None:
    """Tool calls over HTTP on a SQLite home, then on a PostgreSQL one: one row per tool."""
    import subprocess

    from bench.bench_http_load import CALLS, _charter_site, _drive, _wait_port
    from charter import testing

    measured: dict[str, dict[str, tuple[float, list[float]]]] = {}
    for backend in ("sqlite", "postgresql"):
        testing.use_postgresql(admin_url if backend == "postgresql" else None)
        root = Path(tempfile.mkdtemp(prefix=f"charter-bench-{backend}-")) / "home"
        port, token = await _charter_site(root)
        testing.use_postgresql(None)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHARTER_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "charter", "serve", "--http", "--port", str(port)],
            env={**env, "CHARTER_HOME": str(root)},
            stderr=subprocess.DEVNULL,
        )
        try:
            await _wait_port(port, proc)
            url = f"http://127.0.0.1:{port}/mcp"
            measured[backend] = {
                kind: await _drive(url, token, tool, args, sessions, seconds)
                for kind, (tool, args) in CALLS.items()
            }
        finally:
            proc.terminate()
            proc.wait(20)
    print(f"| call ({sessions} sessions) | SQLite calls/s | PostgreSQL calls/s "
          "| p50 SQLite / PostgreSQL ms | p99 SQLite / PostgreSQL ms |")  # fmt: skip
    print("|---|---|---|---|---|")
    for kind in CALLS:
        (s_rate, s_lat), (p_rate, p_lat) = measured["sqlite"][kind], measured["postgresql"][kind]
        print(
            f"| {kind} | {s_rate:.0f} | {p_rate:.0f} | {pct(s_lat, 50):.2f} / "
            f"{pct(p_lat, 50):.2f} | {pct(s_lat, 99):.2f} / {pct(p_lat, 99):.2f} |",
            flush=True,
        )


async def growth(create: Callable[[str], str], top: int) -> None:
    """Append and query cost as the ledger grows (one row per size)."""
    url = create("bench_growth")
    root = Path(tempfile.mkdtemp(prefix="charter-bench-growth-")) / "home"
    home = await Home.init(
        Settings(home=root, database_url=url), owner="bench@example.com", cheap_kdf=True
    )
    await identity.add_agent(home, "bench", scopes=["audit:read"])
    agent = await load_agent(home, "bench")
    print("| entries | append p50 ms | query p50 ms | build s |")
    print("|---|---|---|---|")
    size, i, size_target = 2, 0, 1000
    try:
        while size_target <= top:
            t0 = time.perf_counter()
            while size < size_target:
                n = min(256, size_target - size)
                await home.store.append([call_draft(agent, "g", i + k) for k in range(n)])
                size, i = size + n, i + n
            built = time.perf_counter() - t0
            appends, queries = [], []
            for k in range(30):
                t1 = time.perf_counter()
                await home.store.append([call_draft(agent, "p", i + k)])
                appends.append(time.perf_counter() - t1)
                t1 = time.perf_counter()
                await home.read(
                    lambda tx: tx.queries.find_page(cursor=0, limit=50, actor=agent.agent_id)
                )
                queries.append(time.perf_counter() - t1)
            size, i = size + 30, i + 30
            print(
                f"| {size_target} | {pct(appends, 50):.2f} | {pct(queries, 50):.2f} | "
                f"{built:.1f} |",
                flush=True,
            )
            size_target *= 10
    finally:
        await home.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--writers", default="1,4,8")
    parser.add_argument("--dsn", default=None, help="a superuser URL of an existing server")
    parser.add_argument("--http", type=int, default=0, metavar="SESSIONS")
    parser.add_argument("--growth", type=int, default=0, metavar="N")
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
        if args.growth:
            asyncio.run(growth(cluster.create_database, args.growth))
            return
        if args.http:
            asyncio.run(http_compare(cluster.dsn(), args.http, args.seconds))
            return
        asyncio.run(run(cluster.create_database, writers, args.seconds))


if __name__ == "__main__":
    main()
