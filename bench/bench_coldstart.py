"""Cold start: spawn to ``initialize`` result, ``charter serve`` vs a bare ``MCPServer``.

The client is a raw pipe (one JSON-RPC line out, one line back), so the figure is the
server's own start-up: interpreter, imports, opening the home, loading the agent's key and
charter, registering the tools, answering ``initialize``. Both get the minimal environment
a host gives a stdio server.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

from bench._common import Row, interleave, median, pick, ratio_of_rounds, row, scratch_dir, tiny
from bench._ledgers import AGENT, create_home
from bench.bench_toolcall import REPO, charter_command

TARGET = "<= 1.25x"
INITIALIZE = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "charter-bench", "version": "0"},
        },
    }
)


def host_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """What the SDK stdio clients pass a server: a few variables plus the configured ones."""
    keep = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    return env | (extra or {})


def spawn_to_initialize(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from spawning ``argv`` to reading its ``initialize`` result."""
    t0 = time.perf_counter()
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, env=env, text=True
    ) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(INITIALIZE + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        elapsed = time.perf_counter() - t0
        proc.stdin.close()  # end of input: the server exits
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    if '"result"' not in line:
        raise RuntimeError(f"{argv[0]} did not answer initialize: {line[:200]!r}")
    return elapsed


def run(quick: bool) -> list[Row]:
    """Median spawn-to-initialize of each, interleaved."""
    rounds = pick(quick, full=21, quick_n=7, tiny_n=1)
    root = scratch_dir("coldstart") / "home"
    asyncio.run(create_home(root))  # the only async step: the spawns are timed from here
    charter_argv = [*charter_command(), "serve", "--agent", AGENT]
    charter_env = host_env({"CHARTER_HOME": str(root)})
    bare_argv = [sys.executable, "-m", "bench._servers", "bare"]
    bare_env = host_env()
    if not tiny():  # warm the page cache for both
        spawn_to_initialize(bare_argv, bare_env)
        spawn_to_initialize(charter_argv, charter_env)
    base, subj = interleave(
        rounds,
        lambda: spawn_to_initialize(bare_argv, bare_env),
        lambda: spawn_to_initialize(charter_argv, charter_env),
    )
    return [
        row(
            "coldstart: spawn to initialize result",
            median(subj) * 1e3,
            median(base) * 1e3,
            "ms",
            TARGET,
            f"{rounds} interleaved spawns each; raw pipe client; `charter serve --agent` vs "
            "bare MCPServer with one tool",
            ratio=ratio_of_rounds(subj, base),
        )
    ]
