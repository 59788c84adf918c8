"""``charter agent --approve``, ``approvals``, ``approve``, ``deny``, ``lockdown`` and
``agent reinstate``, driven through click's runner against real homes and a real MCP client."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from mcp import Client
from mcp.types import ToolAnnotations

from charter.config import Settings
from charter.errors import AgentRevoked
from charter.home import Home
from charter.server.calls import current_call
from charter.testing import raw_tx, server_for
from charter.tools import audit

SIDE_EFFECT = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True)


def run(home: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli_(), [*args], env={"CHARTER_HOME": str(home)}, input=input)


def cli_() -> Any:
    from charter.cli import cli

    return cli


def ok(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.output) if result.output.lstrip().startswith(("{", "[")) else None


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    ok(run(path, "init", "--owner", "alice@example.com"))
    ok(
        run(
            path,
            "agent",
            "add",
            "bot",
            "--scope",
            "email:send",
            "--scope",
            "token:issue",
            "--approve",
            "email:send=owner",
            "--json",
        )
    )
    return path


async def ask(path: Path, to: str, agent: str = "bot", passphrase_file: Path | None = None) -> str:
    """Make ``agent`` call a test tool needing email:send:<to>; return the agent's message
    (``passphrase_file``: a sealed home's server unlocks its keys with it)."""
    async with await Home.open(Settings(home=path, passphrase_file=passphrase_file)) as h:
        server = await server_for(h, agent)

        @server.charter_tool("test_mail", annotations=SIDE_EFFECT, visible_args=("to",))
        async def test_mail(to: str) -> dict[str, str]:
            """Mail ``to``."""
            current_call().require(f"email:send:{to}")
            await current_call().intent()
            return {"sent": to}

        async with Client(server) as client:
            result = await client.call_tool("test_mail", {"to": to})
    text = str(result.content[0].text)  # type: ignore[union-attr]
    return ("ERROR: " if result.is_error else "") + text


def approval_id(message: str) -> str:
    match = re.search(r"apr-[0-9a-f]{16}", message)
    assert match, message
    return match.group(0)


async def verify(path: Path) -> None:
    async with await Home.open(Settings(home=path)) as h:
        await audit.verify_home(h)


async def test_approve_option_writes_the_policy_into_the_signed_charter(tmp_path: Path) -> None:
    path = tmp_path / "home"
    ok(run(path, "init", "--owner", "alice@example.com"))
    info = ok(
        run(
            path,
            "agent",
            "add",
            "bot",
            "--scope",
            "email:send",
            "--scope",
            "secret:read:*",
            "--scope",
            "token:issue",
            "--approve",
            "email:send",
            "--approve",
            "secret:read:*=owner",
            "--json",
        )
    )
    assert info["policy"] == {
        "approvals": [
            {"pattern": "email:send", "mode": "client"},
            {"pattern": "secret:read:*", "mode": "owner"},
        ]
    }
    updated = ok(run(path, "agent", "update", "bot", "--approve", "token:issue=owner", "--json"))
    assert updated["policy"] == {"approvals": [{"pattern": "token:issue", "mode": "owner"}]}
    assert updated["charter_hash"] != info["charter_hash"]
    kept = ok(run(path, "agent", "update", "bot", "--valid-for", "10d", "--json"))
    assert kept["policy"] == updated["policy"]
    cleared = ok(run(path, "agent", "update", "bot", "--no-approvals", "--json"))
    assert cleared["policy"] == {}
    for bad, says in (
        ("email:send=always", "invalid approval mode"),
        ("root:*", "invalid approval pattern"),
        ("=owner", "invalid approval"),
    ):
        refused = run(path, "agent", "update", "bot", "--approve", bad)
        assert refused.exit_code != 0 and says in refused.output
    await verify(path)


async def test_owner_approval_through_the_cli(home: Path) -> None:
    first = await ask(home, "bob@example.com")
    assert first.startswith("ERROR: approval pending")
    pending_id = approval_id(first)
    listed = ok(run(home, "approvals", "--json"))
    assert [a["id"] for a in listed] == [pending_id]
    assert listed[0]["scopes"] == ["email:send:bob@example.com"]
    shown = run(home, "approvals")
    assert pending_id in shown.output and '"bob@example.com"' in shown.output
    assert f"charter approve {pending_id}" in shown.output

    # Declining the confirmation changes nothing.
    aborted = run(home, "approve", pending_id, input="n\n")
    assert aborted.exit_code != 0 and "Approve this exact call?" in aborted.output
    assert len(ok(run(home, "approvals", "--json"))) == 1

    decided = ok(run(home, "approve", pending_id, "--yes", "--valid-for", "30m", "--json"))
    assert decided["status"] == "approved"
    assert ok(run(home, "approvals", "--json")) == []
    again = run(home, "approve", pending_id, "--yes")
    assert again.exit_code != 0 and "already approved" in again.output

    assert await ask(home, "bob@example.com") == '{\n  "sent": "bob@example.com"\n}'
    replay = await ask(home, "bob@example.com")
    assert replay.startswith("ERROR: approval pending") and "already used" in replay
    await verify(home)


async def test_deny_and_unknown_ids(home: Path) -> None:
    pending_id = approval_id(await ask(home, "eve@example.com"))
    denied = ok(run(home, "deny", pending_id, "--reason", "not eve", "--json"))
    assert denied["status"] == "denied" and denied["reason"] == "not eve"
    refused = await ask(home, "eve@example.com")
    assert refused.startswith("ERROR: the owner denied")
    late = run(home, "approve", pending_id, "--yes")
    assert late.exit_code != 0 and "already denied" in late.output
    unknown = run(home, "approve", "apr-0000000000000000", "--yes")
    assert unknown.exit_code == 3 and "no approval" in unknown.output
    await verify(home)


async def test_approve_needs_the_owner_key(tmp_path: Path) -> None:
    path = tmp_path / "home"
    secret, wrong = tmp_path / "pass", tmp_path / "wrong"
    secret.write_text("correct horse\n")
    wrong.write_text("battery staple\n")
    ok(run(path, "init", "--owner", "alice@example.com", "--passphrase-file", str(secret)))
    ok(
        run(
            path,
            "agent",
            "add",
            "bot",
            "--scope",
            "email:send",
            "--approve",
            "email:send=owner",
            "--passphrase-file",
            str(secret),
        )
    )
    pending_id = approval_id(await ask(path, "bob@example.com", passphrase_file=secret))
    async with await Home.open(Settings(home=path)) as h:
        size = raw_tx(h).ledger.head()[0]
    bad = run(path, "approve", pending_id, "--yes", "--passphrase-file", str(wrong))
    assert bad.exit_code != 0 and "wrong passphrase" in bad.output
    async with await Home.open(Settings(home=path)) as h:
        assert raw_tx(h).ledger.head()[0] == size  # nothing signed
    assert ok(run(path, "approvals", "--json"))[0]["status"] == "pending"
    ok(run(path, "approve", pending_id, "--yes", "--passphrase-file", str(secret)))
    await verify(path)


async def test_lockdown_lift_and_reinstate(home: Path) -> None:
    ok(run(home, "agent", "add", "other", "--scope", "email:send"))
    ok(run(home, "agent", "add", "fired", "--scope", "email:send"))
    ok(run(home, "agent", "revoke", "fired", "--yes"))
    pending_id = approval_id(await ask(home, "bob@example.com"))

    state = ok(run(home, "lockdown", "--reason", "laptop stolen", "--json"))
    assert state["active"] and state["agents"] == ["bot", "other"]
    agents = ok(run(home, "agent", "list", "--json"))
    assert {a["name"]: a["status"] for a in agents} == {
        "bot": "revoked",
        "fired": "revoked",
        "other": "revoked",
    }
    assert "lockdown: laptop stolen" in run(home, "agent", "show", "bot").output
    assert ok(run(home, "approvals", "--json")) == []  # open requests are cancelled
    cancelled = run(home, "approve", pending_id, "--yes")
    assert cancelled.exit_code != 0 and "cancelled" in cancelled.output
    assert "LOCKED DOWN" in run(home, "lockdown", "--status").output
    assert ok(run(home, "lockdown", "--json"))["active"]  # idempotent

    for refused in (
        run(home, "agent", "add", "new", "--scope", "email:send"),
        run(home, "agent", "reinstate", "bot"),
    ):
        assert refused.exit_code != 0 and "locked down" in refused.output
    with pytest.raises(AgentRevoked):  # a revoked agent cannot even be served
        await ask(home, "bob@example.com", agent="other")

    lifted = ok(run(home, "lockdown", "--lift", "--json"))
    assert not lifted["active"] and lifted["awaiting_reinstatement"] == ["bot", "other"]
    assert ok(run(home, "agent", "show", "bot", "--json"))["status"] == "revoked"
    again = run(home, "lockdown", "--lift")
    assert again.exit_code != 0 and "not locked down" in again.output

    back = ok(run(home, "agent", "reinstate", "bot", "--json"))
    assert back["status"] == "active" and back["policy"]["approvals"]
    assert (await ask(home, "bob@example.com")).startswith("ERROR: approval pending")
    final = run(home, "agent", "reinstate", "fired")
    assert final.exit_code != 0 and "not revoked by a lockdown" in final.output
    twice = run(home, "agent", "reinstate", "bot")
    assert twice.exit_code != 0
    assert ok(run(home, "lockdown", "--status", "--json"))["awaiting_reinstatement"] == ["other"]
    verified = ok(run(home, "audit", "verify", "--json"))
    assert verified["revoked"] == 2  # fired (final) and other (awaiting reinstatement)


async def ledger_size(path: Path) -> int:
    async with await Home.open(Settings(home=path)) as h:
        await audit.verify_home(h)
        return sum(1 for _ in raw_tx(h).ledger.iter_bodies())


async def test_a_second_lockdown_says_it_is_in_force_and_changes_nothing(home: Path) -> None:
    first = run(home, "lockdown", "--reason", "laptop stolen")
    assert first.exit_code == 0 and "LOCKED DOWN since" in first.output
    size = await ledger_size(home)
    second = run(home, "lockdown", "--reason", "again")
    assert second.exit_code == 0, second.output
    since = ok(run(home, "lockdown", "--status", "--json"))["since"]
    assert f"Already locked down since {since} (reason: laptop stolen); nothing changed." in (
        second.output
    )
    as_json = ok(run(home, "lockdown", "--json"))
    assert as_json["already_in_force"] is True and as_json["reason"] == "laptop stolen"
    assert await ledger_size(home) == size  # no new entry


def test_lift_says_what_it_lifted(home: Path) -> None:
    ok(run(home, "agent", "add", "other", "--scope", "email:send"))
    ok(run(home, "lockdown", "--reason", "laptop stolen"))
    since = ok(run(home, "lockdown", "--status", "--json"))["since"]
    lifted = run(home, "lockdown", "--lift")
    assert lifted.exit_code == 0, lifted.output
    assert lifted.output.splitlines() == [
        f"Lifted the lockdown in force since {since} (reason: laptop stolen).",
        "  it had revoked: bot, other",
        "  still revoked until you reinstate them: bot, other",
        "  reinstate each with `charter agent reinstate NAME`",
    ]
