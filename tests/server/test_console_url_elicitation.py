"""Owner approvals by URL-mode elicitation: the client is sent the console's page for the
pending request; the call proceeds once the owner approves there (a real MCP client on a
handshake connection, a real console on loopback; the owner's click is an HTTP POST with the
session cookie and CSRF token here, a real browser in tests/console/test_console_browser.py).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from typing import Any

import httpx2 as httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError, UrlElicitationRequiredError
from mcp.types import (
    URL_ELICITATION_REQUIRED,
    ElicitRequestParams,
    ElicitRequestURLParams,
    ElicitResult,
    ToolAnnotations,
)

from charter.console.run import running_console
from charter.errors import ConfigError
from charter.evidence.entries import Entry
from charter.home import Home
from charter.server import console_link
from charter.server.app import CharterServer
from charter.server.calls import current_call
from charter.testing import FrozenClock, make_home, raw_tx, server_for
from charter.tools import approvals, audit, identity

SIDE_EFFECT = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True)


@pytest.fixture
async def home(tmp_path: Any, clock: FrozenClock) -> Any:
    """Agent ``clerk`` whose email:send needs the owner's approval."""
    h = await make_home(tmp_path / "home", clock=clock)
    await identity.add_agent(
        h,
        "clerk",
        scopes=["email:send"],
        policy={"approvals": [{"pattern": "email:send", "mode": "owner"}]},
    )
    yield h
    await h.close()


async def serve(home: Home, acted: list[str], console_url: str | None) -> CharterServer:
    server = await server_for(home, "clerk")
    server.deps.console_url = console_url

    @server.charter_tool("test_mail", annotations=SIDE_EFFECT, visible_args=("to",))
    async def test_mail(to: str, body: str) -> dict[str, str]:
        """Mail ``to`` (needs email:send:<to>)."""
        call = current_call()
        call.require(f"email:send:{to}")
        await call.intent()
        acted.append(to)
        return {"sent": to}

    return server


async def console_click(base: str, login_url: str, page_url: str, verb: str) -> int:
    """What the owner's browser does: log in, open the page, post the form with its CSRF."""
    async with httpx.AsyncClient() as web:
        assert (await web.get(login_url)).status_code == 303
        page = await web.get(page_url)
        assert page.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        action = page_url.removeprefix(base) + f"/{verb}"
        posted = await web.post(base + action, data={"csrf": csrf.group(1), "valid_for": "1h"})
        return posted.status_code


async def test_url_client_gets_the_console_url_and_the_call_proceeds_once_approved(
    home: Home,
) -> None:
    acted: list[str] = []
    sent: list[ElicitRequestURLParams] = []
    async with running_console(home, port=0) as console:
        opened = asyncio.Event()

        async def answer(context: Any, params: ElicitRequestParams) -> ElicitResult:
            assert isinstance(params, ElicitRequestURLParams)
            sent.append(params)
            opened.set()
            return ElicitResult(action="accept")

        async def owner() -> int:
            await opened.wait()
            return await console_click(console.base, console.login_url, sent[0].url, "approve")

        server = await serve(home, acted, console.base)
        async with Client(server, mode="legacy", elicitation_callback=answer) as client:
            result, status = await asyncio.gather(
                client.call_tool("test_mail", {"to": "bob@example.com", "body": "hi"}), owner()
            )
    assert status == 303
    assert not result.is_error, result.content
    assert acted == ["bob@example.com"]
    (params,) = sent
    assert params.url.startswith(console.base + "/approvals/apr-")
    assert params.elicitation_id == params.url.rpartition("/")[2]
    decided = await approvals.find(home, params.elicitation_id)
    assert decided.status == "used"  # approved in the console, then claimed by this call
    assert decided.decided_by == home.owner_id
    assert (await audit.verify_out(home)).valid


async def test_a_denial_in_the_console_refuses_the_waiting_call(home: Home) -> None:
    acted: list[str] = []
    sent: list[str] = []
    async with running_console(home, port=0) as console:
        opened = asyncio.Event()

        async def answer(context: Any, params: ElicitRequestParams) -> ElicitResult:
            assert isinstance(params, ElicitRequestURLParams)
            sent.append(params.url)
            opened.set()
            return ElicitResult(action="accept")

        async def owner() -> int:
            await opened.wait()
            return await console_click(console.base, console.login_url, sent[0], "deny")

        server = await serve(home, acted, console.base)
        async with Client(server, mode="legacy", elicitation_callback=answer) as client:
            result, status = await asyncio.gather(
                client.call_tool("test_mail", {"to": "bob@example.com", "body": "hi"}), owner()
            )
    assert status == 303
    assert result.is_error
    assert "denied" in str(result.content[0].text)  # type: ignore[union-attr]
    assert acted == []


async def test_without_a_console_url_a_url_client_keeps_todays_flow(home: Home) -> None:
    acted: list[str] = []
    asked: list[Any] = []

    async def answer(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params)
        return ElicitResult(action="accept")

    server = await serve(home, acted, None)
    async with Client(server, mode="legacy", elicitation_callback=answer) as client:
        result = await client.call_tool("test_mail", {"to": "bob@example.com", "body": "hi"})
    assert result.is_error and "charter approve apr-" in str(result.content[0].text)  # type: ignore[union-attr]
    assert asked == [] and acted == []


async def test_a_client_without_url_support_keeps_todays_flow(home: Home) -> None:
    acted: list[str] = []
    async with running_console(home, port=0) as console:
        server = await serve(home, acted, console.base)
        async with Client(server, mode="legacy") as client:  # no elicitation capability
            result = await client.call_tool("test_mail", {"to": "bob@example.com", "body": "hi"})
    assert result.is_error and "charter approve apr-" in str(result.content[0].text)  # type: ignore[union-attr]
    assert acted == []


async def test_a_console_that_does_not_answer_leaves_the_call_pending(home: Home) -> None:
    acted: list[str] = []
    asked: list[Any] = []

    async def answer(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params)
        return ElicitResult(action="accept")

    async with running_console(home, port=0) as console:
        gone = console.base
    server = await serve(home, acted, gone)
    async with Client(server, mode="legacy", elicitation_callback=answer) as client:
        result = await client.call_tool("test_mail", {"to": "bob@example.com", "body": "hi"})
    assert result.is_error and "charter approve apr-" in str(result.content[0].text)  # type: ignore[union-attr]
    assert asked == [] and acted == []


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:8766",
        "http://example.com:8766",
        "http://10.0.0.1:8766",
        "http://127.0.0.1",
        "http://127.0.0.1:8766/approvals",
        "http://user@127.0.0.1:8766",
        "not a url",
    ],
)
def test_a_console_url_that_cannot_work_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="cannot reach the owner's console"):
        console_link.check_console_url(url)


def test_a_loopback_console_url_is_accepted() -> None:
    assert console_link.check_console_url("http://127.0.0.1:8766/") == "http://127.0.0.1:8766"
    assert console_link.check_console_url("http://[::1]:9000") == "http://[::1]:9000"


async def test_the_clients_accept_alone_runs_nothing(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The human accepting to open the page is not an approval: with no owner decision the
    call is left pending when the wait ends (shortened here), and nothing ran."""
    monkeypatch.setattr(console_link, "URL_APPROVAL_WAIT", 0.5)
    acted: list[str] = []

    async def answer(context: Any, params: ElicitRequestParams) -> ElicitResult:
        return ElicitResult(action="accept")

    async with running_console(home, port=0) as console:
        server = await serve(home, acted, console.base)
        async with Client(server, mode="legacy", elicitation_callback=answer) as client:
            result = await client.call_tool("test_mail", {"to": "bob@example.com", "body": "hi"})
    assert result.is_error and "approval pending" in str(result.content[0].text)  # type: ignore[union-attr]
    assert acted == []
    (pending,) = await approvals.list_pending(home)
    assert pending.status == "pending"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--agent", "clerk", "--console-url", "https://example.com:1"], "cannot reach"),
        (["--http", "--console-url", "http://127.0.0.1:8766"], "works with a stdio server"),
    ],
)
def test_serve_refuses_a_console_url_that_cannot_work_in_one_line(
    tmp_path: Any, extra: list[str], expected: str
) -> None:
    env = {**os.environ, "CHARTER_HOME": str(tmp_path / "h")}
    charter = [sys.executable, "-m", "charter"]
    subprocess.run([*charter, "init", "--owner", "me@example.com"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run([*charter, "agent", "add", "clerk", "--scope", "email:send"], env=env,
                   check=True, capture_output=True)  # fmt: skip
    done = subprocess.run(
        [*charter, "serve", *extra], env=env, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode != 0
    assert expected in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


async def test_on_2026_07_28_the_call_names_the_url_and_the_retry_runs_once_approved(
    home: Home,
) -> None:
    """No back-channel: the call ends with URLElicitationRequired (-32042) naming the page;
    after the owner approves there, the same call runs (and only then)."""
    acted: list[str] = []

    async def answer(context: Any, params: ElicitRequestParams) -> ElicitResult:
        return ElicitResult(action="accept")

    args = {"to": "bob@example.com", "body": "hi"}
    async with running_console(home, port=0) as console:
        server = await serve(home, acted, console.base)
        async with Client(server, mode="auto", elicitation_callback=answer) as client:
            with pytest.raises(MCPError) as raised:
                await client.call_tool("test_mail", args)
            assert raised.value.error.code == URL_ELICITATION_REQUIRED
            (params,) = UrlElicitationRequiredError.from_error(raised.value.error).elicitations
            assert params.url.startswith(console.base + "/approvals/apr-")
            assert acted == []
            with pytest.raises(MCPError):  # not approved yet: asked again, nothing ran
                await client.call_tool("test_mail", args)
            assert acted == []
            status = await console_click(console.base, console.login_url, params.url, "approve")
            assert status == 303
            result = await client.call_tool("test_mail", args)
    assert not result.is_error, result.content
    assert acted == ["bob@example.com"]
    assert params.elicitation_id == params.url.rpartition("/")[2]
    assert (await approvals.find(home, params.url.rpartition("/")[2])).status == "used"
    closing = [
        (f["phase"], f["outcome"])
        for f in (Entry.from_body(b).fields for b in raw_tx(home).ledger.iter_bodies())
        if f["action"] == "test.mail" and f["phase"] in ("call", "outcome")
    ]
    assert closing == [("call", "denied"), ("call", "denied"), ("outcome", "ok")]
    assert (await audit.verify_out(home)).valid
