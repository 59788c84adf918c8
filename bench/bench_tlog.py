"""The Merkle tree at scale: append and proof costs at a large ledger vs a small one, same run.

DESIGN §8 asks that an append, a proof and a query stay flat or logarithmic as the ledger
grows. Each row is the cost of one operation on a ledger of ``big`` entries (10^5; 10^4 with
``--quick``) divided by its cost on a ledger of ``small`` entries (10^3), measured in
interleaved rounds on two real homes. Both ledgers are built through the real append path
(``Ledger.append`` with batches of 1000 agent-signed entries, one transaction each, the
Merkle hook running for every entry: see ``bench/_ledgers.py``).

* durable append: ``Ledger.append`` of one entry per transaction (``synchronous=FULL``),
  on a blocking connection of its own (``charter.testing.raw_tx``, no store hop): what a
  caller waits for, fsync included;
* Merkle hook: ``append_leaf`` alone (one indexed ``SELECT``, one ``INSERT``), in a
  transaction rolled back so the ledger does not grow;
* inclusion proof, consistency proof, root: ``TreeStore`` reads for random leaves and sizes.

The homes are opened (and the agent loaded) on an event loop; every operation timed here is
blocking SQLite work on connections of the benchmark's own.

Run alone with ``python -m bench.bench_tlog [--quick]``.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import sqlite3
import sys
import time
from collections.abc import Callable

from bench._common import Row, interleave, median, pick, ratio_of_rounds, row
from bench._ledgers import ledger_of, open_home
from charter.home import Home
from charter.storage import tlog
from charter.storage.db import connect
from charter.testing import call_draft, close_raw_dbs, raw_db, raw_tx
from charter.tools import identity

#: "A small constant": 100x more entries may cost at most this much more per operation.
TARGET = "<= 2.0x"


def run(quick: bool) -> list[Row]:
    """One row per operation: its cost at ``big`` entries over its cost at ``small``."""
    return asyncio.run(_run(quick))


async def _run(quick: bool) -> list[Row]:
    small = pick(quick, full=1_000, quick_n=1_000, tiny_n=100)
    big = pick(quick, full=100_000, quick_n=10_000, tiny_n=1_000)
    rounds = pick(quick, full=9, quick_n=7, tiny_n=1)
    ops = pick(quick, full=400, quick_n=200, tiny_n=10)
    t0 = time.perf_counter()
    homes = {size: await open_home(await ledger_of(size)) for size in (small, big)}
    built = time.perf_counter() - t0
    scratch: list[sqlite3.Connection] = []
    try:
        ops_of = {size: await _operations(home, ops, scratch) for size, home in homes.items()}
        rows = []
        for name in ops_of[small]:
            ops_of[small][name]()  # warm the page caches of both homes
            ops_of[big][name]()
            base, subj = interleave(rounds, ops_of[small][name], ops_of[big][name])
            rows.append(
                row(
                    f"tlog: {name}, {big:,} vs {small:,} entries",
                    median(subj),
                    median(base),
                    "µs/op",
                    TARGET,
                    f"{rounds} interleaved rounds of {ops} ops; ledgers built in {built:.0f} s "
                    "with Ledger.append batches of 1000",
                    ratio=ratio_of_rounds(subj, base),
                )
            )
        return rows
    finally:
        for conn in scratch:
            conn.close()
        close_raw_dbs()
        for home in homes.values():
            await home.close()


def _per_op(n: int, fn: Callable[[], object]) -> float:
    """Run ``fn`` (which does ``n`` operations) once; µs per operation."""
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) / n * 1e6


async def _operations(
    home: Home, n: int, opened: list[sqlite3.Connection]
) -> dict[str, Callable[[], float]]:
    """Callables measuring each operation on ``home`` (µs/op, one round each); the
    connections they open go into ``opened``."""
    agent = await identity.load_agent(home, "bench")
    session = secrets.token_hex(8)
    rng = random.Random(6962)
    store = tlog.TreeStore(raw_db(home))
    scratch = connect(home.layout.db)
    opened.append(scratch)
    ledger = raw_tx(home).ledger
    body = next(ledger.iter_bodies(0, 1))

    def durable_append() -> None:
        for i in range(n // 4):  # one fsync each: fewer of them
            ledger.append([call_draft(agent, session, i)])

    def hook() -> None:
        size = tlog.tree_size(scratch)
        scratch.execute("BEGIN IMMEDIATE")
        try:
            for i in range(n):
                tlog.append_leaf(scratch, size + i, body)
        finally:
            scratch.execute("ROLLBACK")

    def inclusion() -> None:
        size = store.size()
        for _ in range(n):
            store.inclusion_proof(rng.randrange(size), size)

    def consistency() -> None:
        size = store.size()
        for _ in range(n):
            store.consistency_proof(rng.randrange(1, size), size)

    def root() -> None:
        size = store.size()
        for _ in range(n):
            store.root(rng.randrange(1, size + 1))

    return {
        "durable append": lambda: _per_op(n // 4, durable_append),
        "Merkle append hook": lambda: _per_op(n, hook),
        "inclusion proof": lambda: _per_op(n, inclusion),
        "consistency proof": lambda: _per_op(n, consistency),
        "root": lambda: _per_op(n, root),
    }


if __name__ == "__main__":
    for r in run("--quick" in sys.argv):
        print(
            f"{r['name']}: {r['charter']:.1f} vs {r['baseline']:.1f} {r['unit']} "
            f"= {r['ratio']:.2f}x ({r['target']}) {'pass' if r['passed'] else 'FAIL'}"
        )
