"""Shared by the console tests: an agent call parked for the owner's approval, a test tool
that needs ``email:send:<to>``, and the headless Chromium the browser tests drive."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from mcp import Client
from mcp.types import ToolAnnotations

from charter.home import Home
from charter.server.app import CharterServer
from charter.server.calls import current_call
from charter.testing import server_for
from charter.tools import approvals

SIDE_EFFECT = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True)
CHROMIUM = "/usr/bin/chromium"
#: Screenshots of every page the browser tests visit (gitignored).
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "console"


async def mail_server(home: Home, acted: list[str], agent: str = "clerk") -> CharterServer:
    """``agent``'s in-process server plus ``test_mail`` (needs email:send:<to>)."""
    server = await server_for(home, agent)

    @server.charter_tool("test_mail", annotations=SIDE_EFFECT, visible_args=("to",))
    async def test_mail(to: str, body: str) -> dict[str, str]:
        """Mail ``to``."""
        call = current_call()
        call.require(f"email:send:{to}")
        await call.intent()
        acted.append(to)
        return {"sent": to}

    return server


async def pending_owner_call(home: Home, to: str = "bob@example.com") -> str:
    """Have ``clerk`` call ``test_mail`` once (parked for the owner); the approval id."""
    acted: list[str] = []
    async with Client(await mail_server(home, acted), mode="legacy") as client:
        result = await client.call_tool("test_mail", {"to": to, "body": "hi"})
    assert result.is_error and not acted
    (pending,) = [a for a in await approvals.list_pending(home) if a.status == "pending"][-1:]
    return pending.id


def chromium_path() -> str:
    """Debian's chromium; fail when CI is set, else skip, when it is missing."""
    if shutil.which(CHROMIUM) is None:
        message = f"{CHROMIUM} is not installed (apt-get install -y chromium; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI is set, so the browser tests must not be skipped")
        pytest.skip(message)
    return CHROMIUM
