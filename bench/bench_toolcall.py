"""Tool-call round trip over stdio: Charter vs a bare ``MCPServer`` no-op, same real client.

Both servers are subprocesses driven by the SDK's ``Client`` over stdio, open at the same
time; calls alternate one by one between them, so both see the same machine load. Every
Charter call is signed into the ledger and committed durably (fsync) before the response:
one entry for a read-only call, two (intent, outcome) for a side-effecting one. A
calibration row pairs the bare server with a second bare server the same way: it reads
1.00x when the pairing favours neither side.

``charter serve`` speaks stdio through the event loop's own pipes
(``charter/server/stdio.py``) where the SDK's transport uses worker threads. Two
informational rows separate that from the gate: the bare server on Charter's transport, and
the gated no-op against it.

When Node and the TypeScript SDK are installed (``.ci/install-inspector`` puts them in
``.ci/node``), the same comparisons run again with the TypeScript SDK's ``Client``
(``bench/ts_roundtrip.cjs``): the client Claude Desktop, Claude Code and the Inspector use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from mcp import Client, StdioServerParameters

from bench._common import INFO, Row, percentile, pick, row, scratch_dir
from bench._ledgers import AGENT, INBOX, create_home

REPO = Path(__file__).resolve().parents[1]
TARGET = "<= 1.5x"
AUDIENCE = "https://api.example.com"
#: Protocol generation the hosts use (Claude Desktop, Claude Code, the TS SDK): the
#: initialize handshake. ``auto`` (2026-07-28) adds the same per-request cost to both sides.
MODE = "legacy"
#: Where ``.ci/install-inspector`` installs the TypeScript SDK (with the MCP Inspector).
NODE_SDK = REPO / ".ci" / "node"
TS_CLIENT_PACKAGE = "node_modules/@modelcontextprotocol/client"


def node_binary() -> str | None:
    """The Node ``.ci/install-inspector`` installed (>= 22), else the one on PATH."""
    installed = NODE_SDK / "node_modules" / ".bin" / "node"
    return str(installed) if installed.exists() else shutil.which("node")


def charter_command() -> list[str]:
    """How a host launches Charter: the ``charter`` console script next to this Python."""
    script = Path(sys.executable).with_name("charter")
    found = str(script) if script.exists() else shutil.which("charter")
    return [found] if found else [sys.executable, "-m", "charter"]


def params(argv: list[str], env: dict[str, str] | None = None) -> StdioServerParameters:
    """Stdio launch parameters run from the repository root."""
    return StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=str(REPO))


def bare_params(
    *, charter_transport: bool = False, durable: Path | None = None
) -> StdioServerParameters:
    """The baseline server (on the SDK's stdio transport, or on Charter's; with ``durable``,
    one fsync'd SQLite commit per call)."""
    extra = ["--charter-transport"] if charter_transport else []
    extra += ["--durable", str(durable)] if durable is not None else []
    return params([sys.executable, "-m", "bench._servers", "bare", *extra])


async def _timed(client: Client, tool: str, args: dict[str, Any]) -> float:
    t0 = time.perf_counter()
    result = await client.call_tool(tool, args)
    elapsed = time.perf_counter() - t0
    if result.is_error:
        raise RuntimeError(f"{tool} failed: {result.content}")
    return elapsed


Subject = tuple[StdioServerParameters, str, dict[str, Any]]


class Run(NamedTuple):
    """One subject's round trips and the bare no-op's paired with them (seconds)."""

    subject: list[float]
    bare: list[float]


async def _compare(subjects: list[Subject], calls: int) -> list[tuple[list[float], list[float]]]:
    """For each subject (server, tool, arguments), ``calls`` round trips, each one paired
    with a bare no-op round trip made right before or after it (the order alternates).

    Subjects take turns, one whole run each: while a subject runs, it and the bare server
    are called equally often. Cycling through every subject call by call (as this did
    before) called the bare server six times as often as each subject, whose process then
    sat idle between its calls and answered from colder caches and sleeping CPUs: a bias
    against every subject (BENCHMARKS.md, "Targets").
    """
    samples: list[tuple[list[float], list[float]]] = [([], []) for _ in subjects]
    async with contextlib.AsyncExitStack() as stack:
        bare = await stack.enter_async_context(Client(bare_params(), mode=MODE))
        clients = [
            await stack.enter_async_context(Client(server, mode=MODE)) for server, _, _ in subjects
        ]
        for client, (_, tool, args), (base, subj) in zip(clients, subjects, samples, strict=True):
            for _ in range(max(3, calls // 20)):  # warm up (imports, caches, page cache)
                await _timed(bare, "noop", {})
                await _timed(client, tool, args)
            for i in range(calls):
                if i % 2 == 0:
                    base.append(await _timed(bare, "noop", {}))
                    subj.append(await _timed(client, tool, args))
                else:
                    subj.append(await _timed(client, tool, args))
                    base.append(await _timed(bare, "noop", {}))
    return samples


def _rows(
    label: str,
    base: list[float],
    subj: list[float],
    note: str,
    target: str = TARGET,
    prefix: str = "toolcall",
) -> list[Row]:
    out = []
    for q in (50, 99):
        b, s = percentile(base, q) * 1e3, percentile(subj, q) * 1e3
        out.append(row(f"{prefix}: {label} p{q}", s, b, "ms", target, note))
    return out


def ts_client_available() -> bool:
    """Whether Node and the TypeScript SDK's client (from ``.ci/install-inspector``) are here."""
    return node_binary() is not None and (NODE_SDK / TS_CLIENT_PACKAGE).is_dir()


def _ts_compare(subjects: list[Subject], calls: int) -> list[tuple[list[float], list[float]]]:
    """What :func:`_compare` measures, with the TypeScript SDK's ``Client`` instead."""

    def server(launch: StdioServerParameters, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        env = {"PATH": os.environ.get("PATH", ""), **(launch.env or {})}
        cwd = str(launch.cwd or REPO)
        return {"command": launch.command, "args": list(launch.args), "env": env, "cwd": cwd,
                "tool": tool, "arguments": args}  # fmt: skip

    config = {
        "sdk": str(NODE_SDK),
        "calls": calls,
        "warmup": max(3, calls // 20),
        "baseline": server(bare_params(), "noop", {}),
        "subjects": [server(*subject) for subject in subjects],
    }
    done = subprocess.run(
        [node_binary() or "node", str(REPO / "bench" / "ts_roundtrip.cjs"), json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the TypeScript client failed: {done.stderr[-2000:]}")
    return [(base, subj) for base, subj in json.loads(done.stdout)["samples"]]


async def _home_and_compare(
    root: Path, subjects: list[Subject], calls: int
) -> list[tuple[list[float], list[float]]]:
    """Make the home the servers serve, then :func:`_compare` (one event loop for both)."""
    await create_home(root)
    return await _compare(subjects, calls)


def run(quick: bool) -> list[Row]:
    """p50/p99 round trips of ``identity_whoami`` and of a side-effecting call."""
    calls = pick(quick, full=2000, quick_n=300, tiny_n=10)
    root = scratch_dir("toolcall") / "home"
    env = {"CHARTER_HOME": str(root)}
    serve = params([*charter_command(), "serve", "--agent", AGENT], env)
    touch = params([sys.executable, "-m", "bench._servers", "touch", str(root), AGENT])
    note = f"{calls} calls each, alternating, MCP Client over stdio, mode={MODE}"
    subjects: list[Subject] = [
        (serve, "identity_whoami", {}),
        (touch, "bench_noop", {}),
        (touch, "bench_touch", {"note": "x"}),
        (serve, "token_issue", {"audience": AUDIENCE, "scopes": ["audit:read"]}),
        (serve, "email_send", {"to": INBOX, "subject": "bench", "text": "a short note"}),
        (bare_params(charter_transport=True), "noop", {}),
        (bare_params(charter_transport=True, durable=root.parent / "floor.db"), "noop", {}),
        (bare_params(), "noop", {}),  # calibration: the pairing itself must read 1.00x
    ]
    calibration = (
        "calibration: a second bare no-op server",
        "the same server as the baseline, another process: what the pairing itself adds",
    )
    samples = asyncio.run(_home_and_compare(root, subjects, calls))
    labels = (
        ("identity_whoami (1 ledger entry)", "`charter serve`; returns the agent's identity"),
        ("read-only no-op through the gate (1 entry)", "bench_noop: returns 'ok', like the bare"),
        (
            "side-effecting no-op (intent + outcome)",
            "bench_touch: commits its intent, acts (no-op)",
        ),
        ("token_issue (intent + token + outcome)", "`charter serve`: a real side effect"),
        (
            "email_send, local transport (intent + delivery + outcome)",
            "`charter serve`: a signed message put in another agent's mailbox",
        ),
    )
    rows: list[Row] = []
    for (label, what), (base, subj) in zip(labels, samples[:5], strict=True):
        rows += _rows(label, base, subj, f"{note}; {what}")
    rows += _rows(calibration[0], *samples[7], f"{note}; {calibration[1]}", target=INFO)
    if ts_client_available():  # the client the MCP hosts are built on
        ts_note = f"{calls} calls each, alternating, TypeScript SDK Client over stdio"
        ts_samples = _ts_compare([*subjects[:5], subjects[7]], calls)
        for (label, what), (base, subj) in zip(labels, ts_samples[:5], strict=True):
            rows += _rows(label, base, subj, f"{ts_note}; {what}", prefix="toolcall, TS client")
        base, subj = ts_samples[5]
        label, what = calibration
        rows += _rows(label, base, subj, f"{ts_note}; {what}", INFO, "toolcall, TS client")
    else:
        print("toolcall: no TypeScript client rows (run .ci/install-inspector)", file=sys.stderr)
    # Informational rows: Charter's own cost apart from its faster transport, and the
    # durability floor (one fsync'd commit per call) under any acknowledged-on-disk server.
    # The subjects ran one after another, each paired with the bare no-op: a comparison of
    # two subjects divides each one's percentile by its own run's bare percentile first.
    fast, floor, noop = (Run(subj, base) for base, subj in (samples[5], samples[6], samples[1]))
    for label, after, before, what in (
        (
            "bare no-op served on Charter's stdio transport",
            fast,
            Run(fast.bare, fast.bare),  # the bare no-op on the SDK's transport, same run
            "the same bare server, event-loop pipes instead of the SDK's worker threads",
        ),
        (
            "read-only no-op vs the bare no-op, both on Charter's transport",
            noop,
            fast,
            "the gate and its one durable entry alone",
        ),
        (
            "bare no-op + one durable SQLite commit, on Charter's transport",
            floor,
            fast,
            "one INSERT committed with synchronous=FULL per call: the fsync's own cost",
        ),
        (
            "read-only no-op vs that durable bare no-op",
            noop,
            floor,
            "what Charter adds beyond one fsync: signing, chaining, the Merkle tree, the gate",
        ),
    ):
        for q in (50, 99):
            a, b = percentile(after.subject, q), percentile(before.subject, q)
            normalized = (a / percentile(after.bare, q)) / (b / percentile(before.bare, q))
            rows.append(
                row(
                    f"toolcall: {label} p{q}",
                    a * 1e3,
                    b * 1e3,
                    "ms",
                    INFO,
                    f"{note}; {what}; ratio of the two runs' ratios to their bare no-op",
                    ratio=normalized,
                )
            )
    return rows
