"""The owner's side of sub-agents (issue 21): `charter agent list` as a tree, revoking any
descendant, no owner update of a parent-signed charter, `charter audit verify` over the chain."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from mcp import Client

from charter.cli import cli
from charter.config import Settings
from charter.home import Home
from charter.testing import server_for


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args], env={"CHARTER_HOME": str(home), "COLUMNS": "200"})


def ok(home: Path, *args: str) -> Result:
    result = run(home, *args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    ok(path, "init", "--owner", "alice@example.com")
    ok(path, "agent", "add", "planner", "--scope", "agent:delegate", "--scope", "audit:read",
       "--delegation-depth", "2")  # fmt: skip
    return path


async def _delegate(home: Path, parent: str, name: str) -> None:
    args = {"name": name, "scopes": ["agent:delegate", "audit:read"]}
    async with await Home.open(Settings(home=home)) as h, Client(await server_for(h, parent)) as c:
        result = await c.call_tool("agent_delegate", args)
    assert not result.is_error, result.content


async def test_the_owner_sees_a_tree_and_can_revoke_any_descendant(home: Path) -> None:
    await _delegate(home, "planner", "worker")
    await _delegate(home, "worker", "helper")  # depth 2, as the owner allowed
    ok(home, "agent", "add", "zeta", "--scope", "audit:read")
    lines = ok(home, "agent", "list").stdout.splitlines()
    rows = [line for line in lines if "spiffe://" in line]
    names = [r.split("│")[1][1:].rstrip() for r in rows]
    assert names == ["planner", "└─ worker", "  └─ helper", "zeta"], lines
    shown = ok(home, "agent", "show", "helper").stdout
    assert "parent:    worker" in shown
    refused = run(home, "agent", "update", "worker", "--valid-for", "1d")
    assert refused.exit_code != 0 and "is a sub-agent" in refused.output
    assert "Traceback" not in refused.output
    ok(home, "agent", "revoke", "helper", "--yes")
    ok(home, "audit", "verify")
    ok(home, "agent", "revoke", "planner", "--yes")  # stops worker at its next call, too
    async with await Home.open(Settings(home=home)) as h:
        with pytest.raises(Exception, match="ancestor 'planner' was revoked"):
            await server_for(h, "worker")
    ok(home, "audit", "verify")


def test_a_depth_without_the_scope_is_warned_about(home: Path) -> None:
    out = run(home, "agent", "add", "solo", "--scope", "audit:read", "--delegation-depth", "2")
    assert out.exit_code == 0
    assert "--delegation-depth has no effect" in out.output
