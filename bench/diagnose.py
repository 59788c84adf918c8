"""Where the time goes, for the targets that are not met: ``python -m bench.diagnose [WHAT]``.

Not a benchmark (no ratios, no targets): a breakdown of one Charter operation into its parts,
each measured by switching one part off, to back the explanations in ``BENCHMARKS.md``.

* ``toolcall``: an in-process MCP round trip (``Client(..., mode="legacy")``), built up from
  a bare ``MCPServer`` no-op to Charter's gated no-op with its durable ledger entry; the
  ledger on tmpfs (no real fsync) and on disk.
* ``stdio``: the same gated no-op over stdio (subprocesses, the SDK client) against the
  bare server: the ledger stubbed out, on tmpfs, on disk.
* ``append``: each SQL statement of ``Ledger.append`` (one entry per transaction); then, on
  tmpfs, ``Ledger.append_one`` on a blocking connection against one ``store.append`` (a unit
  of work on aiosqlite's thread) and against the ``LedgerWriter`` as the servers run it now
  (group commit on a ``SqliteStore`` of its own, one caller). This replaces the old writer's
  inline-vs-thread-mode comparison: there is one mode now.
* ``verify``: the per-entry costs of verification against the PyNaCl signature check.
* ``pages``: the database pages (write-ahead log frames) one call of each tool writes, by
  table (:mod:`bench._pages`).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import shutil
import statistics
import sys
import time
import timeit
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench._common import scratch_dir
from bench._ledgers import AGENT, ledger_of, new_home, open_home
from bench._pages import pages
from charter.home import Home
from charter.server.app import READ_ONLY, CharterServer
from charter.server.deps import Deps
from charter.server.wiring import build_server
from charter.storage import ledger_hooks
from charter.storage import writer as writer_mod
from charter.storage.ledger import Ledger
from charter.storage.ports import Draft
from charter.storage.sqlite import SqliteStore
from charter.testing import call_draft, close_raw_dbs, raw_db, raw_tx
from charter.tools import identity

TMPFS = Path("/dev/shm")


async def _home(on_tmpfs: bool) -> Home:
    """A new home on disk, or on tmpfs (where fsync costs nothing) if asked and available."""
    if on_tmpfs and TMPFS.is_dir():
        root = TMPFS / f"charter-diag-{time.time_ns()}"
        atexit.register(shutil.rmtree, root, True)
    else:
        root = scratch_dir("diag")
    return await new_home(root / "home")


def _p50_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


async def _round_trips(calls: dict[str, Callable[[], Awaitable[Any]]], n: int) -> dict[str, float]:
    """p50 of each call in microseconds, the calls interleaved one by one."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(n // 10):
        for call in calls.values():
            await call()
    for _ in range(n):
        for name, call in calls.items():
            t0 = time.perf_counter()
            await call()
            samples[name].append(time.perf_counter() - t0)
    return {name: _p50_us(s) for name, s in samples.items()}


def toolcall(n: int) -> None:
    """In-process round trips, from a bare no-op to Charter's gated no-op, durable."""
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    async def gated(home: Home) -> CharterServer:
        """What ``charter serve`` builds (its writer group-commits on a store of its own,
        started by the server's lifespan), plus a gated read-only no-op."""
        agent = await identity.load_agent(home, AGENT)

        async def resolve() -> identity.AgentContext:
            return agent

        server = build_server(Deps(home=home, resolve_agent=resolve))

        @server.charter_tool("bench_noop", annotations=READ_ONLY)
        async def bench_noop() -> str:
            """Benchmark only."""
            return "ok"

        return server

    bare: MCPServer[Any] = MCPServer("bare")

    @bare.tool(name="noop")
    async def noop() -> str:
        """Do nothing."""
        return "ok"

    async def main() -> dict[str, float]:
        disk, tmpfs, stub = await _home(False), await _home(True), await _home(True)
        last = await stub.read(lambda tx: tx.ledger.get(tx.ledger.head()[0] - 1))
        stubbed = await gated(stub)
        real_append = writer_mod.LedgerWriter.append

        async def no_ledger(self: writer_mod.LedgerWriter, draft: Draft) -> Any:
            return last if self is stubbed.deps._writer else await real_append(self, draft)

        writer_mod.LedgerWriter.append = no_ledger  # type: ignore[method-assign]
        try:
            async with (
                Client(bare, mode="legacy") as c0,
                Client(stubbed, mode="legacy") as c1,
                Client(await gated(tmpfs), mode="legacy") as c2,
                Client(await gated(disk), mode="legacy") as c3,
            ):
                return await _round_trips(
                    {
                        "bare MCPServer no-op": lambda: c0.call_tool("noop", {}),
                        "+ Charter's gate (ledger append stubbed out)": lambda: c1.call_tool(
                            "bench_noop", {}
                        ),
                        "+ ledger append, tmpfs (sign, SQL, no real fsync)": lambda: c2.call_tool(
                            "bench_noop", {}
                        ),
                        "+ fsync: ledger on disk (the real thing)": lambda: c3.call_tool(
                            "bench_noop", {}
                        ),
                    },
                    n,
                )
        finally:
            writer_mod.LedgerWriter.append = real_append  # type: ignore[method-assign]
            for home in (disk, tmpfs, stub):
                await home.close()

    _print_steps(asyncio.run(main()))


def stdio(n: int) -> None:
    """The same over stdio (real subprocesses, the SDK client), against the bare server."""
    from bench.bench_toolcall import Subject, _compare
    from bench.bench_toolcall import params as stdio_params

    async def server(on_tmpfs: bool, *extra: str) -> Subject:
        home = await _home(on_tmpfs)
        root = str(home.settings.layout.root)
        argv = [sys.executable, "-m", "bench._servers", "touch", root, AGENT, *extra]
        await home.close()
        return (stdio_params(argv), "bench_noop", {})

    async def main() -> tuple[list[Subject], list[tuple[list[float], list[float]]]]:
        bare_argv = [sys.executable, "-m", "bench._servers", "bare", "--charter-transport"]
        subjects = [
            (stdio_params(bare_argv), "noop", {}),
            await server(True, "--stub-ledger"),
            await server(True),
            await server(False),
        ]
        return subjects, await _compare(subjects, n)

    labels = (
        "bare no-op on Charter's stdio transport (no gate)",
        "gate only (ledger stubbed out)",
        "gate + ledger append on tmpfs (no real fsync)",
        "gate + ledger append on disk (the real thing)",
    )
    subjects, samples = asyncio.run(main())
    print("p50 round trip of a gated read-only no-op vs the bare no-op, SDK Client (us):")
    for label, (base, subj) in zip(labels, samples, strict=True):
        b, s = _p50_us(base), _p50_us(subj)
        print(f"  {s:8,.0f} vs {b:6,.0f}  ({s / b:.2f}x, {s - b:+,.0f})  {label}")
    print("the same with a raw pipe client (one JSON line out, one back), calls alternating:")
    bare = _RawPipe([sys.executable, "-m", "bench._servers", "bare"], "noop")
    pipes = [_RawPipe([s.command, *s.args], tool) for s, tool, _ in subjects]
    try:
        raw = _raw_round_trips([bare, *pipes], n)
    finally:
        for pipe in (bare, *pipes):
            pipe.close()
    for label, value in zip(labels, raw[1:], strict=True):
        print(f"  {value:8,.0f} vs {raw[0]:6,.0f}  ({value / raw[0]:.2f}x)  {label}")


class _RawPipe:
    """A stdio MCP server driven by hand: initialize, then one tools/call per line."""

    def __init__(self, argv: list[str], tool: str) -> None:
        import subprocess

        from bench.bench_coldstart import INITIALIZE
        from bench.bench_toolcall import REPO

        self.tool = tool
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, text=True, bufsize=1
        )
        self._send(INITIALIZE)
        self.proc.stdout.readline()  # type: ignore[union-attr]
        self._send('{"jsonrpc":"2.0","method":"notifications/initialized"}')

    def _send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]

    def call(self, i: int) -> float:
        t0 = time.perf_counter()
        self._send(
            f'{{"jsonrpc":"2.0","id":{i},"method":"tools/call",'
            f'"params":{{"name":"{self.tool}","arguments":{{}}}}}}'
        )
        self.proc.stdout.readline()  # type: ignore[union-attr]
        return time.perf_counter() - t0

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait(timeout=10)
        self.proc.stdout.close()  # type: ignore[union-attr]


def _raw_round_trips(pipes: list[_RawPipe], n: int) -> list[float]:
    samples: list[list[float]] = [[] for _ in pipes]
    for i in range(1, n + n // 10 + 1):
        for pipe, out in zip(pipes, samples, strict=True):
            took = pipe.call(i)
            if i > n // 10:
                out.append(took)
    return [_p50_us(s) for s in samples]


def append(n: int) -> None:
    """Each statement of a one-entry ``Ledger.append``; then the store's and the writer's hop."""
    asyncio.run(_append(n))


async def _append(n: int) -> None:
    home = await _home(False)
    tmp = await _home(True)
    try:
        agent = await identity.load_agent(home, AGENT)
        _statements(home, agent, n)
        await _append_paths(tmp, n)
    finally:
        close_raw_dbs()
        await home.close()
        await tmp.close()


def _statements(home: Home, agent: identity.AgentContext, n: int) -> None:
    """Time each statement of ``Ledger.append_one`` on a blocking connection, on disk."""
    times: dict[str, list[float]] = {}
    conn = raw_db(home)

    class Timed:
        def execute(self, sql: str, *args: Any) -> Any:
            t0 = time.perf_counter()
            out = conn.execute(sql, *args)
            times.setdefault(" ".join(sql.split()[:3])[:40], []).append(time.perf_counter() - t0)
            return out

        def executemany(self, sql: str, *args: Any) -> Any:
            t0 = time.perf_counter()
            out = conn.executemany(sql, *args)
            times.setdefault("(Merkle nodes) executemany", []).append(time.perf_counter() - t0)
            return out

        def __getattr__(self, name: str) -> Any:
            return getattr(conn, name)

    ledger = Ledger(
        Timed(),  # type: ignore[arg-type]
        home.identity,
        home.clock,
        log_key=home.log_key,
        hooks=ledger_hooks(),
    )
    t0 = time.perf_counter()
    for i in range(n):
        ledger.append_one(call_draft(agent, "diag", i))
    total = (time.perf_counter() - t0) / n
    print(f"Ledger.append_one on disk: {total * 1e6:,.0f} us per entry; statements (p50 us):")
    for sql, samples in sorted(times.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"  {_p50_us(samples):8,.0f}  {sql}")


async def _append_paths(tmp: Home, n: int) -> None:
    """On tmpfs: a direct append, one unit of work on the store, the servers' writer."""
    agent = await identity.load_agent(tmp, AGENT)
    ledger = raw_tx(tmp).ledger
    direct = timeit.timeit(lambda: ledger.append_one(call_draft(agent, "d", 0)), number=n)

    t0 = time.perf_counter()
    for i in range(n):
        await tmp.store.append([call_draft(agent, "s", i)])
    hop = (time.perf_counter() - t0) / n

    store = await SqliteStore.open(tmp.layout.db)  # as Deps.start: a store of its own
    store.bind(tmp.identity, tmp.clock, tmp.log_key)
    await store.warm()
    writer = writer_mod.LedgerWriter(store)
    try:
        t0 = time.perf_counter()
        for i in range(n):
            await writer.append(call_draft(agent, "w", i))
        grouped = (time.perf_counter() - t0) / n
    finally:
        await writer.close()
        await store.close()
    print("on tmpfs (no fsync), us per append:")
    print(f"  {direct / n * 1e6:8,.0f}  Ledger.append_one, direct (blocking connection)")
    print(f"  {hop * 1e6:8,.0f}  store.append: one unit of work on aiosqlite's thread")
    print(f"  {grouped * 1e6:8,.0f}  LedgerWriter, 1 caller (its own store, as both servers)")


async def _ledger(n: int) -> tuple[Home, list[bytes], bytes]:
    """A home of at least ``n`` entries (closed again), its entries and the agent's key."""
    home = await open_home(await ledger_of(max(n, 100)))
    try:
        bodies = await home.read(lambda tx: list(tx.ledger.iter_bodies()))
        key = (await identity.load_agent(home, AGENT)).key.public_key
    finally:
        await home.close()
    return home, bodies, key


def verify(n: int) -> None:
    """Per-entry costs of verification, against the signature check they wrap."""
    from charter.evidence import entry_checks, verifier
    from charter.evidence.entries import SIGNING_PREFIX
    from charter.evidence.jwk import b64url_decode, verify_signature

    home, bodies, key = asyncio.run(_ledger(n))
    body = bodies[-1]
    entry = entry_checks.parse(0, body)
    sig = b64url_decode(entry["sig"])
    message = SIGNING_PREFIX + entry_checks.signed_bytes(entry, body)
    _, state = verifier.verify_entries(home.identity, bodies[:-1])
    replay = verifier._Replay(home.identity, state)
    size, head = state.size, state.head

    def step(verdict: entry_checks.Verdict | None) -> Callable[[], None]:
        def run() -> None:
            state.size, state.head = size, head
            replay.step(body, verdict)

        return run

    parts: dict[str, Callable[[], object]] = {
        "PyNaCl verify (the baseline's whole work)": lambda: verify_signature(key, message, sig),
        "parse + canonical-bytes check (orjson)": lambda: entry_checks.parse(0, body),
        "signed bytes cut from the body": lambda: entry_checks.signed_bytes(entry, body),
        "replay step, signature checked by a worker": step(entry_checks.SIG_GOOD),
        "replay step, all in this process": step(None),
        "worker precheck (parse + signature)": lambda: entry_checks.precheck(
            body, {entry["kid"]: key}
        ),
    }
    print(f"per entry, best of 5 x {n:,} (us):")
    for name, fn in parts.items():
        best = min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6
        print(f"  {best:8.1f}  {name}")


def _print_steps(p50: dict[str, float]) -> None:
    previous = None
    for name, value in p50.items():
        delta = "" if previous is None else f"  ({value - previous:+,.0f})"
        print(f"  {value:8,.0f} us  {name}{delta}")
        previous = value


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.diagnose", description=__doc__)
    parser.add_argument(
        "what", nargs="*", default=["toolcall", "stdio", "append", "verify", "pages"]
    )
    parser.add_argument("-n", type=int, default=1000, help="samples per measurement")
    args = parser.parse_args(argv)
    for what in args.what:
        print(f"== {what}")
        {"toolcall": toolcall, "stdio": stdio, "append": append, "verify": verify, "pages": pages}[
            what
        ](args.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
