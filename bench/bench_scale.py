"""Scale: the cost of an append, a query, an inclusion proof and a checkpoint as the ledger grows.

Ledgers of 10^3 … 10^6 entries are built through the real append path with group commit
(``Ledger.append`` in batches of 1,000 drafts: one transaction, one fsync, every entry
signed, chained and added to the Merkle tree by the append hook). Each operation is then
timed on every size in interleaved rounds; the baseline is the same operation on the
smallest ledger in the same rounds. Flat or logarithmic growth passes: the bound for size
n is 1.5 × log2(n) / log2(n0) (3.0x at 10^6 against 10^3).

Every operation goes through the home's store, as the services do (``home.store.append``,
``audit.query``, ``tlog.prove``, ``tlog.checkpoint``: units of work on aiosqlite's thread),
so each call includes one hop to that thread and back, at every size alike.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Awaitable, Callable

from bench._common import Row, median, pick, row, tiny
from bench._ledgers import AGENT, ledger_of, open_home
from charter.home import Home
from charter.testing import call_draft
from charter.tools import audit, identity, tlog

FULL_SIZES = (1_000, 10_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000)
TINY_SIZES = (100, 300)


Op = Callable[[], Awaitable[None]]


async def _ops(home: Home) -> dict[str, Op]:
    """The operations, each bound to ``home``: what one call of each costs."""
    agent = await identity.load_agent(home, AGENT)
    session = secrets.token_hex(8)
    size, _ = await home.read(lambda tx: tx.ledger.head())
    await tlog.checkpoint(home)  # proofs go against an existing checkpoint, like audit_prove

    async def append() -> None:
        await home.store.append([call_draft(agent, session, 0)])

    async def query() -> None:
        await audit.query(home, actor=agent.agent_id, cursor=size // 2, limit=50)

    async def prove() -> None:
        await tlog.prove(home, size // 2, actor=agent.agent_id)

    async def checkpoint() -> None:
        await home.store.append([call_draft(agent, session, 0)])
        await tlog.checkpoint(home)  # a new signed checkpoint, consistent with the last one

    return {
        "append (durable, 1 entry)": append,
        "audit.query (own entries, 50 from the middle)": query,
        "inclusion proof (audit_prove, verified)": prove,
        "checkpoint (append 1 + sign, consistency-checked)": checkpoint,
    }


async def _time(fn: Op, reps: int) -> float:
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - t0)
    return median(samples)


def run(quick: bool) -> list[Row]:
    """One row per (operation, size above the smallest): its cost vs at the smallest size."""
    return asyncio.run(_run(quick))


async def _run(quick: bool) -> list[Row]:
    sizes = TINY_SIZES if tiny() else (QUICK_SIZES if quick else FULL_SIZES)
    rounds = pick(quick, full=7, quick_n=5, tiny_n=2)
    reps = pick(quick, full=20, quick_n=10, tiny_n=2)
    built: dict[int, float] = {}
    homes: dict[int, Home] = {}
    for n in sizes:
        t0 = time.perf_counter()
        homes[n] = await open_home(await ledger_of(n))
        built[n] = time.perf_counter() - t0
    try:
        ops = {n: await _ops(h) for n, h in homes.items()}
        names = list(ops[sizes[0]])
        samples: dict[tuple[str, int], list[float]] = {(o, n): [] for o in names for n in sizes}
        for r in range(rounds):
            order = sizes if r % 2 == 0 else sizes[::-1]
            for name in names:
                for n in order:
                    samples[name, n].append(await _time(ops[n][name], reps))
        rows = []
        n0 = sizes[0]
        for name in names:
            base = samples[name, n0]
            for n in sizes[1:]:
                bound = 1.5 * math.log2(n) / math.log2(n0)
                ratios = [s / b for s, b in zip(samples[name, n], base, strict=True)]
                rows.append(
                    row(
                        f"scale: {name} at {n:,}",
                        median(samples[name, n]) * 1e3,
                        median(base) * 1e3,
                        "ms",
                        f"<= {bound:.2f}x",
                        f"vs the same op at {n0:,} entries; {rounds} rounds x {reps} reps; "
                        f"ledger of {n:,} built in {built[n]:.0f} s (batches of 1,000)",
                        ratio=median(ratios),
                    )
                )
        return rows
    finally:
        for h in homes.values():
            await h.close()
