"""Servers the benchmarks spawn over stdio: the bare ``MCPServer`` baseline and Charter with
a side-effecting no-op tool.

``python -m bench._servers bare`` serves one no-op tool on a bare ``MCPServer``: the
baseline for round trips and cold start (``--charter-transport``: on Charter's stdio
transport instead of the SDK's, to separate the transport from the gate).
``python -m bench._servers touch HOME AGENT`` is exactly what ``charter serve --agent AGENT``
builds, plus two tools registered through the public ``charter_tool`` API: ``bench_noop``, a
read-only no-op (what the bare server's tool does, behind the gate), and ``bench_touch``, a
side-effecting tool that commits its signed intent and does nothing else. Their calls cost
exactly the gate.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from pydantic import BaseModel


class Touched(BaseModel):
    """What ``bench_touch`` returns: the seq of its intent entry."""

    seq: int


async def bare(*, charter_transport: bool = False, durable: str | None = None) -> None:
    """Serve the baseline: a bare MCPServer with a no-op tool, on the SDK's stdio transport
    or (``charter_transport``) on the one ``charter serve`` uses.

    ``durable`` (a database path): the tool first commits one small row there, in WAL mode
    with ``synchronous=FULL`` as Charter's ledger does, so each call costs one fsync: the
    floor under any server that acknowledges a call only once its record is on disk.
    """
    import sqlite3

    from mcp.server.mcpserver import MCPServer

    from charter.server.stdio import serve_stdio

    server: MCPServer[object] = MCPServer("bare")
    db = None
    if durable is not None:
        from charter.storage.db import preallocate_wal

        db = sqlite3.connect(durable, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS calls (n INTEGER PRIMARY KEY, at REAL NOT NULL)")
        preallocate_wal(db)  # as Charter's writer does at start: commits overwrite the log

    @server.tool(name="noop")
    async def noop() -> str:
        """Do nothing (or, with ``durable``, commit one row first)."""
        if db is not None:
            db.execute("INSERT INTO calls(at) VALUES (?)", (time.time(),))
        return "ok"

    if charter_transport:
        await serve_stdio(server)
    else:
        await server.run_stdio_async()


async def touch(home_root: str, agent_name: str, *, stub_ledger: bool = False) -> None:
    """Serve Charter as ``agent_name`` with the extra ``bench_*`` tools.

    ``stub_ledger`` (diagnostics only, ``bench.diagnose stdio``): appends return the last
    entry instead of writing, to measure the gate without the ledger.
    """
    from mcp.types import ToolAnnotations

    from charter.config import Settings
    from charter.home import Home
    from charter.server.app import READ_ONLY
    from charter.server.calls import current_call
    from charter.server.deps import Deps
    from charter.server.stdio import serve_stdio
    from charter.server.wiring import build_server
    from charter.tools.identity import AgentContext, load_agent

    home = await Home.open(Settings(home=Path(home_root)))
    ctx = await load_agent(home, agent_name)
    if stub_ledger:
        from charter.evidence.entries import Entry
        from charter.storage import writer
        from charter.storage.ports import Draft

        last = await home.read(lambda tx: tx.ledger.get(tx.ledger.head()[0] - 1))

        async def no_append(self: writer.LedgerWriter, draft: Draft) -> Entry:
            assert last is not None
            return last

        writer.LedgerWriter.append = no_append  # type: ignore[method-assign]

    async def resolve() -> AgentContext:
        return ctx

    server = build_server(Deps(home=home, resolve_agent=resolve))  # as serve
    side_effect = ToolAnnotations(
        read_only_hint=False, destructive_hint=False, open_world_hint=False
    )

    @server.charter_tool("bench_noop", annotations=READ_ONLY)
    async def bench_noop() -> str:
        """Benchmark only: a read-only no-op behind the gate (one ledger entry per call)."""
        return "ok"

    @server.charter_tool("bench_touch", annotations=side_effect, visible_args=("note",))
    async def bench_touch(note: str = "") -> Touched:
        """Benchmark only: commit a signed intent, act (no-op), return."""
        entry = await current_call().intent()
        return Touched(seq=entry.seq)

    try:
        await serve_stdio(server)
    finally:
        await home.close()


def bare_http(port: int) -> None:
    """The HTTP baseline: a bare MCPServer with a no-op tool over streamable HTTP."""
    from mcp.server.mcpserver import MCPServer

    server: MCPServer[object] = MCPServer("bare")

    @server.tool(name="noop")
    async def noop() -> str:
        """Do nothing."""
        return "ok"

    import uvicorn

    # As `charter serve --http` runs uvicorn: warnings only, no access log, on asyncio's own
    # event loop (never uvloop, even where it is installed: Charter's server does not use it).
    uvicorn.run(
        server.streamable_http_app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="asyncio",
    )


if __name__ == "__main__":
    if sys.argv[1] == "bare-http":
        bare_http(int(sys.argv[2]))
    elif sys.argv[1] == "bare":
        durable = sys.argv[sys.argv.index("--durable") + 1] if "--durable" in sys.argv else None
        asyncio.run(bare(charter_transport="--charter-transport" in sys.argv, durable=durable))
    else:
        asyncio.run(touch(sys.argv[2], sys.argv[3], stub_ledger="--stub-ledger" in sys.argv))
