"""Helpers for the PostgreSQL team-deployment tests (issue 18): the real CLI and real
``charter serve`` processes on a home whose rows live in PostgreSQL, MCP clients that record
what the servers acknowledged, and the checks that every acknowledged call is in the ledger.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import sechelp
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from charter.config import Settings
from charter.evidence.entries import Entry
from charter.home import Home

API = "https://api.example.com"
SCOPES = ["audit:read", "token:issue"]
CALLS_PER_CLIENT = 8


def env_for(root: Path, url: str) -> dict[str, str]:
    return {**sechelp.server_env(root), "CHARTER_DATABASE_URL": url}


def cli(root: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "charter", *args],
        env=env_for(root, url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"charter {' '.join(args)}: {done.stderr}"
    assert "Traceback" not in done.stderr
    return done


class HttpServer:
    """``charter serve --http --port PORT --issuer ISSUER`` in a subprocess."""

    def __init__(self, root: Path, url: str, port: int, issuer: str, log: Path) -> None:
        self.port = port
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "charter", "serve", "--http", "--port", str(port),
             "--issuer", issuer],
            stdout=self._log,
            stderr=self._log,
            env=env_for(root, url),
        )  # fmt: skip

    @property
    def mcp(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    async def ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the server on {self.port} exited"
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            await writer.wait_closed()
            return
        raise AssertionError(f"nothing listens on {self.port}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._log.close()


@dataclass
class Acks:
    """What the servers acknowledged: the jti of every token they said they issued."""

    jtis: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


async def http_client(
    mcp: str, token: str, acks: Acks, *, calls: int | None, stop: asyncio.Event | None = None
) -> None:
    """One MCP session calling ``token_issue``: ``calls`` times, or until ``stop`` or the
    server is gone (a failure is recorded only when no ``stop`` was given)."""
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            Client(streamable_http_client(mcp, http_client=http)) as client,
        ):
            n = 0
            while (calls is None or n < calls) and not (stop and stop.is_set()):
                n += 1
                result = await client.call_tool("token_issue", {"audience": API})
                if result.is_error or result.structured_content is None:
                    acks.failures.append(str(result.content)[:300])
                    return
                acks.jtis.append(str(result.structured_content["jti"]))
    except Exception as exc:  # the server was killed under this session
        if stop is None:
            acks.failures.append(f"{type(exc).__name__}: {exc}"[:300])


async def initialize(mcp: str, token: str) -> httpx2.Response:
    """A bare ``initialize`` POST with ``token`` (what any client sends first)."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": sechelp.PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "team-test", "version": "1"},
        },
    }
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
    }
    async with httpx2.AsyncClient(timeout=30) as http:
        return await http.post(mcp, json=body, headers=headers)


def stdio_client(server: sechelp.RawStdioServer, acks: Acks, calls: int) -> None:
    """Keep four ``token_issue`` calls in flight on the stdio server."""
    pending = [server.call("token_issue", {"audience": API}) for _ in range(4)]
    sent = len(pending)
    while pending:
        rid = pending.pop(0)
        ok, result, text = sechelp.tool_result(server.wait(rid, timeout=60))
        if not ok or result is None:
            acks.failures.append(text[:300])
            return
        acks.jtis.append(str(result["jti"]))
        if sent < calls:
            pending.append(server.call("token_issue", {"audience": API}))
            sent += 1


async def ledger(root: Path, url: str) -> list[dict[str, Any]]:
    async with await Home.open(Settings(home=root, database_url=url)) as home:
        bodies = await home.read(lambda tx: list(tx.ledger.iter_bodies()))
    return [Entry.from_body(b).fields for b in bodies]


def assert_recorded(entries: list[dict[str, Any]], jtis: list[str]) -> None:
    """Every acknowledged token has its signed intent and an ``ok`` outcome after it."""
    intents = {
        e["args"]["details"]["jti"]: e
        for e in entries
        if e["phase"] == "intent" and e["action"] == "token.issue"
    }
    outcomes = {e["call"]: e for e in entries if e["phase"] == "outcome"}
    assert len(set(jtis)) == len(jtis)
    for jti in jtis:
        intent = intents[jti]
        outcome = outcomes[intent["call"]]
        assert outcome["outcome"] == "ok" and outcome["seq"] > intent["seq"]
    assert [e["seq"] for e in entries] == list(range(len(entries)))
