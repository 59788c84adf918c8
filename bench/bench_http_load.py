"""HTTP under load: ``charter serve --http`` against a bare streamable-HTTP ``MCPServer``.

Both servers are subprocesses on loopback, up at the same time, driven by the same harness in
this process: N concurrent MCP sessions (the SDK's ``Client`` over streamable HTTP, each with
its own connection pool), each calling in a loop for a fixed time. Charter's sessions carry a
bearer token (verified on every request) and call ``identity_whoami`` (read-only: one signed
entry) or ``token_issue`` (side-effecting: intent and outcome); the bare server's call a no-op.
For each N the two servers are measured one after the other, the order flipping with N, so both
see the same machine. Rows: throughput (calls per second, Charter / bare) and p50 and p99
latency (Charter / bare). The goal of issue 26 is at 32 sessions: throughput >= 0.7x and p99
<= 2x; the other sizes are informational (``--quick``: 1, 8 and 32 sessions). The harness runs
in one process and is itself measured: the bare server's throughput is what the harness can
drive. Both servers run uvicorn the same way (asyncio's event loop, httptools, no access log),
so the ratio is Charter's per-call work, not a difference in HTTP stacks.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bench._common import INFO, Row, percentile, row, scratch_dir, tiny
from charter.testing import make_home
from charter.tools import identity, tokens

REPO = Path(__file__).resolve().parents[1]
AGENT = "loader"
API = "https://api.example.com"
CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "read-only": ("identity_whoami", {}),
    "side-effecting": ("token_issue", {"audience": API}),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError(f"nothing listens on {port}")


async def _charter_site(root: Path) -> tuple[int, str]:
    """A home whose agent may issue tokens, its issuer set to a free port; a bearer token."""
    port = _free_port()
    issuer = f"http://127.0.0.1:{port}"
    home = await make_home(root)
    try:
        await identity.add_agent(
            home,
            AGENT,
            scopes=["audit:read", "token:issue"],
            audiences=[API, tokens.resource_url(issuer)],
        )
        await tokens.set_issuer(home, issuer)
        issued = await tokens.issue_for_owner(
            home,
            AGENT,
            audience=tokens.resource_url(issuer),
            scopes=["audit:read", "token:issue"],
            ttl_seconds=3600,
        )
    finally:
        await home.close()
    return port, issued.token


async def _drive(
    url: str, token: str | None, tool: str, args: dict[str, Any], sessions: int, seconds: float
) -> tuple[float, list[float]]:
    """``sessions`` clients calling ``tool`` for ``seconds``: (calls per second, latencies)."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ready = asyncio.Barrier(sessions + 1)
    stop = asyncio.Event()
    failures: list[str] = []

    async def session() -> None:
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            await client.call_tool(tool, args)  # warm: session, token, caches
            await ready.wait()
            while not stop.is_set():
                t0 = time.perf_counter()
                result = await client.call_tool(tool, args)
                latencies.append(time.perf_counter() - t0)
                if result.is_error:
                    failures.append(str(result.content))
                    stop.set()

    tasks = [asyncio.ensure_future(session()) for _ in range(sessions)]
    await ready.wait()
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{tool} failed under load: {failures[0][:200]}")
    return len(latencies) / elapsed, latencies


def _rows(
    kind: str, n: int, charter: tuple[float, list[float]], bare: tuple[float, list[float]]
) -> list[Row]:
    goal = n == 32
    (c_rate, c_lat), (b_rate, b_lat) = charter, bare
    name = f"http load: {kind}, {n} session{'s' if n > 1 else ''}"
    return [
        row(f"{name}: throughput", c_rate, b_rate, "calls/s", ">= 0.7x" if goal else INFO),
        row(
            f"{name}: p50",
            percentile(c_lat, 50) * 1e3,
            percentile(b_lat, 50) * 1e3,
            "ms",
            INFO,
        ),
        row(
            f"{name}: p99",
            percentile(c_lat, 99) * 1e3,
            percentile(b_lat, 99) * 1e3,
            "ms",
            "<= 2x" if goal else INFO,
            notes=f"{len(c_lat)} vs {len(b_lat)} calls",
        ),
    ]


async def _run(quick: bool) -> list[Row]:
    sizes = (1,) if tiny() else (1, 8, 32) if quick else (1, 8, 32, 128)
    seconds = 0.5 if tiny() else 2.0 if quick else 8.0
    root = scratch_dir("http-load")
    port, token = await _charter_site(root / "home")
    bare_port = _free_port()
    env = {**os.environ, "CHARTER_HOME": str(root / "home")}
    charter = subprocess.Popen(
        [sys.executable, "-m", "charter", "serve", "--http", "--port", str(port)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    bare = subprocess.Popen(
        [sys.executable, "-m", "bench._servers", "bare-http", str(bare_port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await _wait_port(port, charter)
        await _wait_port(bare_port, bare)
        charter_url, bare_url = f"http://127.0.0.1:{port}/mcp", f"http://127.0.0.1:{bare_port}/mcp"
        rows: list[Row] = []
        for kind, (tool, args) in CALLS.items():
            for i, n in enumerate(sizes):
                charter_run = _drive(charter_url, token, tool, args, n, seconds)
                bare_run = _drive(bare_url, None, "noop", {}, n, seconds)
                if i % 2 == 0:
                    c = await charter_run
                    b = await bare_run
                else:
                    b = await bare_run
                    c = await charter_run
                rows += _rows(kind, n, c, b)
        return rows
    finally:
        for proc in (charter, bare):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def run(quick: bool = False) -> list[Row]:
    """Measure (see the module docstring)."""
    return asyncio.run(_run(quick))


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(f"{r['name']:52} {r['charter']:>10.1f} {r['baseline']:>10.1f} {r['ratio']:>6.2f}x")
