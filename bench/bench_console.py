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
  the traffic of a day (every bench entry is from today): an ``info`` row (at 10^6, seconds
  a call: 3 rounds of one call);
* ``GET /ledger`` over loopback HTTP on the real console (``running_console``, signed in):
  time to the response's first byte, the newest page (issue 26 item 3).

10^6 (``CHARTER_BENCH_CONSOLE_BIG=1``, never in ``--quick``): the ledger is built once per run
through ``bench/_ledgers.py`` (about 3 minutes here) and kept in ``CHARTER_BENCH_SHARED``.

Both ledgers are built through the real append path (``bench/_ledgers.py``) and a checkpoint
is signed on each before timing. Run alone with ``python -m bench.bench_console [--quick]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx2

from bench._common import INFO, Row, ainterleave, median, pick, ratio_of_rounds, row
from bench._ledgers import ledger_of, open_home
from charter.console import data
from charter.console.run import running_console
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
        rows = []
        for name, target in (
            ("newest page", TARGET),
            ("middle page", TARGET),
            ("one agent's newest page", TARGET),
            ("overview (24 h chart)", INFO),
        ):
            # At 10^6 the chart's GROUP BY reads 10^6 entries (seconds): one call a round.
            slow = name.startswith("overview") and big >= 1_000_000
            n = 1 if slow else ops
            small_fn, big_fn = (_pages(homes[size], n)[name] for size in (small, big))
            await small_fn()  # warm both
            await big_fn()
            base, subj = await ainterleave(3 if slow else rounds, small_fn, big_fn)
            rows.append(
                row(
                    f"console: {name}, {big:,} vs {small:,} entries",
                    median(subj),
                    median(base),
                    "ms/page",
                    target,
                    f"{3 if slow else rounds} interleaved rounds of {n}; 50 entries a page, "
                    "each signature verified and inclusion proved",
                    ratio=ratio_of_rounds(subj, base),
                )
            )
        base, subj = await _ttfb_rounds(homes[small], homes[big], rounds, ops)
        rows.append(
            row(
                f"console: GET /ledger time to first byte, {big:,} vs {small:,} entries",
                median(subj),
                median(base),
                "ms",
                TARGET,
                f"{rounds} interleaved rounds of {ops}; the real console over loopback HTTP "
                "(signed in), newest page, until the response's first byte",
                ratio=ratio_of_rounds(subj, base),
            )
        )
        return rows
    finally:
        for home in homes.values():
            await home.close()


@contextlib.asynccontextmanager
async def _signed_in(home: Home) -> AsyncIterator[tuple[httpx2.AsyncClient, str]]:
    """The console of ``home`` on a free loopback port, and a client signed in to it."""
    async with running_console(home, port=0) as console, httpx2.AsyncClient() as web:
        if (await web.get(console.login_url)).status_code != 303:
            raise RuntimeError("console login failed")
        yield web, console.base + "/ledger"


async def _ttfb(web: httpx2.AsyncClient, url: str, n: int) -> float:
    """Mean ms from sending ``GET url`` to the first byte of the answer, over ``n`` requests."""
    total = 0.0
    for _ in range(n):
        t0 = time.perf_counter()
        first = None
        async with web.stream("GET", url) as answer:
            async for _chunk in answer.aiter_raw():  # read to the end, timing the first chunk
                first = first or time.perf_counter()
        if answer.status_code != 200 or first is None:
            raise RuntimeError(f"GET /ledger answered {answer.status_code}")
        total += first - t0
    return total / n * 1e3


async def _ttfb_rounds(
    small: Home, big: Home, rounds: int, n: int
) -> tuple[list[float], list[float]]:
    """Time to first byte of the ledger page of both homes, interleaved round by round."""
    async with _signed_in(small) as (web_s, url_s), _signed_in(big) as (web_b, url_b):
        await _ttfb(web_s, url_s, 1)  # warm both
        await _ttfb(web_b, url_b, 1)
        return await ainterleave(
            rounds, lambda: _ttfb(web_s, url_s, n), lambda: _ttfb(web_b, url_b, n)
        )


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
