"""Keys at rest (issue 19): the encrypted file store against the clear one, same run.

Both homes are made alike (agent ``bench``), one with a passphrase at the real Argon2id
("moderate") costs. Each is reopened as a server would be (``CHARTER_PASSPHRASE_FILE``), so the
sealed one derives its key-encryption key once, at its first signature; the rows then compare
single committed agent appends and token issues, interleaved rounds, and report that one-off
unlock separately. Both go through the home's store (``home.store.append``, ``tokens.issue``),
as the services do.

Run alone with ``python -m bench.bench_sealed [--quick]``.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench._common import (
    INFO,
    Row,
    ainterleave,
    arate,
    median,
    pick,
    ratio_of_rounds,
    row,
    scratch_dir,
    tiny,
)
from bench._ledgers import AGENT
from charter.config import Settings
from charter.home import Home
from charter.keys import LOG
from charter.testing import call_draft
from charter.tools import identity, tokens

AUDIENCE = "https://api.example.com"
PASSPHRASE = b"bench passphrase"


async def _make(root: Path, passphrase: bytes | None) -> None:
    async with await Home.init(
        Settings(home=root), owner="owner@example.com", passphrase=passphrase, cheap_kdf=tiny()
    ) as h:
        await identity.add_agent(
            h, AGENT, scopes=["audit:read", "token:issue"], audiences=[AUDIENCE]
        )


async def _open(root: Path, passphrase_file: Path | None) -> tuple[Home, float]:
    """Open as a server does; return the home and the seconds its first signature took."""
    home = await Home.open(Settings(home=root, passphrase_file=passphrase_file))
    start = time.perf_counter()
    home.signer.sign(LOG, b"warm up")
    return home, time.perf_counter() - start


#: After the one-off unlock the sealed store signs with the same in-memory keys.
TARGET = ">= 0.8x"


def run(quick: bool) -> list[Row]:
    """Rows: one committed append and one token issue, sealed (charter) vs clear (baseline),
    and the one-off unlock (info)."""
    return asyncio.run(_run(quick))


async def _run(quick: bool) -> list[Row]:
    n = pick(quick, full=500, quick_n=100, tiny_n=10)
    rounds = pick(quick, full=7, quick_n=3, tiny_n=2)
    base = scratch_dir("sealed")
    pfile = base / "pass"
    pfile.write_bytes(PASSPHRASE + b"\n")
    await _make(base / "clear", None)
    await _make(base / "sealed", PASSPHRASE)
    clear, clear_unlock = await _open(base / "clear", None)
    sealed, sealed_unlock = await _open(base / "sealed", pfile)
    try:
        rows = []
        for label, op in (("ledger: one committed agent append", _append),
                          ("tokens: issue (check, sign, record row)", _issue)):  # fmt: skip
            b, s = await _rounds(rounds, n, op, clear, sealed)
            rows.append(
                row(
                    f"keys at rest: {label}",
                    median(s),
                    median(b),
                    "ops/s",
                    TARGET,
                    f"{rounds} interleaved rounds of {n}; charter = sealed store (Argon2id "
                    "moderate), baseline = clear store",
                    ratio=ratio_of_rounds(s, b),
                )
            )
        rows.append(
            row(
                "keys at rest: first signature after open",
                sealed_unlock * 1e3,
                max(clear_unlock * 1e3, 1e-6),
                "ms",
                INFO,
                "once per process: one Argon2id derivation (sealed) vs reading a clear key",
            )
        )
        return rows
    finally:
        await clear.close()
        await sealed.close()


async def _rounds(
    rounds: int, n: int, op: Callable[[Home, int], Awaitable[None]], clear: Home, sealed: Home
) -> tuple[list[float], list[float]]:
    async def on_clear() -> float:
        return await arate(n, lambda: op(clear, n))

    async def on_sealed() -> float:
        return await arate(n, lambda: op(sealed, n))

    base, subject = await ainterleave(rounds, on_clear, on_sealed)
    return list(base), list(subject)


async def _append(home: Home, n: int) -> None:
    agent = await identity.load_agent(home, AGENT)
    session = secrets.token_hex(8)
    for k in range(n):
        await home.store.append([call_draft(agent, session, k)])


async def _issue(home: Home, n: int) -> None:
    agent = await identity.load_agent(home, AGENT)
    for _ in range(n):
        await tokens.issue(home, tokens.prepare(home, agent.name, agent.charter, audience=AUDIENCE))


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(
            f"{r['name']:58} {r['charter']:>10,.1f} {r['baseline']:>10,.1f} "
            f"{r['ratio']:>8.2f}x  {r['unit']}"
        )
