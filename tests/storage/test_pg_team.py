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
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import sechelp
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pg import free_port
from pgteam import (
    API,
    CALLS_PER_CLIENT,
    SCOPES,
    Acks,
    HttpServer,
    assert_recorded,
    cli,
    http_client,
    initialize,
    ledger,
    stdio_client,
)

from charter.tools.tokens import resource_url


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
