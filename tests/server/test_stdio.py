"""The one sanctioned subprocess test: `charter serve` over real stdio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from rawstdio import exchange

from charter.evidence.entries import Entry
from charter.home import Home
from charter.testing import make_home, raw_tx
from charter.tools import audit, identity


@pytest.fixture
async def home(tmp_path: Path) -> AsyncIterator[Home]:
    """A home on the real clock: the server subprocess reads the real time."""
    h = await make_home(tmp_path / "home")
    await identity.add_agent(h, "alpha", scopes=["audit:read"])
    yield h
    await h.close()


def _env(home: Home) -> dict[str, str]:
    # Hosts hand the server a minimal environment (mcp-sdk-2.md §2): mimic it.
    return {"CHARTER_HOME": str(home.settings.home), "PATH": os.environ.get("PATH", "")}


async def test_every_stdout_line_is_json_rpc(home: Home) -> None:
    requests: list[dict[str, Any]] = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw-test", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "identity_whoami", "arguments": {}},
        },
        {
            "jsonrpc": "2.0",
            "id": 4,
            "method": "tools/call",
            "params": {"name": "audit_query", "arguments": {"limit": "many"}},
        },
        {
            "jsonrpc": "2.0",
            "id": 5,
            "method": "tools/call",
            "params": {"name": "no_such_tool", "arguments": {}},
        },
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "charter", "serve", "--agent", "alpha", "--log-level", "DEBUG"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(home),
    )
    lines, _ = exchange(proc, requests)
    messages = [json.loads(line) for line in lines if line.strip()]  # a stray print fails here
    assert all(m.get("jsonrpc") == "2.0" for m in messages)
    by_id = {m["id"]: m for m in messages if "id" in m}
    assert set(by_id) == {1, 2, 3, 4, 5}
    who = by_id[3]["result"]["structuredContent"]
    assert who["agent_id"].endswith("/alpha")
    assert by_id[4]["result"]["isError"] is True
    assert by_id[5]["result"]["isError"] is True
    assert "Traceback" not in "".join(lines)
    await audit.verify_home(home)
    actions = [Entry.from_body(b).fields["action"] for b in raw_tx(home).ledger.iter_bodies()]
    assert actions[-3:] == ["identity.whoami", "audit.query", "tool.unknown"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_sdk_client_over_stdio(home: Home, mode: str) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "charter", "serve", "--agent", "alpha"],
        env=_env(home),
    )
    async with Client(params, mode=mode) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("identity_whoami", {})
    assert {"identity_whoami", "audit_query", "audit_verify"} <= tools
    assert result.structured_content is not None
    assert result.structured_content["name"] == "alpha"


async def test_serve_refuses_a_revoked_agent_with_a_clear_message(home: Home) -> None:
    await identity.revoke_agent(home, "alpha", reason="test")
    proc = subprocess.run(
        [sys.executable, "-m", "charter", "serve", "--agent", "alpha"],
        input="",
        capture_output=True,
        text=True,
        env=_env(home),
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "revoked" in proc.stderr
    assert proc.stdout == ""


def test_serve_without_a_home_says_how_to_init(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "charter", "serve", "--agent", "alpha"],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"CHARTER_HOME": str(tmp_path / "nowhere"), "PATH": os.environ.get("PATH", "")},
    )
    assert proc.returncode != 0
    assert "charter init" in proc.stderr


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


async def test_lines_the_sdk_cannot_read_get_an_error_and_the_server_goes_on(home: Home) -> None:
    """Valid JSON the SDK's parser refuses used to go unanswered: the client hung (issue 16.8).

    A lone surrogate and 300-deep nesting each get a JSON-RPC error carrying the request's
    id; a line with no recoverable id gets one with a null id; the next call is served.
    """
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw-test", "version": "0"},
        },
    }
    whoami = {"name": "identity_whoami", "arguments": {}}
    requests: list[dict[str, Any]] = [
        initialize,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "identity_whoami", "arguments": {"x": "x\ud800"}},
        },
        {
            "jsonrpc": "2.0",
            "id": "deep",
            "method": "tools/call",
            "params": {"name": "identity_whoami", "arguments": {"x": _nested(300)}},
        },
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": "nope"},
        {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": whoami},
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "charter", "serve", "--agent", "alpha"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(home),
    )
    assert proc.stdin is not None
    proc.stdin.write('{"jsonrpc": "2.0", "id": 3, "method": [' + "[" * 300 + "\n")  # no id
    hung = threading.Timer(60, proc.kill)  # unanswered, the exchange would wait forever
    hung.start()
    try:
        lines, _ = exchange(proc, requests)
    finally:
        hung.cancel()
    messages = [json.loads(line) for line in lines if line.strip()]
    by_id = {m["id"]: m for m in messages}
    assert by_id[2]["error"]["code"] in (-32700, -32600)
    assert by_id[2]["error"]["message"].startswith("Parse error")
    assert by_id["deep"]["error"]["code"] in (-32700, -32600)
    assert "recursion" in by_id["deep"]["error"]["message"]
    assert by_id[4]["error"]["code"] == -32600
    assert by_id[None]["error"]["code"] == -32700  # not JSON: no id to echo
    assert by_id[5]["result"]["structuredContent"]["name"] == "alpha"
    assert "Traceback" not in "".join(lines)
    await audit.verify_home(home)


async def test_a_sub_agent_serves_as_itself_over_stdio(home: Home) -> None:
    """Issue 21: `charter serve --agent <sub-agent>` serves it; whoami shows its parent; once
    the parent is revoked the sub-agent can no longer be served."""
    await identity.add_agent(home, "planner", scopes=["agent:delegate", "audit:read"])
    parent = StdioServerParameters(
        command=sys.executable, args=["-m", "charter", "serve", "--agent", "planner"],
        env=_env(home),
    )  # fmt: skip
    async with Client(parent) as client:
        made = await client.call_tool(
            "agent_delegate", {"name": "worker", "scopes": ["audit:read"], "ttl_seconds": 600}
        )
    assert not made.is_error, made.content
    child = StdioServerParameters(
        command=sys.executable, args=["-m", "charter", "serve", "--agent", "worker"],
        env=_env(home),
    )  # fmt: skip
    async with Client(child) as client:
        who = (await client.call_tool("identity_whoami", {})).structured_content
    assert who is not None and who["name"] == "worker"
    planner = await identity.get_agent(home, "planner")
    assert who["chain"] == [home.owner_id, planner.agent_id, who["agent_id"]]
    last = [Entry.from_body(b).fields for b in raw_tx(home).ledger.iter_bodies()][-1]
    assert last["actor"] == who["agent_id"] and last["kid"] == who["key_id"]
    await identity.revoke_agent(home, "planner")
    proc = subprocess.run(
        [sys.executable, "-m", "charter", "serve", "--agent", "worker"],
        input="", capture_output=True, text=True, env=_env(home), timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "ancestor 'planner' was revoked" in proc.stderr
    assert "Traceback" not in proc.stderr
    await audit.verify_home(home)
