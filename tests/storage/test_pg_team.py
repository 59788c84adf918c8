"""Issue 18's first "Done means", end to end on a fresh PostgreSQL database.

Everything through the real CLI and real server processes: ``charter init``, ``agent add``,
``token issue`` with ``CHARTER_DATABASE_URL`` set; two ``charter serve --http`` processes on
two ports with one ``--issuer`` (one public origin, as behind a load balancer) plus a stdio
server; several concurrent MCP clients on each. Then: every call succeeded and one ledger holds
each acknowledged call's signed intent and outcome; each server accepts a token the other
issued (one JWKS); ``kill -9`` of one server mid-stream loses no acknowledged call;
``charter lockdown`` from the CLI is obeyed by a running server within a second; ``charter
audit verify`` passes.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import sechelp
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pg import free_port

from charter.config import Settings
from charter.evidence.entries import Entry
from charter.home import Home
from charter.tools.tokens import resource_url

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


@pytest.fixture
def servers() -> Iterator[list[HttpServer]]:
    started: list[HttpServer] = []
    yield started
    for server in started:
        server.stop()


async def test_two_http_servers_and_a_stdio_server_act_as_one_charter(
    tmp_path: Path, pg_database: str, servers: list[HttpServer]
) -> None:
    root, url = tmp_path / "home", pg_database
    cli(root, url, "init", "--owner", "owner@example.com")
    assert not (root / "charter.db").exists()  # the rows live in PostgreSQL
    issuer = f"http://127.0.0.1:{free_port()}"  # the one public origin (the balancer's)
    resource = resource_url(issuer)
    cli(root, url, "token", "issuer", "set", issuer)
    audiences = ["--audience", API, "--audience", resource]
    scopes = [arg for s in SCOPES for arg in ("--scope", s)]
    cli(root, url, "agent", "add", "alpha", *scopes, *audiences)
    issued = cli(root, url, "token", "issue", "--agent", "alpha", "--audience", resource,
                 *scopes, "--json")  # fmt: skip
    token = json.loads(issued.stdout)["token"]

    log = tmp_path / "servers.log"
    a = HttpServer(root, url, free_port(), issuer, log)
    servers.append(a)
    await a.ready()  # the first one checks the recorded issuer before the second starts
    b = HttpServer(root, url, free_port(), issuer, log)
    servers.append(b)
    await b.ready()
    stdio = sechelp.RawStdioServer(root, "alpha", log, CHARTER_DATABASE_URL=url)
    try:
        stdio.initialize(timeout=120)
        assert (await initialize(a.mcp, token)).status_code == 200

        # -- several concurrent clients on the three servers: every call succeeds ----------
        acks = Acks()
        stdio_thread = threading.Thread(target=stdio_client, args=(stdio, acks, 12))
        stdio_thread.start()
        await asyncio.gather(
            *(http_client(s.mcp, token, acks, calls=CALLS_PER_CLIENT) for s in (a, b, a, b, a, b))
        )
        await asyncio.to_thread(stdio_thread.join, 120)
        assert not acks.failures, acks.failures[:3]
        assert len(acks.jtis) == 6 * CALLS_PER_CLIENT + 12
        assert_recorded(await ledger(root, url), acks.jtis)

        # -- one issuer, one JWKS: each server accepts a token the other issued ------------
        async with httpx2.AsyncClient(timeout=30) as http:
            jwks = [
                (await http.get(f"http://127.0.0.1:{s.port}/.well-known/jwks.json")).json()
                for s in (a, b)
            ]
        assert jwks[0] == jwks[1] and jwks[0]["keys"]
        for issuing, using in ((a, b), (b, a)):
            headers = {"Authorization": f"Bearer {token}"}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=60) as http,
                Client(streamable_http_client(issuing.mcp, http_client=http)) as client,
            ):
                made = await client.call_tool(
                    "token_issue", {"audience": resource, "scopes": ["audit:read"]}
                )
            assert not made.is_error and made.structured_content is not None
            other = str(made.structured_content["token"])
            async with (
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {other}"}) as http,
                Client(streamable_http_client(using.mcp, http_client=http)) as client,
            ):
                who = await client.call_tool("identity_whoami", {})
            assert not who.is_error, who.content
            assert who.structured_content is not None
            assert who.structured_content["name"] == "alpha"

        # -- kill -9 of server b mid-stream: nothing it acknowledged is lost ---------------
        streamed = Acks()
        stop = asyncio.Event()
        stream = [
            asyncio.ensure_future(http_client(b.mcp, token, streamed, calls=None, stop=stop))
            for _ in range(4)
        ]
        deadline = time.monotonic() + 60
        while len(streamed.jtis) < 10:  # really mid-stream
            assert time.monotonic() < deadline and not streamed.failures, streamed.failures
            await asyncio.sleep(0.02)
        b.kill9()
        stop.set()
        await asyncio.gather(*stream)
        assert not streamed.failures, streamed.failures[:3]
        # The other servers go on on the same ledger, after b's last entry.
        more = Acks()
        await http_client(a.mcp, token, more, calls=3)
        assert not more.failures, more.failures
        assert_recorded(await ledger(root, url), acks.jtis + streamed.jtis + more.jtis)

        # -- charter lockdown from the CLI: obeyed by the running server within 1 s --------
        cli(root, url, "lockdown", "--reason", "team test")
        locked_at = time.monotonic()
        refused = await initialize(a.mcp, token)
        waited = time.monotonic() - locked_at
        assert refused.status_code == 401 and "revoked" in refused.text, refused.text
        assert waited < 1.0, f"the lockdown took {waited:.2f} s to be obeyed"
        stdio_refused = Acks()
        await asyncio.to_thread(stdio_client, stdio, stdio_refused, 1)
        assert stdio_refused.failures and not stdio_refused.jtis
        assert "revoked" in stdio_refused.failures[0]
    finally:
        stdio.close()

    verified = cli(root, url, "audit", "verify")
    entries = await ledger(root, url)
    assert verified.stdout.startswith(f"OK: {len(entries)} entries verified")
    assert_recorded(entries, acks.jtis + streamed.jtis + more.jtis)
    assert any(e["action"] == "owner.lockdown" for e in entries)
