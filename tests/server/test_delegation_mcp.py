"""Sub-agents over MCP (issue 21): a parent with agent:delegate creates one, it acts as itself
under a charter the parent signed, and revoking the parent (or a lockdown) stops it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client

from charter.errors import AgentRevoked, ConfigError, LedgerIntegrityError
from charter.evidence.canonical import canonical_json
from charter.evidence.entries import Entry
from charter.evidence.verifier import verify_entries
from charter.home import Home
from charter.testing import FrozenClock, raw_db, raw_tx, server_for
from charter.tools import audit, identity, lockdown

PARENT_SCOPES = ["agent:delegate", "audit:read", "token:issue", "secret:use:API_*"]


def text(result: Any) -> str:
    return str(result.content[0].text)


def entries(home: Home) -> list[dict[str, Any]]:
    return [Entry.from_body(b).fields for b in raw_tx(home).ledger.iter_bodies()]


async def _parent(home: Home, **policy: Any) -> None:
    await identity.add_agent(
        home,
        "planner",
        scopes=PARENT_SCOPES,
        audiences=["https://api.example.com", "https://b.example.com"],
        policy=policy or None,
    )


async def _delegate(home: Home, parent: str = "planner", **args: Any) -> Any:
    call = {
        "name": "worker",
        "scopes": ["audit:read", "secret:use:API_1*"],
        "audiences": ["https://api.example.com"],
        "ttl_seconds": 600,
    } | args
    async with Client(await server_for(home, parent)) as client:
        return await client.call_tool("agent_delegate", call)


async def test_parent_creates_a_sub_agent_that_acts_as_itself(home: Home) -> None:
    await _parent(home)
    result = await _delegate(home)
    assert not result.is_error, result.content
    out = result.structured_content
    assert out["name"] == "worker" and out["parent"].endswith("/planner")
    assert out["scopes"] == ["audit:read", "secret:use:API_1*"]
    worker = await identity.load_agent(home, "worker")
    planner = await identity.load_agent(home, "planner")
    assert worker.charter.doc["type"] == "delegation"
    assert worker.charter.parent_id == planner.agent_id
    assert worker.key.kid != planner.key.kid
    # The sub-agent serves, signs with its own key, and its whoami shows the chain.
    async with Client(await server_for(home, "worker")) as client:
        who = (await client.call_tool("identity_whoami", {})).structured_content
    assert who["chain"] == ["owner@example.com", planner.agent_id, worker.agent_id]
    last = entries(home)[-1]
    assert (last["actor"], last["kid"]) == (worker.agent_id, worker.key.kid)
    info = await identity.get_agent(home, "worker")
    assert info.parent == "planner"
    await audit.verify_home(home)


async def test_a_wider_request_is_refused_and_recorded(home: Home) -> None:
    await _parent(home)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"scopes": ["secret:use:*"]}, "wider than the parent"),
        ({"scopes": ["email:send"]}, "wider than the parent"),
        ({"audiences": ["https://evil.example.com"]}, "not among the parent's audiences"),
    ]
    for args, why in cases:
        result = await _delegate(home, **args)
        assert result.is_error
        assert why in text(result)
        last = entries(home)[-1]
        assert (last["action"], last["outcome"]) == ("agent.delegate", "denied")
        assert "delegation refused" in last["reason"]
    assert not raw_tx(home).agents.exists("worker")
    await audit.verify_home(home)


async def test_without_the_scope_or_beyond_the_depth_nothing_is_delegated(home: Home) -> None:
    result = await _delegate(home, parent="alpha", scopes=[], audiences=[])
    assert result.is_error and "agent:delegate" in text(result)
    await _parent(home)  # depth limit 1 by default: a child may not delegate again
    assert not (await _delegate(home, scopes=["agent:delegate"])).is_error
    again = await _delegate(home, parent="worker", name="sub", scopes=[], audiences=[])
    assert again.is_error and "exceeds the owner's limit of 1" in text(again)
    await audit.verify_home(home)


async def test_revoking_the_parent_stops_the_child_at_its_next_call(home: Home) -> None:
    await _parent(home)
    assert not (await _delegate(home)).is_error
    server = await server_for(home, "worker")  # loaded while the parent is active
    async with Client(server) as client:
        assert not (await client.call_tool("identity_whoami", {})).is_error
        await identity.revoke_agent(home, "planner")
        refused = await client.call_tool("identity_whoami", {})
    assert refused.is_error and "ancestor 'planner' was revoked" in text(refused)
    last = entries(home)[-1]
    assert last["outcome"] == "denied"
    with pytest.raises(AgentRevoked):
        await identity.load_agent(home, "worker")
    await audit.verify_home(home)


async def test_a_lockdown_stops_the_chain_and_the_parent_revokes_its_own(home: Home) -> None:
    await _parent(home)
    assert not (await _delegate(home)).is_error
    async with Client(await server_for(home, "planner")) as client:
        result = await client.call_tool("agent_revoke_delegate", {"name": "worker"})
        assert not result.is_error, result.content
        other = await client.call_tool("agent_revoke_delegate", {"name": "alpha"})
    assert other.is_error and "not one of this agent's sub-agents" in text(other)
    assert (await identity.get_agent(home, "worker")).status == "revoked"
    assert not (await _delegate(home, name="w2")).is_error
    await lockdown.lockdown(home, reason="test")
    with pytest.raises(AgentRevoked):
        await identity.load_agent(home, "w2")
    await audit.verify_home(home)


async def test_the_verifier_rejects_a_sub_agent_entry_after_its_parent_is_revoked(
    home: Home, clock: FrozenClock
) -> None:
    """The ledger check itself walks child -> parent: an entry the gate should have refused
    (written straight into the ledger here) fails verification."""
    await _parent(home)
    assert not (await _delegate(home)).is_error
    worker = await identity.load_agent(home, "worker")
    await identity.revoke_agent(home, "planner")
    from charter.testing import agent_draft

    # Bypass the gate: sign an entry as the worker after its parent's revocation.
    raw_tx(home).ledger.append_one(agent_draft(worker, action="identity.whoami", outcome="ok"))
    bodies = list(raw_tx(home).ledger.iter_bodies())
    with pytest.raises(LedgerIntegrityError, match=r"ancestor .* is revoked"):
        verify_entries(home.identity, bodies)


async def test_the_verifier_rejects_a_delegation_wider_than_its_parent(home: Home) -> None:
    """A parent that signs a wider charter itself (bypassing the service) fails the audit."""
    await _parent(home)
    assert not (await _delegate(home)).is_error
    bodies = list(raw_tx(home).ledger.iter_bodies())
    outcome = next(
        json.loads(b) for b in bodies if b'"action":"agent.delegate"' in b and b'"ok"' in b
    )
    assert outcome["args"]["details"]["charter"]["type"] == "delegation"
    # The stored charter row verifies against the chain; a tampered one does not load.
    worker = await identity.get_agent(home, "worker")
    doc = outcome["args"]["details"]["charter"] | {"scopes": ["secret:use:*"]}
    db = raw_db(home)
    db.execute(
        "UPDATE charters SET body = ? WHERE hash = ?", (canonical_json(doc), worker.charter_hash)
    )
    db.commit()
    with pytest.raises(ConfigError, match="invalid"):
        await identity.load_agent(home, "worker")


async def test_the_verifier_rejects_a_parent_signed_charter_wider_than_the_parent(
    home: Home,
) -> None:
    import datetime as dt

    from charter.evidence.delegation import DELEGATION_PREFIX, make_delegation
    from charter.evidence.jwk import b64url
    from charter.keys import KeyPair
    from charter.testing import agent_draft

    await _parent(home)
    planner = await identity.load_agent(home, "planner")
    now = home.clock.now()
    doc = make_delegation(
        parent_key=planner.key,
        parent=planner.charter,
        agent_id="spiffe://charter.local/agent/owner/rogue",
        agent_name="rogue",
        agent_public_key=KeyPair.generate().public_key,
        scopes=["audit:read"],
        audiences=[],
        not_before=now,
        not_after=now + dt.timedelta(minutes=5),
    )
    doc["scopes"] = ["audit:read", "email:send"]  # wider, and signed by the parent itself
    unsigned = {k: v for k, v in doc.items() if k != "sig"}
    doc["sig"] = b64url(planner.key.sign(DELEGATION_PREFIX + canonical_json(unsigned)))
    from charter.evidence.charters import charter_hash

    details = {"agent": "rogue", "charter": doc, "charter_hash": charter_hash(doc)}
    raw_tx(home).ledger.append_one(
        agent_draft(
            planner, action="agent.delegate", phase="outcome", outcome="ok",
            args={"intent": "0" * 64, "details": details},
        )
    )  # fmt: skip
    bodies = list(raw_tx(home).ledger.iter_bodies())
    with pytest.raises(LedgerIntegrityError, match="widens its parent"):
        verify_entries(home.identity, bodies)


async def test_the_export_carries_the_chain_and_charter_evidence_verifies_it(
    home: Home, tmp_path: Any
) -> None:
    import charter

    await _parent(home)
    assert not (await _delegate(home)).is_error
    async with Client(await server_for(home, "worker")) as client:
        assert not (await client.call_tool("identity_whoami", {})).is_error
    worker = await identity.get_agent(home, "worker")
    folder = tmp_path / "export"
    await audit.export(home, folder)
    saved = json.loads((folder / "charters" / f"{worker.charter_hash}.json").read_text())
    assert saved["type"] == "delegation" and saved["parent"]["id"].endswith("/planner")
    keys = json.loads((folder / "keys.json").read_text())
    assert "agent:worker" in json.dumps(keys)
    result = charter.verify_export(folder)
    assert result.valid, result.reason
    # A delegation charter file that no entry registers is refused.
    (folder / "charters" / ("0" * 64 + ".json")).write_text(json.dumps(saved))
    assert not charter.verify_export(folder).valid


async def test_the_verifier_rejects_a_revocation_by_a_non_ancestor(home: Home) -> None:
    from charter.testing import agent_draft

    await _parent(home)
    planner = await identity.load_agent(home, "planner")
    alpha = await identity.get_agent(home, "alpha")
    raw_tx(home).ledger.append_one(
        agent_draft(
            planner, action="agent.revoke_delegate", phase="outcome", outcome="ok",
            args={"intent": "0" * 64, "details": {"agent": "alpha", "agent_id": alpha.agent_id}},
        )
    )  # fmt: skip
    with pytest.raises(LedgerIntegrityError, match="not the target's ancestor"):
        verify_entries(home.identity, list(raw_tx(home).ledger.iter_bodies()))
