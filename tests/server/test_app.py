"""End-to-end tool calls through a real in-process MCP client, in both protocol modes."""

from __future__ import annotations

from typing import Any

from mcp import Client

from charter.evidence.entries import Entry
from charter.home import Home
from charter.testing import FrozenClock, raw_tx, server_for
from charter.tools import audit, identity


def entries(home: Home) -> list[dict[str, Any]]:
    return [Entry.from_body(b).fields for b in raw_tx(home).ledger.iter_bodies()]


async def test_whoami_returns_identity_and_is_signed_into_the_ledger(home: Home, mode: str) -> None:
    async with Client(await server_for(home, "alpha"), mode=mode) as client:
        result = await client.call_tool("identity_whoami", {})
    assert not result.is_error
    who = result.structured_content
    assert who is not None
    assert who["agent_id"] == "spiffe://charter.local/agent/owner/alpha"
    assert who["owner"] == "owner@example.com"
    assert who["scopes"] == ["audit:read"]
    last = entries(home)[-1]
    alpha = await identity.load_agent(home, "alpha")
    assert last["action"] == "identity.whoami"
    assert last["phase"] == "call" and last["outcome"] == "ok"
    assert last["actor"] == who["agent_id"]
    assert last["kid"] == alpha.key.kid
    assert last["charter"] == who["charter_hash"]
    await audit.verify_home(home)


async def test_missing_scope_is_refused_and_recorded_as_denied(home: Home, mode: str) -> None:
    async with Client(await server_for(home, "beta"), mode=mode) as client:
        result = await client.call_tool("audit_query", {})
    assert result.is_error
    assert "does not grant 'audit:read'" in result.content[0].text  # type: ignore[union-attr]
    last = entries(home)[-1]
    assert (last["action"], last["outcome"]) == ("audit.query", "denied")
    assert last["actor"].endswith("/beta")
    await audit.verify_home(home)


async def test_invalid_arguments_give_a_clear_error_and_a_denied_entry(
    home: Home, mode: str
) -> None:
    async with Client(await server_for(home, "alpha"), mode=mode) as client:
        result = await client.call_tool("audit_query", {"limit": 10_000, "outcome": "maybe"})
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert "invalid arguments for audit_query" in text
    assert "limit" in text and "outcome" in text
    assert "Traceback" not in text
    last = entries(home)[-1]
    assert last["outcome"] == "denied"
    assert last["args"]["limit"] == 10_000
    await audit.verify_home(home)


async def test_agent_sees_only_its_own_entries(home: Home, mode: str) -> None:
    async with Client(await server_for(home, "beta"), mode=mode) as client:
        await client.call_tool("identity_whoami", {})
    async with Client(await server_for(home, "alpha"), mode=mode) as client:
        await client.call_tool("identity_whoami", {})
        result = await client.call_tool("audit_query", {"limit": 200})
    page = result.structured_content
    assert page is not None
    actors = {e["actor"] for e in page["entries"]}
    assert actors == {"spiffe://charter.local/agent/owner/alpha"}


async def test_revoked_agent_is_refused_on_the_next_call(home: Home, mode: str) -> None:
    server = await server_for(home, "alpha")
    async with Client(server, mode=mode) as client:
        ok = await client.call_tool("identity_whoami", {})
        assert not ok.is_error
        await identity.revoke_agent(home, "alpha", reason="compromised")
        refused = await client.call_tool("identity_whoami", {})
    assert refused.is_error
    assert "revoked" in refused.content[0].text  # type: ignore[union-attr]
    last = entries(home)[-1]
    assert last["outcome"] == "denied"
    assert last["kid"] == home.log_key.kid  # the revoked key no longer signs anything
    await audit.verify_home(home)


async def test_audit_verify_tool_reports_a_valid_ledger(home: Home, mode: str) -> None:
    async with Client(await server_for(home, "alpha"), mode=mode) as client:
        result = await client.call_tool("audit_verify", {})
    out = result.structured_content
    assert out is not None and out["valid"] is True
    assert (
        out["size"] == raw_tx(home).ledger.head()[0] - 1
    )  # its own entry is written after it runs


async def test_a_replaced_charter_is_refused_on_the_next_call(home: Home, mode: str) -> None:
    """A running server applies a narrowed charter at once: the old one is refused."""
    async with Client(await server_for(home, "alpha"), mode=mode) as client:
        ok = await client.call_tool("audit_query", {"limit": 1})
        assert not ok.is_error
        await identity.update_agent(home, "alpha", scopes=[])  # audit:read withdrawn
        refused = await client.call_tool("audit_query", {"limit": 1})
    assert refused.is_error
    assert "charter was replaced" in refused.content[0].text  # type: ignore[union-attr]
    last = entries(home)[-1]
    assert (last["outcome"], last["kid"]) == ("denied", home.log_key.kid)
    await audit.verify_home(home)


async def test_an_expired_charter_is_refused(home: Home, mode: str, clock: FrozenClock) -> None:
    async with Client(await server_for(home, "alpha"), mode=mode) as client:
        ok = await client.call_tool("identity_whoami", {})
        assert not ok.is_error
        clock.advance(days=identity.DEFAULT_VALIDITY.days + 1)
        refused = await client.call_tool("identity_whoami", {})
    assert refused.is_error
    assert "expired" in refused.content[0].text  # type: ignore[union-attr]
    assert entries(home)[-1]["outcome"] == "denied"
    await audit.verify_home(home)  # the refusal itself keeps the ledger valid
