"""Witness submission (C2SP tlog-witness): a new checkpoint submitted to a witness and its
cosignature stored, against a bare endpoint doing the witness's raw cryptography, same run.

Charter's side (``charter.tools.witnesses.submit_once``, what ``charter witness submit`` and
the server's background submitter run): read the witness's row and the latest checkpoint,
build the consistency proof from the size the witness last cosigned, ``POST /add-checkpoint``
to a real ``charter witness serve`` (which verifies the log's signature and the proof, commits
its new state with an fsync and signs a cosignature), verify the cosignature line with the
witness's vkey and commit it (a second fsync). Before each submission, untimed: one entry is
appended and a checkpoint signed.

Baseline (``bench/_bare_http.py witness``): the same HTTP client call (urllib, a connection
per request, as Charter's submitter) to a bare Starlette endpoint that verifies the note's
Ed25519 signature and signs a cosignature with PyNaCl, keeping nothing. The submission runs
off the tool-call path (a thread of its own; an unreachable witness never blocks a call), so
no DESIGN §8 budget applies: ``info`` rows, p50 and p99.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import subprocess
import sys
import time
import urllib.request

from bench._bare_http import spawn
from bench._common import INFO, Row, percentile, pick, row, scratch_dir
from bench._ledgers import fill, new_home
from bench.bench_http_load import REPO, _free_port, _wait_port
from charter.evidence.c2sp import AddCheckpoint
from charter.home import Home
from charter.tools import tlog, witnesses
from charter.witness.core import Witness

CHARTER = [sys.executable, "-m", "charter"]
BARE = [sys.executable, "-m", "bench._bare_http", "witness"]


def _bare_submit(url: str, body: bytes) -> float:
    t0 = time.perf_counter()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "text/plain; charset=utf-8"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        if answer.status != 200:
            raise RuntimeError(f"bare witness answered {answer.status}")
        answer.read()
    return time.perf_counter() - t0


async def _charter_submit(home: Home) -> float:
    await fill(home, await home.read(lambda tx: tx.ledger.head()[0]) + 1, batch=1)
    await tlog.checkpoint(home)  # untimed: the log signs a new checkpoint
    t0 = time.perf_counter()
    done = await asyncio.to_thread(witnesses.submit_once, home)
    elapsed = time.perf_counter() - t0
    if [s.ok for s in done] != [True]:
        raise RuntimeError(f"submission failed: {[s.detail for s in done]}")
    return elapsed


async def _bare_body(home: Home) -> bytes:
    """A request like Charter's (old size, a proof, the signed note), for the bare witness."""
    signed = await tlog.checkpoint(home)
    size = signed.size
    proof = await home.read(lambda tx: tx.tree.consistency_proof(size // 2, size))
    return AddCheckpoint(size // 2, tuple(proof), signed.note).to_body()


async def _run(quick: bool) -> list[Row]:
    rounds = pick(quick, full=300, quick_n=60, tiny_n=3)
    root = scratch_dir("witness")
    folder = root / "witness"
    port, bare_port = _free_port(), _free_port()
    home = await new_home(root / "home")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        log_vkey = tlog.log_verifier(home).vkey
        with Witness.init(folder, "bench.example/w1") as w:
            w.add_log(log_vkey)
            witness_vkey = w.verifier.vkey
        await witnesses.add_witness(home, f"http://127.0.0.1:{port}", witness_vkey)
        log_public = home.log_key.public_key
        procs.append(
            spawn(
                [*CHARTER, "witness", "serve", "--port", str(port), "--home", str(folder)],
            )
        )
        procs.append(
            spawn(
                [*BARE, str(bare_port), secrets.token_bytes(32).hex(), log_public.hex()],
                cwd=REPO,
            )
        )
        await _wait_port(port, procs[0])
        await _wait_port(bare_port, procs[1])
        bare = functools.partial(
            _bare_submit, f"http://127.0.0.1:{bare_port}/add-checkpoint", await _bare_body(home)
        )
        for _ in range(2):  # warm both
            await _charter_submit(home)
            await asyncio.to_thread(bare)
        subj: list[float] = []
        base: list[float] = []
        for i in range(rounds):
            if i % 2 == 0:
                base.append(await asyncio.to_thread(bare))
                subj.append(await _charter_submit(home))
            else:
                subj.append(await _charter_submit(home))
                base.append(await asyncio.to_thread(bare))
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        await home.close()
    note = (
        f"{rounds} interleaved submissions each; Charter: proof, POST, witness verifies + "
        "fsyncs + cosigns, cosignature verified + stored (fsync); baseline: POST to a bare "
        "endpoint, Ed25519 verify + sign only"
    )
    return [
        row(
            f"witness: submit a checkpoint, cosignature back and stored {q}",
            percentile(subj, p) * 1e3,
            percentile(base, p) * 1e3,
            "ms",
            INFO,
            note,
        )
        for q, p in (("p50", 50), ("p99", 99))
    ]


def run(quick: bool) -> list[Row]:
    """p50 and p99 of one witness submission vs the bare endpoint, interleaved."""
    return asyncio.run(_run(quick))


if __name__ == "__main__":
    for r in run("--quick" in sys.argv):
        print(f"{r['name']}: {r['charter']:.2f} vs {r['baseline']:.2f} {r['unit']} "
              f"({r['ratio']:.2f}x, target {r['target']})")  # fmt: skip
