"""Verification: entries verified per second vs raw PyNaCl verify of the same entries.

The raw baseline gets each entry's (public key, signed bytes, signature) prepared in advance
(not timed) and only calls PyNaCl's ``VerifyKey.verify`` (keys constructed once), chunk by
chunk on a process pool of every core, started the same way and inside the timed region, as
Charter's. Charter runs the whole rule set: parse, canonical-bytes check, chain, charters,
revocation, approvals, and the signature.

The entries are read through a home opened on an event loop, which is closed before any
round: no thread (aiosqlite's) is alive when either side starts its process pool, so both
fork their workers, as the command-line verifier does.
"""

from __future__ import annotations

import asyncio
import copy
import json
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import nacl.signing

from bench._common import Row, interleave, median, pick, rate, ratio_of_rounds, row, tiny
from bench._ledgers import ledger_of, open_home
from charter.evidence import entry_checks, verifier
from charter.evidence.entries import SIGNING_PREFIX, LedgerIdentity
from charter.evidence.jwk import b64url_decode, thumbprint
from charter.home import Home
from charter.testing import close_raw_dbs, raw_tx
from charter.tools import identity as agents

TARGET = ">= 0.8x"
MILLION = 1_000_000
Triple = tuple[bytes, bytes, bytes]


def _raw_chunk(triples: list[Triple]) -> int:
    keys: dict[bytes, nacl.signing.VerifyKey] = {}
    for key, message, sig in triples:
        vk = keys.get(key) or keys.setdefault(key, nacl.signing.VerifyKey(key))
        vk.verify(message, sig)
    return len(triples)


def raw_verify(triples: list[Triple], workers: int) -> None:
    """The baseline: PyNaCl verify of prepared triples, on ``workers`` processes."""
    if workers <= 1:
        _raw_chunk(triples)
        return
    size = entry_checks.PARALLEL_CHUNK
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [
            pool.submit(_raw_chunk, triples[i : i + size]) for i in range(0, len(triples), size)
        ]
        assert sum(f.result() for f in futures) == len(triples)


def triples_of(keys: dict[str, bytes], bodies: list[bytes]) -> list[Triple]:
    """(key, signed bytes, signature) of each entry, prepared outside the timed region."""
    out = []
    for body in bodies:
        entry = json.loads(body)
        unsigned = {k: v for k, v in entry.items() if k != "sig"}
        message = (
            SIGNING_PREFIX
            + json.dumps(
                unsigned, ensure_ascii=False, sort_keys=True, separators=(",", ":")
            ).encode()
        )
        out.append((keys[entry["kid"]], message, b64url_decode(entry["sig"])))
    return out


async def _entries(n: int) -> tuple[LedgerIdentity, list[bytes], dict[str, bytes]]:
    """The ledger's identity, its first ``n`` entries and their signers' keys (home closed)."""
    home = await open_home(await ledger_of(n))
    try:
        agent = await agents.load_agent(home, "bench")
        bodies = await home.read(lambda tx: list(tx.ledger.iter_bodies(0, n)))
        identity = home.identity
        keys = {
            agent.key.kid: agent.key.public_key,
            home.log_key.kid: home.log_key.public_key,
            thumbprint(identity.owner_key): identity.owner_key,
        }
        return identity, bodies, keys
    finally:
        await home.close()


def run(quick: bool) -> list[Row]:
    """Rows: every core, one core, incremental from a state, and the time for 10^6 entries."""
    cores = os.cpu_count() or 1
    n = pick(quick, full=100_000, quick_n=40_000, tiny_n=300)
    rounds = pick(quick, full=5, quick_n=3, tiny_n=1)
    identity, bodies, keys = asyncio.run(_entries(n))
    _await_threads()
    triples = triples_of(keys, bodies)
    rows: list[Row] = []
    for label, workers in ((f"every core ({cores} processes)", cores), ("one core", 1)):

        def raw(w: int = workers) -> float:
            return rate(n, lambda: raw_verify(triples, w))

        def charter(w: int = workers) -> float:
            return rate(n, lambda: verifier.verify_entries(identity, bodies, workers=w))

        base, subj = interleave(rounds, raw, charter)
        rows.append(
            row(
                f"verify: {label}",
                median(subj),
                median(base),
                "entries/s",
                TARGET,
                f"{rounds} interleaved rounds of {n:,} entries; per core: "
                f"{median(subj) / workers:,.0f} vs {median(base) / workers:,.0f}/s",
                ratio=ratio_of_rounds(subj, base),
            )
        )
        if workers == cores:
            every_core = (median(subj), median(base))
    rows.append(_incremental(identity, bodies, triples, rounds))
    rows.append(_million(quick, n, every_core, identity))
    return rows


def _incremental(
    identity: LedgerIdentity, bodies: list[bytes], triples: list[Triple], rounds: int
) -> Row:
    """Verify the last 1% from the state the first 99% left (a resumed verification)."""
    k = max(10, len(bodies) // 100)
    _, state = verifier.verify_entries(identity, bodies[:-k])
    tail, tail_triples = bodies[-k:], triples[-k:]

    def resumed() -> float:
        st = copy.deepcopy(state)
        t0 = time.perf_counter()
        verifier.verify_entries(identity, tail, st, workers=None)
        return k / (time.perf_counter() - t0)

    base, subj = interleave(
        max(3, rounds), lambda: rate(k, lambda: raw_verify(tail_triples, 1)), resumed
    )
    return row(
        f"verify: incremental, last {k:,} of {len(bodies):,} from a saved state",
        median(subj),
        median(base),
        "entries/s",
        TARGET,
        "VerifyState after the prefix, then only the new entries; below "
        f"{entry_checks.PARALLEL_MIN:,} new entries one process checks them (raw: one core)",
        ratio=ratio_of_rounds(subj, base),
    )


def _await_threads(timeout: float = 2.0) -> None:
    """Let the closed store's thread finish: the verifier forks only a single-threaded
    process (else it spawns), and the old, synchronous home had no thread."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread is not threading.main_thread():
            thread.join(max(0.0, deadline - time.monotonic()))


async def _closed_home(size: int) -> Home:
    """The home of a ledger of ``size`` entries, opened and closed again: its identity is
    loaded and :func:`raw_tx` reads it, and no store thread is left."""
    home = await open_home(await ledger_of(size))
    await home.close()
    return home


def _million(quick: bool, n: int, every_core: tuple[float, float], identity: LedgerIdentity) -> Row:
    """Seconds to verify 10^6 entries (measured at 10^6 in a full run, else extrapolated)."""
    charter_rate, raw_rate = every_core
    if quick or tiny() or n >= MILLION:
        seconds = MILLION / charter_rate
        how = f"extrapolated from the {n:,}-entry rounds above"
    else:
        home = asyncio.run(_closed_home(MILLION))
        _await_threads()
        try:
            ledger = raw_tx(home).ledger
            size, _ = ledger.head()
            t0 = time.perf_counter()
            verifier.verify_entries(home.identity, ledger.iter_bodies(), workers=None)
            seconds = (time.perf_counter() - t0) * MILLION / size
        finally:
            close_raw_dbs()
        how = f"measured: {size:,} entries streamed from SQLite, every core"
    return row(
        "verify: time for 10^6 entries",
        seconds,
        MILLION / raw_rate,
        "s",
        "<= 1.25x",
        f"{how}; baseline = 10^6 / raw every-core rate above (1.25x time = 0.8x rate)",
    )
