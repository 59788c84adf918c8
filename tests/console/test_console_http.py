"""The console's guard, over real HTTP on loopback: login token (once), session cookie, 401
without it, CSRF on every POST, loopback Host only, the security headers, escaping; and
``charter console --no-browser`` as the owner runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from consolehelp import pending_owner_call

from charter.console.auth import CSP
from charter.console.run import running_console
from charter.home import Home
from charter.testing import FrozenClock, make_home
from charter.tools import approvals, identity, lockdown


@pytest.fixture
async def home(tmp_path: Path, clock: FrozenClock) -> Any:
    h = await make_home(tmp_path / "home", clock=clock)
    await identity.add_agent(
        h,
        "clerk",
        scopes=["email:send"],
        policy={"approvals": [{"pattern": "email:send", "mode": "owner"}]},
    )
    yield h
    await h.close()


PAGES = ["/", "/ledger", "/approvals", "/lockdown", "/verify", "/static/console.css"]


async def logged_in(web: httpx.AsyncClient, login_url: str) -> None:
    response = await web.get(login_url)
    assert response.status_code == 303


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def test_every_page_needs_the_session_and_the_login_token_works_once(home: Home) -> None:
    async with running_console(home, port=0) as console, httpx.AsyncClient() as web:
        for path in PAGES:
            response = await web.get(console.base + path)
            assert response.status_code == 401, path
            assert "not signed in" in response.text
        assert (await web.get(console.base + "/login?token=wrong")).status_code == 401
        await logged_in(web, console.login_url)
        cookie = web.cookies.get("charter_console")
        assert cookie
        for path in PAGES:
            assert (await web.get(console.base + path)).status_code == 200, path
        async with httpx.AsyncClient() as other:  # the link is spent: no second session
            assert (await other.get(console.login_url)).status_code == 401
        forged = {"cookie": "charter_console=not-a-session"}
        async with httpx.AsyncClient(headers=forged) as other:
            assert (await other.get(console.base + "/")).status_code == 401


async def test_the_session_cookie_is_httponly_and_samesite_strict(home: Home) -> None:
    async with running_console(home, port=0) as console, httpx.AsyncClient() as web:
        response = await web.get(console.login_url)
    header = response.headers["set-cookie"].lower()
    assert "httponly" in header
    assert "samesite=strict" in header
    assert "path=/" in header


async def test_every_response_carries_the_csp_and_no_framing(home: Home) -> None:
    async with running_console(home, port=0) as console, httpx.AsyncClient() as web:
        denied = await web.get(console.base + "/")
        await logged_in(web, console.login_url)
        page = await web.get(console.base + "/")
    for response in (denied, page):
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
    assert "default-src 'self'" in CSP and "frame-ancestors 'none'" in CSP
    assert "<script" not in page.text  # nothing inline for the CSP to have to allow


async def test_a_post_without_the_csrf_token_changes_nothing(home: Home) -> None:
    approval_id = await pending_owner_call(home)
    async with running_console(home, port=0) as console, httpx.AsyncClient() as web:
        await logged_in(web, console.login_url)
        url = f"{console.base}/approvals/{approval_id}/approve"
        assert (await web.post(url, data={})).status_code == 403
        assert (await web.post(url, data={"csrf": "guess"})).status_code == 403
        assert (await approvals.find(home, approval_id)).status == "pending"
        lock = await web.post(console.base + "/lockdown", data={"confirm": "yes"})
        assert lock.status_code == 403
        assert not (await lockdown.get_state(home)).active
        # With the page's token the same click works (the refusal above was the token).
        page = await web.get(f"{console.base}/approvals/{approval_id}")
        done = await web.post(url, data={"csrf": csrf_of(page.text), "valid_for": "1h"})
        assert done.status_code == 303
    assert (await approvals.find(home, approval_id)).status == "approved"


async def test_lockdown_needs_its_confirmation(home: Home) -> None:
    async with running_console(home, port=0) as console, httpx.AsyncClient() as web:
        await logged_in(web, console.login_url)
        csrf = csrf_of((await web.get(console.base + "/lockdown")).text)
        refused = await web.post(console.base + "/lockdown", data={"csrf": csrf})
        assert refused.status_code == 400 and "confirm" in refused.text
        assert not (await lockdown.get_state(home)).active
        done = await web.post(console.base + "/lockdown", data={"csrf": csrf, "confirm": "yes"})
        assert done.status_code == 303
    state = await lockdown.get_state(home)
    assert state.active and state.agents == ["clerk"]


async def test_only_the_loopback_host_is_answered(home: Home) -> None:
    async with running_console(home, port=0) as console, httpx.AsyncClient() as web:
        sock_host = console.base.removeprefix("http://").rpartition(":")[0]
        assert sock_host == "127.0.0.1"
        port = console.base.rpartition(":")[2]
        rebinding = await web.get(console.login_url, headers={"host": f"evil.example:{port}"})
        assert rebinding.status_code == 421
        await logged_in(web, console.login_url)
        response = await web.get(console.base + "/", headers={"host": f"evil.example:{port}"})
        assert response.status_code == 421


async def test_recorded_text_is_escaped_on_the_approval_page(home: Home) -> None:
    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(2)>@example.com'
    approval_id = await pending_owner_call(home, to=hostile)
    async with running_console(home, port=0) as console, httpx.AsyncClient() as web:
        await logged_in(web, console.login_url)
        page = await web.get(f"{console.base}/approvals/{approval_id}")
        listing = await web.get(f"{console.base}/approvals")
    for html in (page.text, listing.text):
        assert "<script>alert(1)" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_a_bad_filter_is_one_line_not_a_traceback(home: Home) -> None:
    async with running_console(home, port=0) as console, httpx.AsyncClient() as web:
        await logged_in(web, console.login_url)
        for query in ("since=yesterday", "agent=nobody", "outcome=maybe", "before=x"):
            response = await web.get(f"{console.base}/ledger?{query}")
            assert response.status_code == 200
            assert 'class="error"' in response.text and "Traceback" not in response.text


def test_charter_console_prints_a_login_url_and_answers_401_without_it(tmp_path: Path) -> None:
    """The command as the owner runs it: a real process, its printed URL, then Ctrl-C."""
    env = {**os.environ, "CHARTER_HOME": str(tmp_path / "h")}
    charter = [sys.executable, "-m", "charter"]
    subprocess.run([*charter, "init", "--owner", "me@example.com"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    proc = subprocess.Popen(
        [*charter, "console", "--no-browser", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"(http://127\.0\.0\.1:\d+)/login\?token=[A-Za-z0-9_-]{40,}", line)
        assert found, line
        base = found.group(1)
        assert httpx.get(base + "/").status_code == 401
        assert httpx.get(found.group(0), follow_redirects=False).status_code == 303
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert "Traceback" not in err, err


async def test_an_oversized_form_is_refused_before_it_is_read(home: Home) -> None:
    async with running_console(home, port=0) as console, httpx.AsyncClient() as web:
        await logged_in(web, console.login_url)
        csrf = csrf_of((await web.get(console.base + "/lockdown")).text)
        big = {"csrf": csrf, "confirm": "yes", "reason": "x" * 20_000}
        assert (await web.post(console.base + "/lockdown", data=big)).status_code == 413
    assert not (await lockdown.get_state(home)).active


def test_a_sealed_home_unlocks_when_the_console_starts_or_it_refuses_in_one_line(
    tmp_path: Path,
) -> None:
    """The owner key is unlocked at start (as `charter approve` does): no passphrase or a
    wrong one is one line and no console; the right one serves."""
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("correct horse battery staple\n")
    bad.write_text("wrong\n")
    home = {**os.environ, "CHARTER_HOME": str(tmp_path / "h")}
    home.pop("CHARTER_PASSPHRASE_FILE", None)
    charter = [sys.executable, "-m", "charter"]
    sealed = home | {"CHARTER_PASSPHRASE_FILE": str(good)}
    subprocess.run([*charter, "init", "--owner", "me@example.com"], check=True, env=sealed,
                   capture_output=True)  # fmt: skip
    console = [*charter, "console", "--no-browser", "--port", "0"]
    for env, expected in ((home, "locked"), (home | {"CHARTER_PASSPHRASE_FILE": str(bad)}, "")):
        done = subprocess.run(console, env=env, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)  # fmt: skip
        assert done.returncode != 0 and "http://" not in done.stdout
        assert expected in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    proc = subprocess.Popen(console, env=sealed,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "/login?token=" in proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)


async def test_the_overview_shows_sub_agents_under_their_parent(home: Home) -> None:
    from mcp import Client

    from charter.testing import server_for

    await identity.add_agent(home, "planner", scopes=["agent:delegate", "audit:read"])
    await identity.add_agent(home, "zeta", scopes=["audit:read"])
    async with Client(await server_for(home, "planner")) as client:
        made = await client.call_tool("agent_delegate", {"name": "worker", "scopes": []})
    assert not made.is_error, made.content
    async with running_console(home, port=0) as console, httpx.AsyncClient() as web:
        await logged_in(web, console.login_url)
        html = (await web.get(f"{console.base}/")).text
    order = re.findall(r'<li class="agent depth-(\d)" id="agent-([a-z]+)"', html)
    # Tree order: the owner's agents by name, each sub-agent right under its parent.
    assert order == [("1", "clerk"), ("1", "planner"), ("2", "worker"), ("1", "zeta")]
    assert "sub-agent of planner" in html
