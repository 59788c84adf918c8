"""How ``charter serve --http`` answers (issue 26: HTTP under load): a 2026-07-28 request gets
plain JSON, served in its own task; a handshake session (2025-11-25) stays on SSE, so the
server can still ask the client's human (elicitation) in the middle of a call.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from httpthread import serving
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import ElicitRequestParams, ElicitResult

from charter.config import Settings
from charter.home import Home
from charter.server.http import build_http_app
from charter.testing import make_home
from charter.tools import identity, tokens

API = "https://api.example.com"
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@asynccontextmanager
async def site(
    tmp_path: Path, policy: dict[str, Any] | None = None
) -> AsyncIterator[tuple[str, str]]:
    """Serve a home whose agent ``alpha`` may issue tokens; yield (MCP URL, its token)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    issuer = f"http://127.0.0.1:{sock.getsockname()[1]}"
    home = await make_home(tmp_path / "home")
    mcp = tokens.resource_url(issuer)
    try:
        await tokens.set_issuer(home, issuer)
        await identity.add_agent(
            home, "alpha", scopes=["audit:read", "token:issue"], audiences=[mcp, API], policy=policy
        )
        scopes = ["audit:read", "token:issue"]
        token = (await tokens.issue_for_owner(home, "alpha", audience=mcp, scopes=scopes)).token
        server_home = await Home.open(Settings(home=home.settings.home))
        try:
            with serving(build_http_app(server_home, issuer_url=issuer), sock):
                yield mcp, token
        finally:
            await server_home.close()
    finally:
        await home.close()
        sock.close()


def call(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {
            "name": tool,
            "arguments": arguments,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
            },
        },
    }


async def test_a_2026_request_is_answered_with_plain_json(tmp_path: Path) -> None:
    async with site(tmp_path) as (mcp, token):
        headers = ACCEPT | {
            "Authorization": f"Bearer {token}",
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": "tools/call",
            "Mcp-Name": "identity_whoami",
        }
        async with httpx2.AsyncClient(timeout=20) as http:
            answer = await http.post(mcp, json=call("identity_whoami", {}), headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    result = answer.json()["result"]
    assert result["structuredContent"]["name"] == "alpha"


async def test_a_handshake_session_still_streams_and_can_ask_the_human(tmp_path: Path) -> None:
    """Elicitation needs the SSE stream of a handshake session: the approval round trip runs
    over HTTP, and the session's answers are SSE."""
    policy = {"approvals": [{"pattern": "token:*", "mode": "client"}]}
    shown: list[str] = []

    async def answer(context: Any, params: ElicitRequestParams) -> ElicitResult:
        shown.append(params.message)
        return ElicitResult(action="accept", content={"approve": True})

    async with site(tmp_path, policy) as (mcp, token):
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=20) as http,
            Client(
                streamable_http_client(mcp, http_client=http),
                mode="legacy",
                elicitation_callback=answer,
            ) as client,
        ):
            result = await client.call_tool("token_issue", {"audience": API})
        assert not result.is_error, result.content
        assert len(shown) == 1 and "token_issue" in shown[0]
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        }
        opened = httpx2.post(mcp, json=init, headers=ACCEPT | {"Authorization": f"Bearer {token}"})
    assert opened.status_code == 200
    assert opened.headers["content-type"].startswith("text/event-stream")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_both_generations_call_tools(tmp_path: Path, mode: str) -> None:
    async with (
        site(tmp_path) as (mcp, token),
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=20) as http,
        Client(streamable_http_client(mcp, http_client=http), mode=mode) as client,
    ):
        whoami = await client.call_tool("identity_whoami", {})
        issued = await client.call_tool("token_issue", {"audience": API})
    assert not whoami.is_error and not issued.is_error, (whoami.content, issued.content)
    assert issued.structured_content and issued.structured_content["token"]
