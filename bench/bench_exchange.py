"""Token exchange (RFC 8693, issue 21): one ``POST /token`` round trip to ``charter serve
--http``, against bare token endpoints measured the same way in the same run.

Charter's exchange verifies the parent's token and the sub-agent's (signature, claims,
revocation rows, the sub-agent's charter), checks the delegation, signs the new token and
commits its row with a ``token.exchange`` entry signed by the sub-agent (one transaction, one
fsync) before it answers. Baselines (``bench/_bare_http.py``, uvicorn as Charter runs it):

* **bare + durable**: a Starlette endpoint that verifies both JWTs and signs a new one with
  PyJWT, after committing one row for it (SQLite WAL, ``synchronous=FULL``): the floor of any
  token service that records what it issues. Target: DESIGN §8's budget for a side-effecting
  call, ``<= 1.5x`` p50 and p99.
* **bare**: the same without the row (``info``: what durability and accounting cost together).

One client (httpx2, keep-alive) calls the three servers one after the other, the order
rotating every round, so all see the same machine.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx2
from mcp import Client

from bench._bare_http import bare_token, spawn
from bench._common import INFO, Row, percentile, pick, row, scratch_dir
from bench.bench_http_load import REPO, _free_port, _wait_port
from charter.testing import make_home, server_for
from charter.tools import identity, tokens
from charter.tools.tokens.exchange import ACCESS_TOKEN_TYPE, GRANT_TYPE

TARGET = "<= 1.5x"


async def _charter_site(root: Path, port: int) -> tuple[str, str]:
    """A home serving ``http://127.0.0.1:PORT``: agent ``planner`` and its sub-agent
    ``worker``; (the planner's token, the worker's token), both for the MCP resource."""
    issuer = f"http://127.0.0.1:{port}"
    mcp = tokens.resource_url(issuer)
    home = await make_home(root)
    try:
        await tokens.set_issuer(home, issuer)
        await identity.add_agent(
            home, "planner", scopes=["agent:delegate", "audit:read", "token:issue"], audiences=[mcp]
        )
        async with Client(await server_for(home, "planner")) as client:
            made = await client.call_tool(
                "agent_delegate", {"name": "worker", "scopes": ["audit:read"], "audiences": [mcp]}
            )
        if made.is_error:
            raise RuntimeError(f"agent_delegate failed: {made.content}")
        subject = await tokens.issue_for_owner(
            home, "planner", audience=mcp, scopes=["audit:read"], ttl_seconds=3600
        )
        actor = await tokens.issue_for_owner(
            home, "worker", audience=mcp, scopes=["audit:read"], ttl_seconds=3600
        )
        return subject.token, actor.token
    finally:
        await home.close()


def _form(subject: str, actor: str) -> dict[str, str]:
    return {
        "grant_type": GRANT_TYPE,
        "subject_token": subject,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "actor_token": actor,
        "actor_token_type": ACCESS_TOKEN_TYPE,
    }


def _timed(client: httpx2.Client, url: str, form: dict[str, str]) -> float:
    t0 = time.perf_counter()
    answer = client.post(url, data=form)
    elapsed = time.perf_counter() - t0
    if answer.status_code != 200 or "access_token" not in answer.json():
        raise RuntimeError(f"{url} answered {answer.status_code}: {answer.text[:200]}")
    return elapsed


def run(quick: bool) -> list[Row]:
    """p50 and p99 of one exchange round trip: Charter vs the two bare endpoints."""
    calls = pick(quick, full=1000, quick_n=200, tiny_n=5)
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # one INFO line per request
    root = scratch_dir("exchange")
    port, bare_port, durable_port = _free_port(), _free_port(), _free_port()
    subject, actor = asyncio.run(_charter_site(root / "home", port))
    seed = secrets.token_bytes(32)
    bare_form = _form(bare_token(seed, "planner", "audit:read"), bare_token(seed, "worker", "a"))
    env = {**os.environ, "CHARTER_HOME": str(root / "home")}
    bare_argv = [sys.executable, "-m", "bench._bare_http", "exchange"]
    procs = {
        "charter": spawn(
            [sys.executable, "-m", "charter", "serve", "--http", "--port", str(port)],
            env=env,
        ),
        "bare": spawn([*bare_argv, str(bare_port), seed.hex()], cwd=REPO),
        "durable": spawn(
            [*bare_argv, str(durable_port), seed.hex(), "--durable", str(root / "bare.db")],
            cwd=REPO,
        ),
    }
    try:
        for name, p in (("charter", port), ("bare", bare_port), ("durable", durable_port)):
            asyncio.run(_wait_port(p, procs[name]))
        targets = {
            "charter": (f"http://127.0.0.1:{port}/token", _form(subject, actor)),
            "bare": (f"http://127.0.0.1:{bare_port}/token", bare_form),
            "durable": (f"http://127.0.0.1:{durable_port}/token", bare_form),
        }
        samples: dict[str, list[float]] = {name: [] for name in targets}
        order = list(targets)
        with httpx2.Client(timeout=30) as client:
            for url, form in targets.values():  # warm: connections, caches
                for _ in range(3):
                    _timed(client, url, form)
            for i in range(calls):
                for name in order[i % 3 :] + order[: i % 3]:
                    samples[name].append(_timed(client, *targets[name]))
    finally:
        for proc in procs.values():
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    ms = {name: (percentile(v, 50) * 1e3, percentile(v, 99) * 1e3) for name, v in samples.items()}
    note = f"{calls} exchanges each, one client, the three servers in rotation"
    rows = []
    for i, q in ((0, "p50"), (1, "p99")):
        rows.append(
            row(
                f"token exchange: POST /token vs a bare durable JWT exchange {q}",
                ms["charter"][i],
                ms["durable"][i],
                "ms",
                TARGET,
                f"{note}; baseline: Starlette + PyJWT verify 2, sign 1, commit 1 row (fsync)",
            )
        )
    for i, q in ((0, "p50"), (1, "p99")):
        rows.append(
            row(
                f"token exchange: POST /token vs a bare JWT exchange (no record) {q}",
                ms["charter"][i],
                ms["bare"][i],
                "ms",
                INFO,
                f"{note}; baseline: Starlette + PyJWT verify 2, sign 1, nothing stored",
            )
        )
    return rows


if __name__ == "__main__":
    for r in run("--quick" in sys.argv):
        print(f"{r['name']}: {r['charter']:.2f} vs {r['baseline']:.2f} {r['unit']} "
              f"({r['ratio']:.2f}x, target {r['target']})")  # fmt: skip
