"""``charter agent add|update|show|revoke``: what a new user found (issue 27.3, 27.4, 27.6,
27.8), driven through click's runner against real homes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from charter.cli import cli
from charter.config import Settings
from charter.errors import TokenInvalid
from charter.evidence.entries import Entry
from charter.home import Home
from charter.testing import raw_tx
from charter.tools import audit, tokens

API = "https://api.example.com"


def run(home: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, [*args], env={"CHARTER_HOME": str(home)}, input=input)


def ok(home: Path, *args: str, input: str | None = None) -> Result:
    result = run(home, *args, input=input)
    assert result.exit_code == 0, result.output
    return result


async def ledger(home: Path) -> list[dict[str, Any]]:
    async with await Home.open(Settings(home=home)) as h:
        await audit.verify_home(h)
        return [Entry.from_body(b).fields for b in raw_tx(h).ledger.iter_bodies()]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    ok(path, "init", "--owner", "alice@example.com")
    return path


def add_bot(home: Path, *extra: str) -> Result:
    return ok(home, "agent", "add", "bot", "--scope", "audit:read", "--scope", "token:issue",
              "--audience", API, *extra)  # fmt: skip


# -- 27.3: an update says the old charter's tokens stop working ------------------------------


async def test_update_says_how_many_live_tokens_stop_working(home: Path) -> None:
    add_bot(home)
    issued = [
        ok(home, "token", "issue", "--agent", "bot", "--audience", API).stdout.strip()
        for _ in range(2)
    ]
    jti = json.loads(ok(home, "token", "issue", "--agent", "bot", "--audience", API,
                        "--json").stdout)["jti"]  # fmt: skip
    ok(home, "token", "revoke", jti)  # a revoked token is not counted
    updated = ok(home, "agent", "update", "bot", "--scope", "audit:read", "--scope", "token:issue")
    assert "Tokens issued under the old charter stop working now" in updated.stdout
    assert "(2 live tokens affected)" in updated.stdout
    async with await Home.open(Settings(home=home)) as h:  # and they do stop working
        for token in issued:
            with pytest.raises(TokenInvalid) as refused:
                await tokens.verify(h, token, audience=API)
            assert "has a new charter" in refused.value.reason
    again = ok(home, "agent", "update", "bot", "--valid-for", "10d", "--json")
    assert json.loads(again.stdout)["old_charter_live_tokens"] == 0


# -- 27.4: settings that cannot take effect are refused or warned -----------------------------


@pytest.mark.parametrize("command", ["add", "update"])
async def test_an_approval_rule_for_an_ungranted_scope_is_refused(home: Path, command: str) -> None:
    if command == "update":
        add_bot(home)
    before = len(await ledger(home))
    result = run(home, "agent", command, "bot", "--scope", "audit:read", "--approve", "email:send")
    assert result.exit_code == 2, result.output
    assert "approval rule 'email:send' can never apply" in result.output
    assert "Traceback" not in result.output
    assert len(await ledger(home)) == before  # nothing signed, the ledger still verifies
    granted = ok(home, "agent", command, "bot", "--scope", "email:send:*@example.com",
                 "--approve", "email:send=owner", "--json")  # fmt: skip
    assert json.loads(granted.stdout)["policy"]["approvals"] == [
        {"pattern": "email:send", "mode": "owner"}
    ]


def test_a_kept_rule_that_no_longer_applies_is_warned(home: Path) -> None:
    add_bot(home, "--approve", "token:issue=owner")
    result = ok(home, "agent", "update", "bot", "--scope", "audit:read")
    assert "warning: approval rule 'token:issue' no longer applies" in result.stderr


@pytest.mark.parametrize(
    "audience",
    ["api.example.com", "/mcp", "ftp://files.example.com", "https://", "https:///path", "urn:x"],
)
@pytest.mark.parametrize("command", ["add", "update"])
async def test_an_audience_that_is_not_an_absolute_url_is_refused(
    home: Path, command: str, audience: str
) -> None:
    if command == "update":
        add_bot(home)
    before = len(await ledger(home))
    result = run(home, "agent", command, "bot", "--scope", "audit:read", "--audience", audience)
    assert result.exit_code == 2, result.output
    assert f"invalid audience {audience!r}" in result.output
    assert len(await ledger(home)) == before


@pytest.mark.parametrize("command", ["add", "update"])
def test_a_literal_secret_scope_for_a_missing_secret_is_warned(home: Path, command: str) -> None:
    if command == "update":
        add_bot(home)
    ok(home, "secret", "set", "THERE", "--allow-host", "api.example.com", input="v1")
    result = ok(home, "agent", command, "bot", "--scope", "secret:use:MISSING",
                "--scope", "secret:read:GONE", "--scope", "secret:use:THERE",
                "--scope", "secret:use:API_*")  # fmt: skip
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, result.stderr
    assert "secret:use:MISSING grants nothing yet: there is no secret 'MISSING'" in warnings[0]
    assert "secret:read:GONE grants nothing yet" in warnings[1]
    as_json = run(home, "agent", "update", "bot", "--scope", "secret:use:MISSING", "--json")
    assert json.loads(as_json.stdout)["warnings"] == [
        "secret:use:MISSING grants nothing yet: there is no secret 'MISSING' "
        "(add it with `charter secret set MISSING`)"
    ]


# -- 27.6 / 27.8: revoke and show --------------------------------------------------------------


def test_revoking_a_missing_agent_fails_before_asking(home: Path) -> None:
    result = run(home, "agent", "revoke", "nobody", input="y\n")
    assert result.exit_code == 3, result.output
    assert "no agent named 'nobody'" in result.output
    assert "Revoke agent" not in result.output  # never asked
    add_bot(home)
    ok(home, "agent", "revoke", "bot", "--yes")
    again = run(home, "agent", "revoke", "bot", input="y\n")
    assert again.exit_code == 2 and "already revoked" in again.output
    assert "Revoke agent" not in again.output


def test_show_prints_the_policy_readably(home: Path) -> None:
    add_bot(home, "--approve", "token:issue=owner", "--email", "bot@example.com",
            "--email-rate", "20")  # fmt: skip
    shown = ok(home, "agent", "show", "bot").stdout
    assert "  approvals: token:issue (owner)\n" in shown
    assert "  email:     address=bot@example.com, rate_per_hour=20\n" in shown
    assert "{" not in shown and "'" not in shown  # not a Python dict
