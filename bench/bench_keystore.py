"""Keys in a PKCS#11 token vs in-process: a ledger append and a token issue, side by side.

Two homes built the same way, one with key files (the signer signs in-process with pynacl),
one with ``charter init --key-store pkcs11:…`` on a SoftHSM2 token (every signature is a
``C_Sign`` with CKM_EDDSA in the token). The rows report the token home's rate against the
file home's, in interleaved rounds: what moving the keys out of the process costs. The
target is information only: the cost is the token's, not Charter's. Both sides go through
the home's store (``home.store.append``, ``tokens.issue``), so both pay the same hop to its
thread.
"""

from __future__ import annotations

import asyncio
import secrets
import sys

from bench import _softhsm
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
)
from bench._ledgers import AGENT, new_home
from charter.config import Settings
from charter.home import Home
from charter.testing import call_draft
from charter.tools import identity, tokens

AUDIENCE = "https://api.example.com"


def run(quick: bool) -> list[Row]:
    """Two rows: append and token issue, keys in the token vs in-process."""
    return asyncio.run(_run(quick))


async def _run(quick: bool) -> list[Row]:
    n = pick(quick, full=1000, quick_n=300, tiny_n=10)
    rounds = pick(quick, full=7, quick_n=5, tiny_n=2)
    token = _softhsm.softhsm_token()
    _softhsm.wipe(token)
    root = scratch_dir("keystore")
    in_process = await new_home(root / "files")
    in_token = await Home.init(Settings(home=root / "token"), owner="owner@example.com",
                         key_store=token.uri())  # fmt: skip
    await identity.add_agent(
        in_token, AGENT, scopes=["audit:read", "token:issue"], audiences=[AUDIENCE]
    )
    try:
        return [
            await _append(in_process, in_token, n, rounds),
            await _issue(in_process, in_token, n, rounds),
        ]
    finally:
        await in_process.close()
        await in_token.close()
        _softhsm.wipe(token)


async def _append(files: Home, token: Home, n: int, rounds: int) -> Row:
    async def appender(home: Home) -> float:
        agent = await identity.load_agent(home, AGENT)
        session = secrets.token_hex(8)

        async def go() -> None:
            for k in range(n):
                await home.store.append([call_draft(agent, session, k)])

        return await arate(n, go)

    base, subj = await ainterleave(rounds, lambda: appender(files), lambda: appender(token))
    return row(
        "append, keys in PKCS#11 token vs in-process",
        median(subj),
        median(base),
        "entries/s",
        INFO,
        f"SoftHSM2; {rounds} interleaved rounds of {n} agent-signed appends, one commit each",
        ratio=ratio_of_rounds(subj, base),
    )


async def _issue(files: Home, token: Home, n: int, rounds: int) -> Row:
    async def issuer(home: Home) -> float:
        agent = await identity.load_agent(home, AGENT)

        async def go() -> None:
            for _ in range(n):
                await tokens.issue(
                    home, tokens.prepare(home, agent.name, agent.charter, audience=AUDIENCE)
                )

        return await arate(n, go)

    base, subj = await ainterleave(rounds, lambda: issuer(files), lambda: issuer(token))
    return row(
        "token issue, keys in PKCS#11 token vs in-process",
        median(subj),
        median(base),
        "tokens/s",
        INFO,
        f"SoftHSM2; {rounds} interleaved rounds of {n} tokens.issue (sign + row, one commit each)",
        ratio=ratio_of_rounds(subj, base),
    )


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(f"{r['name']:52} {r['charter']:>10,.0f} {r['baseline']:>10,.0f} {r['ratio']:.2f}x")
