"""Organizations (issue 28): `charter init --org`, `charter owner keygen|add|list|remove`, and
owner actions that are that owner's, driven through click's runner against real homes."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from mcp import Client
from mcp.types import TextContent, ToolAnnotations

from charter.cli import cli
from charter.config import Settings
from charter.evidence.entries import Entry
from charter.evidence.jwk import public_key_from_jwk, thumbprint
from charter.home import Home
from charter.server.calls import current_call
from charter.testing import raw_tx, server_for
from charter.tools import audit

A, B = "alice@example.com", "bob@example.com"
SIDE_EFFECT = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True)


async def call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return dict(result.structured_content)


async def fail(client: Client, tool: str, args: dict[str, Any]) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, result.structured_content
    first = result.content[0]
    assert isinstance(first, TextContent)
    assert "Traceback" not in first.text
    return first.text


def run(home: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, [*args], env={"CHARTER_HOME": str(home)}, input=input)


def ok(home: Path, *args: str) -> Result:
    result = run(home, *args)
    assert result.exit_code == 0, result.output
    return result


async def entries(home: Path) -> list[dict[str, Any]]:
    async with await Home.open(Settings(home=home)) as h:
        return [Entry.from_body(b).fields for b in raw_tx(h).ledger.iter_bodies()]


@pytest.fixture
def org(tmp_path: Path) -> tuple[Path, Path]:
    """An organization home (first owner alice, default key in the home) and bob's key file,
    made on "his machine" and certified by the administrator."""
    home = tmp_path / "home"
    ok(home, "init", "--org", "acme", "--owner", A)
    bob_key = tmp_path / "bob" / "owner.key"
    bob_key.parent.mkdir()
    printed = ok(home, "owner", "keygen", "--out", str(bob_key)).stdout
    jwk = json.loads(printed)
    ok(home, "owner", "add", B, "--public-key", printed.strip())
    assert jwk["kid"] == thumbprint(public_key_from_jwk(jwk)) and "d" not in jwk
    return home, bob_key


async def test_two_owners_add_agents_both_serve_ledger_verifies_from_org_key(
    org: tuple[Path, Path],
) -> None:
    home, bob_key = org
    ok(home, "agent", "add", "alpha", "--scope", "audit:read")  # alice, the default owner
    ok(home, "agent", "add", "beta", "--scope", "audit:read", "--owner-key", str(bob_key))
    listed = json.loads(ok(home, "owner", "list", "--json").stdout)
    assert [(o["owner"], o["status"]) for o in listed] == [(A, "active"), (B, "active")]
    async with await Home.open(Settings(home=home)) as h:
        assert h.organization == "acme" and h.owner_id == "acme"
        alpha = await _show(h, "alpha")
        beta = await _show(h, "beta")
        assert (alpha["owner"], beta["owner"]) == (A, B)
        assert "/agent/alice/alpha" in alpha["agent_id"] and "/agent/bob/beta" in beta["agent_id"]
        for name in ("alpha", "beta"):
            async with Client(await server_for(h, name)) as client:
                me = await call(client, "identity_whoami", {})
                assert me["name"] == name
        org_kid = thumbprint(h.owner_public_key)
    # The auditor pins the organization key alone: owners and charters follow from it.
    out = home.parent / "export"
    ok(home, "audit", "export", str(out))
    ok(home, "audit", "verify", "--export", str(out), "--org-key", org_kid)
    wrong = run(home, "audit", "verify", "--export", str(out), "--org-key", "x" * 43)
    assert wrong.exit_code != 0
    ledger = await entries(home)
    register = {e["args"]["agent"]: e for e in ledger if e["action"] == "agent.register"}
    assert register["alpha"]["actor"] == A and register["beta"]["actor"] == B
    assert register["beta"]["kid"] == json.loads(bob_key.read_text())["kid"]


async def _show(h: Home, name: str) -> dict[str, Any]:
    from charter.tools import identity

    return (await identity.get_agent(h, name)).model_dump()


async def test_another_owners_revoke_is_refused_and_recorded_the_org_keys_is_accepted(
    org: tuple[Path, Path],
) -> None:
    home, bob_key = org
    ok(home, "agent", "add", "alpha", "--scope", "audit:read")  # alice's
    refused = run(home, "agent", "revoke", "alpha", "--yes", "--owner-key", str(bob_key))
    assert refused.exit_code == 4, refused.output
    assert "another owner" in refused.output and "Traceback" not in refused.output
    for verb in (["agent", "update", "alpha", "--scope", "audit:read"],):
        denied = run(home, *verb, "--owner-key", str(bob_key))
        assert denied.exit_code == 4, denied.output
    ledger = await entries(home)
    refusals = [e for e in ledger if e["action"] == "owner.refusal"]
    assert [(e["actor"], e["args"]["attempted"], e["outcome"]) for e in refusals] == [
        (B, "agent.revoke", "denied"),
        (B, "agent.update", "denied"),
    ]
    assert not [e for e in ledger if e["action"] == "agent.revoke"]
    ok(home, "agent", "revoke", "alpha", "--yes", "--as-org", "--reason", "offboarding")
    revoke = [e for e in await entries(home) if e["action"] == "agent.revoke"]
    assert [(e["actor"], e["args"]["agent"]) for e in revoke] == [("acme", "alpha")]
    async with await Home.open(Settings(home=home)) as h:
        await audit.verify_home(h)


async def test_owner_remove_stops_that_owners_agents_at_their_next_call(
    org: tuple[Path, Path],
) -> None:
    home, bob_key = org
    ok(home, "agent", "add", "alpha", "--scope", "audit:read")
    ok(home, "agent", "add", "beta", "--scope", "audit:read", "--owner-key", str(bob_key))
    async with await Home.open(Settings(home=home)) as h:
        async with (
            Client(await server_for(h, "alpha")) as a_client,
            Client(await server_for(h, "beta")) as b_client,
        ):
            await call(a_client, "identity_whoami", {})
            await call(b_client, "identity_whoami", {})
            # The administrator removes bob while both servers are running.
            removed = run(home, "owner", "remove", B, "--yes", "--json")
            assert removed.exit_code == 0, removed.output
            assert json.loads(removed.stdout)["agents_revoked"] == ["beta"]
            message = await fail(b_client, "identity_whoami", {})
            assert "revoked" in message
            await call(a_client, "identity_whoami", {})  # alice's agent is untouched
        await audit.verify_home(h)
    # Bob's key can no longer act: it is no current owner's.
    again = run(home, "agent", "add", "gamma", "--scope", "audit:read", "--owner-key", str(bob_key))
    assert again.exit_code == 4 and "not a current owner" in again.output


def test_owner_commands_in_a_single_owner_home_say_so(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ok(home, "init", "--owner", A)
    key = tmp_path / "k.key"
    printed = ok(home, "owner", "keygen", "--out", str(key)).stdout
    added = run(home, "owner", "add", B, "--public-key", printed.strip())
    assert added.exit_code == 2 and "no organization" in added.output


async def _ask(home: Path, agent: str, to: str) -> str:
    """``agent`` calls a test tool whose scope needs the owner's approval; its message."""
    async with await Home.open(Settings(home=home)) as h:
        server = await server_for(h, agent)

        @server.charter_tool("test_mail", annotations=SIDE_EFFECT, visible_args=("to",))
        async def test_mail(to: str) -> dict[str, str]:
            """Mail ``to``."""
            current_call().require(f"email:send:{to}")
            await current_call().intent()
            return {"sent": to}

        async with Client(server) as client:
            result = await client.call_tool("test_mail", {"to": to})
    first = result.content[0]
    assert isinstance(first, TextContent)
    return ("ERROR: " if result.is_error else "") + first.text


async def test_approvals_go_to_the_agents_owner_and_only_they_decide(
    org: tuple[Path, Path],
) -> None:
    home, bob_key = org
    ok(home, "agent", "add", "alpha", "--scope", "email:send", "--approve", "email:send=owner")
    asked = await _ask(home, "alpha", "x@example.com")
    assert asked.startswith("ERROR: approval pending"), asked
    match = re.search(r"apr-[0-9a-f]{16}", asked)
    assert match is not None
    apr = match.group(0)
    mine = json.loads(ok(home, "approvals", "--json").stdout)  # alice, the default owner
    assert [a["id"] for a in mine] == [apr]
    bobs = json.loads(ok(home, "approvals", "--json", "--owner-key", str(bob_key)).stdout)
    assert bobs == []
    refused = run(home, "approve", apr, "--yes", "--owner-key", str(bob_key))
    assert refused.exit_code == 4 and "another owner" in refused.output
    assert run(home, "deny", apr, "--owner-key", str(bob_key)).exit_code == 4
    ok(home, "approve", apr, "--yes")
    assert json.loads(await _ask(home, "alpha", "x@example.com")) == {"sent": "x@example.com"}
    ledger = await entries(home)
    approve = [e for e in ledger if e["action"] == "approval.approve"]
    assert [(e["actor"], e["owner"]) for e in approve] == [(A, A)]
    async with await Home.open(Settings(home=home)) as h:
        await audit.verify_home(h)


async def test_whoami_shows_organization_owner_agent(org: tuple[Path, Path]) -> None:
    home, bob_key = org
    api = "https://api.example.com"
    ok(home, "agent", "add", "beta", "--scope", "token:issue", "--audience", api,
       "--owner-key", str(bob_key))  # fmt: skip
    async with (
        await Home.open(Settings(home=home)) as h,
        Client(await server_for(h, "beta")) as client,
    ):
        me = await call(client, "identity_whoami", {})
    assert (me["organization"], me["owner"], me["name"]) == ("acme", B, "beta")
    token = ok(home, "token", "issue", "--agent", "beta", "--audience", api).stdout.strip()
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert (claims["owner"], claims["sub"]) == (B, me["agent_id"])  # tokens carry the owner


async def test_after_an_organization_lockdown_each_owner_reinstates_only_their_own(
    org: tuple[Path, Path],
) -> None:
    home, bob_key = org
    ok(home, "agent", "add", "alpha", "--scope", "audit:read")
    ok(home, "agent", "add", "beta", "--scope", "audit:read", "--owner-key", str(bob_key))
    ok(home, "lockdown", "--reason", "incident")  # the organization key's kill switch
    ok(home, "lockdown", "--lift")
    stolen = run(home, "agent", "reinstate", "alpha", "--owner-key", str(bob_key))
    assert stolen.exit_code == 4 and "another owner" in stolen.output
    ok(home, "agent", "reinstate", "beta", "--owner-key", str(bob_key))
    ok(home, "agent", "reinstate", "alpha")
    ledger = await entries(home)
    reinstated = [
        (e["actor"], e["args"]["agent"]) for e in ledger if e["action"] == "agent.reinstate"
    ]
    assert reinstated == [(B, "beta"), (A, "alpha")]
    async with await Home.open(Settings(home=home)) as h:
        await audit.verify_home(h)


async def test_an_organization_on_postgresql(tmp_path: Path, pg_database: str) -> None:
    """The same flow with the ledger and the owners in PostgreSQL (migration 0014 there)."""
    home = tmp_path / "home"
    ok(home, "init", "--org", "acme", "--owner", A, "--database", pg_database)
    bob_key = tmp_path / "bob.key"
    printed = ok(home, "owner", "keygen", "--out", str(bob_key)).stdout.strip()
    ok(home, "owner", "add", B, "--public-key", printed)
    ok(home, "agent", "add", "alpha", "--scope", "audit:read")
    ok(home, "agent", "add", "beta", "--scope", "audit:read", "--owner-key", str(bob_key))
    refused = run(home, "agent", "revoke", "alpha", "--yes", "--owner-key", str(bob_key))
    assert refused.exit_code == 4, refused.output
    removed = json.loads(ok(home, "owner", "remove", B, "--yes", "--json").stdout)
    assert removed["agents_revoked"] == ["beta"]
    ok(home, "audit", "verify")
    async with await Home.open(Settings(home=home, database_url=pg_database)) as h:
        assert not (home / "charter.db").exists()  # really PostgreSQL
        agents = {a.name: a.status for a in await _agents(h)}
    assert agents == {"alpha": "active", "beta": "revoked"}


async def _agents(h: Home) -> list[Any]:
    from charter.tools import identity

    return await identity.list_agents(h)


def test_bad_owner_input_gets_one_clear_line(org: tuple[Path, Path]) -> None:
    home, bob_key = org
    printed = bob_key.read_text()  # the private key file's JSON, given inline
    cases = [
        (["owner", "keygen", "--out", str(bob_key)], "already exists"),
        (["owner", "add", "carol@example.com", "--public-key", str(bob_key)], "private key"),
        (["owner", "add", "carol@example.com", "--public-key", printed], "private key"),
        (["owner", "add", "carol@example.com", "--public-key", "{nope"], "not a JSON Web Key"),
        (["owner", "add", "not-an-email", "--public-key", str(bob_key) + ".missing"], "cannot"),
        (["owner", "remove", "nobody@example.com", "--yes"], "not a current owner"),
        (["agent", "add", "x", "--scope", "audit:read", "--as-org"], "No such option"),
        (["agent", "revoke", "ghost", "--yes", "--as-org"], "no agent named"),
    ]
    for args, says in cases:
        result = run(home, *args)
        assert result.exit_code != 0, args
        assert says in result.output, (args, result.output)
        assert "Traceback" not in result.output
    keygen_public = ok(home, "owner", "keygen", "--out", str(home.parent / "c.key")).stdout
    not_email = run(home, "owner", "add", "carol", "--public-key", keygen_public.strip())
    assert not_email.exit_code == 2 and "must be an email address" in not_email.output
    twice = run(home, "owner", "add", B, "--public-key", keygen_public.strip())
    assert twice.exit_code == 2 and "already an owner" in twice.output
    alice = json.loads(ok(home, "owner", "list", "--json").stdout)[0]
    same_key = json.dumps({"kty": "OKP", "crv": "Ed25519", "x": alice["public_key"]["x"]})
    reused = run(home, "owner", "add", "carol@example.com", "--public-key", same_key)
    assert reused.exit_code == 2 and "already belongs to an owner" in reused.output
