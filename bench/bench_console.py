"""The owner's console at scale: a ledger page at 10^5 (10^6 with ``CHARTER_BENCH_CONSOLE_BIG``)
entries vs 10^3, same run.

A page is what ``GET /ledger`` computes (``charter.console.data.ledger_page``): 50 entries by
keyset paging (``LedgerQueries.find_older``), each one's signature verified and its
inclusion proved under the latest signed checkpoint (an RFC 9162 proof read from the stored
tree and verified), and the intent/outcome pairs linked. Rows:

* newest page; a page from the middle of the ledger (``before`` = size / 2); the newest page
  of one agent (the (actor, seq) index): each must stay flat (keyset paging, log-depth proofs);
* the overview (``data.overview``): agents, verification state, and calls per agent per hour
  over the last 24 h: the chart's GROUP BY reads every entry of those 24 h, so it grows with
  the traffic of a day (every bench entry is from today): an ``info`` row.

Both ledgers are built through the real append path (``bench/_ledgers.py``) and a checkpoint
is signed on each before timing. Run alone with ``python -m bench.bench_console [--quick]``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable

from bench._common import INFO, Row, ainterleave, median, pick, ratio_of_rounds, row
from bench._ledgers import ledger_of, open_home
from charter.console import data
from charter.home import Home
from charter.tools import tlog

TARGET = "<= 2.0x"
BIG_ENV = "CHARTER_BENCH_CONSOLE_BIG"


def run(quick: bool) -> list[Row]:
    """One row per page kind: its cost at ``big`` entries over its cost at ``small``."""
    return asyncio.run(_run(quick))


async def _run(quick: bool) -> list[Row]:
    small = pick(quick, full=1_000, quick_n=1_000, tiny_n=100)
    big = pick(quick, full=100_000, quick_n=10_000, tiny_n=1_000)
    if os.environ.get(BIG_ENV) and not quick:
        big = 1_000_000
    rounds = pick(quick, full=9, quick_n=5, tiny_n=1)
    ops = pick(quick, full=20, quick_n=10, tiny_n=2)
    homes = {size: await open_home(await ledger_of(size)) for size in (small, big)}
    try:
        for home in homes.values():
            await tlog.checkpoint(home)
        kinds = {size: _pages(home, ops) for size, home in homes.items()}
        rows = []
        for name, target in (
            ("newest page", TARGET),
            ("middle page", TARGET),
            ("one agent's newest page", TARGET),
            ("overview (24 h chart)", INFO),
        ):
            await kinds[small][name]()  # warm both
            await kinds[big][name]()
            base, subj = await ainterleave(rounds, kinds[small][name], kinds[big][name])
            rows.append(
                row(
                    f"console: {name}, {big:,} vs {small:,} entries",
                    median(subj),
                    median(base),
                    "ms/page",
                    target,
                    f"{rounds} interleaved rounds of {ops}; 50 entries a page, each signature "
                    "verified and inclusion proved",
                    ratio=ratio_of_rounds(subj, base),
                )
            )
        return rows
    finally:
        for home in homes.values():
            await home.close()


def _pages(home: Home, n: int) -> dict[str, Callable[[], Awaitable[float]]]:
    async def timed(make: Callable[[], Awaitable[object]]) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            await make()
        return (time.perf_counter() - t0) / n * 1e3

    async def newest() -> float:
        return await timed(lambda: data.ledger_page(home, data.Filters(), None))

    async def middle() -> float:
        size = await home.read(lambda tx: tx.queries.size())
        return await timed(lambda: data.ledger_page(home, data.Filters(), size // 2))

    async def agent() -> float:
        return await timed(lambda: data.ledger_page(home, data.Filters(agent="bench"), None))

    async def overview() -> float:
        return await timed(lambda: data.overview(home))

    return {
        "newest page": newest,
        "middle page": middle,
        "one agent's newest page": agent,
        "overview (24 h chart)": overview,
    }


if __name__ == "__main__":
    for r in run("--quick" in sys.argv):
        print(f"{r['name']}: {r['charter']:.2f} vs {r['baseline']:.2f} {r['unit']} "
              f"({r['ratio']:.2f}x, target {r['target']})")  # fmt: skip
