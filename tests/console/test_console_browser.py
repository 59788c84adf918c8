"""The console in a real headless Chromium (Debian's, driven by Playwright): log in with the
printed URL's token, see the agents and the verification state, approve a parked call by
clicking, and the call then runs; by URL-mode elicitation the waiting call runs as soon as
the owner clicks. A screenshot of every page goes to ``artifacts/console/`` (gitignored)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from consolehelp import ARTIFACTS, chromium_path, mail_server
from mcp import Client
from mcp.types import ElicitRequestParams, ElicitRequestURLParams, ElicitResult
from playwright.async_api import Browser, Page, async_playwright

from charter.console.run import running_console
from charter.home import Home
from charter.testing import FrozenClock, make_home
from charter.tools import approvals, audit, identity, lockdown, tlog


@pytest.fixture
async def home(tmp_path: Path, clock: FrozenClock) -> Any:
    h = await make_home(tmp_path / "home", clock=clock)
    await identity.add_agent(
        h,
        "clerk",
        scopes=["email:send", "audit:read"],
        policy={"approvals": [{"pattern": "email:send", "mode": "owner"}]},
    )
    await identity.add_agent(h, "scribe", scopes=["audit:read"])
    yield h
    await h.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    path = chromium_path()
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def test_owner_logs_in_sees_agents_and_approves_a_parked_call(
    home: Home, browser: Browser
) -> None:
    acted: list[str] = []
    server = await mail_server(home, acted)
    args = {"to": "bob@example.com", "body": "quarterly numbers"}
    async with Client(server, mode="legacy") as agent:
        parked = await agent.call_tool("test_mail", args)
        assert parked.is_error and not acted
        await tlog.checkpoint(home)  # so the overview has a signed checkpoint to show
        async with running_console(home, port=0) as console:
            page = await (await browser.new_context()).new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

            # Without the token: 401.
            denied = await page.goto(console.base + "/")
            assert denied is not None and denied.status == 401
            await shot(page, "0-no-token")

            # Log in with the printed URL: the overview names the agents and the state.
            errors.clear()
            await page.goto(console.login_url)
            assert page.url == console.base + "/"
            tree = page.locator(".tree")
            assert "clerk" in await tree.inner_text() and "scribe" in await tree.inner_text()
            size = int(await page.locator("#ledger-size").inner_text())
            assert size == (await audit.verify_out(home)).size
            checkpoint = await page.locator("#checkpoint").inner_text()
            assert f"size {size}" in checkpoint and "signature valid" in checkpoint
            assert await page.locator("svg.chart polyline").count() == 2
            await shot(page, "1-overview")

            # The ledger: entries with their signature and inclusion status.
            await page.click("text=Ledger")
            rows = page.locator("table.ledger tbody tr")
            assert await rows.count() == size
            statuses = await page.locator("table.ledger tbody").inner_text()
            assert "INVALID" not in statuses and "FAILED" not in statuses
            assert "proved in checkpoint" in statuses
            await shot(page, "2-ledger")

            # Approvals: the exact arguments, then a click on Approve.
            await page.click("text=Approvals")
            article = page.locator("article.approval")
            assert await article.count() == 1
            text = await article.inner_text()
            assert "bob@example.com" in text and "test_mail" in text
            await shot(page, "3-approvals")
            await page.click("button.approve")
            assert "Approved apr-" in await page.locator(".flash").inner_text()
            await shot(page, "4-approved")

            # The agent's retry of exactly the same call now runs.
            done = await agent.call_tool("test_mail", args)
            assert not done.is_error, done.content
            assert acted == ["bob@example.com"]

            # Lockdown, with its confirmation: every agent revoked.
            await page.click("text=Lockdown")
            await shot(page, "5-lockdown")
            await page.check("input[name=confirm]")
            await page.click("text=Lock down")
            assert "LOCKED DOWN" in await page.locator("#lockdown-state").inner_text()
            await shot(page, "6-locked")
            assert errors == []  # nothing the CSP blocked, no script errors
    assert (await lockdown.get_state(home)).active
    assert (await audit.verify_out(home)).valid


async def test_refused_without_the_csrf_token_in_the_browser(home: Home, browser: Browser) -> None:
    acted: list[str] = []
    async with Client(await mail_server(home, acted), mode="legacy") as agent:
        await agent.call_tool("test_mail", {"to": "bob@example.com", "body": "x"})
    (pending,) = await approvals.list_pending(home)
    async with running_console(home, port=0) as console:
        page = await (await browser.new_context()).new_page()
        await page.goto(console.login_url)
        # The browser's own session cookie, but no CSRF token in the form: refused.
        response = await page.request.post(f"{console.base}/approvals/{pending.id}/approve")
        assert response.status == 403
        # And a page on another origin cannot post with the cookie (SameSite=Strict): the
        # session cookie is not even sent, so the request is unauthenticated.
        await page.goto("data:text/html,<p>elsewhere</p>")
        other = await page.request.fetch(
            f"{console.base}/approvals/{pending.id}/approve",
            method="POST",
            headers={"cookie": ""},
        )
        assert other.status == 401
    assert (await approvals.find(home, pending.id)).status == "pending"


async def test_url_mode_elicitation_opens_the_page_and_the_waiting_call_runs_on_click(
    home: Home, browser: Browser
) -> None:
    acted: list[str] = []
    urls: list[str] = []
    async with running_console(home, port=0) as console:
        page = await (await browser.new_context()).new_page()
        await page.goto(console.login_url)  # the owner opened the console earlier
        opened = asyncio.Event()

        async def client_opens_url(context: Any, params: ElicitRequestParams) -> ElicitResult:
            assert isinstance(params, ElicitRequestURLParams)
            urls.append(params.url)
            opened.set()
            return ElicitResult(action="accept")

        async def owner_clicks() -> None:
            await opened.wait()
            await page.goto(urls[0])
            await shot(page, "7-url-elicitation")
            await page.click("button.approve")

        server = await mail_server(home, acted)
        server.deps.console_url = console.base
        async with Client(server, mode="legacy", elicitation_callback=client_opens_url) as c:
            result, _ = await asyncio.gather(
                c.call_tool("test_mail", {"to": "carol@example.com", "body": "hi"}),
                owner_clicks(),
            )
    assert not result.is_error, result.content
    assert acted == ["carol@example.com"]
    assert urls[0].startswith(console.base + "/approvals/apr-")
