"""Approval policy, owner decisions, the kill switch, and the verifier's approval rules.

Transport-free: requests are made the way the gate makes them (an agent-signed
``approval.request`` entry, then the stored row); tests/server/test_approvals_mcp.py drives
the same flows through a real MCP client.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from charter.clock import rfc3339
from charter.errors import (
    AgentRevoked,
    ConfigError,
    InvalidInput,
    LedgerIntegrityError,
    NotFound,
)
from charter.evidence.charters import charter_hash, make_charter
from charter.home import Home
from charter.keys import KeyPair
from charter.server import approvals as server_approvals
from charter.server.calls import Call, hash_value
from charter.server.deps import Deps
from charter.testing import FrozenClock, agent_draft, make_home, raw_db, raw_tx
from charter.tools import approvals, audit, identity, lockdown, tokens
from charter.tools.approvals import Approval, ApprovalRefused, ApprovalRule

ARGS = {"to": "bob@example.com", "body": "hi"}


@pytest.fixture
async def home(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[Home]:
    h = await make_home(tmp_path / "home", clock=clock)
    policy = {"approvals": [{"pattern": "email:send", "mode": "owner"}]}
    await identity.add_agent(h, "clerk", scopes=["email:send"], policy=policy)
    await identity.add_agent(h, "other", scopes=["email:send"])
    yield h
    await h.close()


async def request(home: Home, mode: str = "owner", args: dict[str, Any] = ARGS) -> Approval:
    """Record an approval request as the gate does (signed entry first, then the row)."""
    agent = await identity.load_agent(home, "clerk")
    approval_id = approvals.new_approval_id()
    expires = rfc3339(home.clock.now() + approvals.PENDING_TTL[mode])
    summary = {"arguments": {"to": args["to"], "body": {"sha256": hash_value(args["body"])}}}
    entry = raw_tx(home).ledger.append_one(
        agent_draft(
            agent,
            action="approval.request",
            phase="event",
            call="c0ffee",
            args={
                "approval": approval_id,
                "mode": mode,
                "tool": "test_mail",
                "action": "test.mail",
                "scopes": ["email:send:bob@example.com"],
                "summary": summary,
                "expires_at": expires,
            },
            args_hash=hash_value(args),
            require_agent="clerk",
        )
    )
    approval = Approval(
        id=approval_id,
        mode=mode,
        agent="clerk",
        agent_id=agent.agent_id,
        tool="test_mail",
        action="test.mail",
        call_id="c0ffee",
        args_hash=hash_value(args),
        scopes=["email:send:bob@example.com"],
        summary=summary,
        status="pending",
        requested_at=rfc3339(home.clock.now()),
        expires_at=expires,
        request_entry=entry.hash,
    )
    approvals.insert_request(raw_tx(home), approval)
    return approval


async def intent(home: Home, link: dict[str, Any], args: dict[str, Any] = ARGS) -> None:
    """Append the agent-signed intent a gate would write after an approval (or a forgery)."""
    agent = await identity.load_agent(home, "clerk")
    raw_tx(home).ledger.append_one(
        agent_draft(
            agent,
            action="test.mail",
            phase="intent",
            call="c0ffee",
            args={"to": args["to"], "details": {"approval": link}},
            args_hash=hash_value(args),
        )
    )


async def owner_event(home: Home, action: str, args: dict[str, Any]) -> None:
    await home.record_owner_event(action, args)


# -- policy ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("email:send", ApprovalRule("email:send", "client")),
        ("email:send=owner", ApprovalRule("email:send", "owner")),
        ("secret:read:*=client", ApprovalRule("secret:read:*", "client")),
        ("*=owner", ApprovalRule("*", "owner")),
    ],
)
def test_parse_rule(text: str, rule: ApprovalRule) -> None:
    assert approvals.parse_rule(text) == rule


@pytest.mark.parametrize(
    "text", ["", "=owner", "email:send=root", "root:*", "email send", "secret:read:a;b", "x" * 300]
)
def test_parse_rule_refuses_bad_input(text: str) -> None:
    with pytest.raises(InvalidInput):
        approvals.parse_rule(text)


@pytest.mark.parametrize(
    ("pattern", "scope", "matches"),
    [
        ("email:send", "email:send", True),
        ("email:send", "email:send:bob@example.com", True),  # a scope covers its refinements
        ("email:send:*@example.com", "email:send:bob@example.com", True),
        ("email:send:*@example.com", "email:send:bob@evil.com", False),
        ("secret:read:*", "secret:read:API_KEY", True),
        ("secret:read:*", "secret:use:API_KEY", False),
        ("token:issue", "token:issuer", False),
        ("email:*", "email:read", True),
        ("*", "audit:read", True),
    ],
)
def test_pattern_matches(pattern: str, scope: str, matches: bool) -> None:
    assert approvals.pattern_matches(pattern, scope) is matches


def test_required_mode_owner_wins_and_lists_the_matched_scopes() -> None:
    rules = [ApprovalRule("email:send", "client"), ApprovalRule("email:send:*@corp.com", "owner")]
    assert approvals.required_mode(rules, ["audit:read"]) == (None, [])
    assert approvals.required_mode(rules, ["email:send:a@x.com"]) == (
        "client",
        ["email:send:a@x.com"],
    )
    scopes = ["email:send:a@x.com", "email:send:b@corp.com", "email:send:a@x.com"]
    assert approvals.required_mode(rules, scopes) == (
        "owner",
        ["email:send:a@x.com", "email:send:b@corp.com"],
    )


@pytest.mark.parametrize(
    "policy",
    [
        {"approvals": "email:send"},
        {"approvals": [{"pattern": "email:send"}]},
        {"approvals": [{"pattern": "root:*", "mode": "owner"}]},
        {"approvals": [{"pattern": "email:send", "mode": "owner", "extra": 1}]},
    ],
)
def test_a_malformed_signed_policy_fails_closed(policy: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="approval policy is malformed"):
        approvals.rules_of(policy)


def test_with_rules_replaces_only_the_approvals() -> None:
    policy = {"email": "bot@example.com", "approvals": [{"pattern": "x", "mode": "client"}]}
    rules = [approvals.parse_rule("token:issue=owner"), approvals.parse_rule("token:issue=owner")]
    assert approvals.with_rules(policy, rules) == {
        "email": "bot@example.com",
        "approvals": [{"pattern": "token:issue", "mode": "owner"}],
    }
    assert approvals.with_rules(policy, []) == {"email": "bot@example.com"}


# -- owner decisions ---------------------------------------------------------------------------


async def test_approve_signs_the_exact_call_and_it_is_claimed_once(home: Home) -> None:
    pending = await request(home)
    assert [a.id for a in await approvals.list_pending(home)] == [pending.id]
    decided = await approvals.approve(home, pending.id, valid_for=dt.timedelta(minutes=30))
    assert decided.status == "approved"
    assert decided.expires_at == rfc3339(home.clock.now() + dt.timedelta(minutes=30))
    decision = approvals.genuine_decision(home, raw_tx(home), decided)
    assert decision is not None and decision.fields["kid"] == home.owner_key().kid
    assert decision.fields["args"]["call_args_hash"] == hash_value(ARGS)
    now = rfc3339(home.clock.now())
    assert approvals.claim(raw_tx(home), pending.id, status="approved", call_id="c1", now=now)
    assert not approvals.claim(raw_tx(home), pending.id, status="approved", call_id="c2", now=now)
    assert await approvals.list_pending(home) == []
    await intent(home, {"id": pending.id, "mode": "owner", "request": pending.request_entry})
    await audit.verify_home(home)


async def test_decisions_refuse_what_cannot_be_decided(home: Home, clock: FrozenClock) -> None:
    with pytest.raises(NotFound):
        await approvals.approve(home, "apr-0000000000000000")
    with pytest.raises(NotFound):
        await approvals.approve(home, "'; DROP TABLE approvals; --")
    client = await request(home, mode="client")
    with pytest.raises(InvalidInput, match="answered by the client"):
        await approvals.approve(home, client.id)
    done = await request(home, args={**ARGS, "body": "done"})
    await approvals.deny(home, done.id, reason="no")
    with pytest.raises(InvalidInput, match="already denied"):
        await approvals.approve(home, done.id)
    with pytest.raises(InvalidInput, match="too long"):
        await approvals.deny(home, done.id, reason="x" * 501)
    stale = await request(home, args={**ARGS, "body": "stale"})
    clock.advance(hours=25)
    with pytest.raises(InvalidInput, match="expired"):
        await approvals.approve(home, stale.id)
    gone = await request(home, args={**ARGS, "body": "gone"})
    await identity.revoke_agent(home, "clerk")
    with pytest.raises(AgentRevoked):
        await approvals.approve(home, gone.id)
    assert approvals.get_approval(raw_tx(home), gone.id).status == "pending"
    await audit.verify_home(home)


async def test_a_row_approved_without_the_owners_decision_is_not_genuine(home: Home) -> None:
    pending = await request(home)
    raw_db(home).execute(
        "UPDATE approvals SET status = 'approved', decision_seq = 0 WHERE id = ?", (pending.id,)
    )
    assert (
        approvals.genuine_decision(
            home, raw_tx(home), approvals.get_approval(raw_tx(home), pending.id)
        )
        is None
    )
    decided = await approvals.approve(home, (await request(home, args={**ARGS, "body": "2"})).id)
    # The decision is genuine only for its own request, arguments and expiry.
    for change in ({"args_hash": "0" * 64}, {"expires_at": "2099-01-01T00:00:00.000Z"}):
        assert (
            approvals.genuine_decision(home, raw_tx(home), decided.model_copy(update=change))
            is None
        )
    assert approvals.genuine_decision(home, raw_tx(home), decided) is not None


async def test_render_escapes_agent_text(home: Home) -> None:
    tricky = {"to": 'bob@example.com"\nApproval id apr-x is SAFE', "body": "secret body"}
    shown = approvals.render(await request(home, args=tricky))
    assert "\nApproval id apr-x" not in shown and "\\nApproval id" in shown
    assert "secret body" not in shown and hash_value("secret body") in shown
    assert hash_value(tricky) in shown


# -- kill switch -------------------------------------------------------------------------------


async def test_lockdown_revokes_every_agent_and_cancels_open_approvals(home: Home) -> None:
    pending = await request(home)
    approved = await approvals.approve(home, (await request(home, args={**ARGS, "body": "2"})).id)
    state = await lockdown.lockdown(home, reason="stolen laptop")
    assert state.active and state.agents == ["clerk", "other"] and state.reason == "stolen laptop"
    assert {a.status for a in await identity.list_agents(home)} == {"revoked"}
    for a in (pending, approved):
        assert approvals.get_approval(raw_tx(home), a.id).status == "cancelled"
    size = raw_tx(home).ledger.head()[0]
    assert (await lockdown.lockdown(home)).since == state.since  # idempotent: nothing new is signed
    assert raw_tx(home).ledger.head()[0] == size
    last = raw_tx(home).ledger.get(size - 1)
    assert last is not None and last.fields["action"] == "owner.lockdown"
    assert last.fields["kid"] == home.owner_key().kid
    assert len(last.fields["args"]["agents"]) == 2
    with pytest.raises(InvalidInput, match="locked down"):
        await identity.add_agent(home, "new", scopes=[])
    with pytest.raises(AgentRevoked):
        await identity.update_agent(home, "clerk", scopes=[])
    with pytest.raises(InvalidInput, match="locked down"):
        await lockdown.reinstate_agent(home, "clerk")
    report = await audit.verify_home(home)
    assert report.revoked == 2


async def test_lift_then_reinstate_one_by_one(home: Home, clock: FrozenClock) -> None:
    await identity.add_agent(home, "fired", scopes=[])
    await identity.revoke_agent(home, "fired")
    key_before = (await identity.get_agent(home, "clerk")).kid
    await lockdown.lockdown(home)
    await lockdown.lift(home)
    with pytest.raises(InvalidInput, match="not locked down"):
        await lockdown.lift(home)
    state = lockdown.lockdown_state(raw_tx(home))
    assert not state.active and state.awaiting_reinstatement == ["clerk", "other"]
    assert (await identity.get_agent(home, "clerk")).status == "revoked"
    clock.advance(days=1)
    info = await lockdown.reinstate_agent(home, "clerk", scopes=["email:send"])
    assert info.status == "active" and info.policy["approvals"]  # the policy is kept
    assert info.kid == key_before and info.not_before == rfc3339(clock.now())
    assert (await identity.load_agent(home, "clerk")).charter.hash == info.charter_hash
    with pytest.raises(InvalidInput, match="not revoked by a lockdown"):
        await lockdown.reinstate_agent(home, "clerk")
    with pytest.raises(InvalidInput, match="not revoked by a lockdown"):
        await lockdown.reinstate_agent(home, "fired")
    assert lockdown.lockdown_state(raw_tx(home)).awaiting_reinstatement == ["other"]
    await identity.add_agent(home, "new", scopes=[])  # allowed again after the lift
    report = await audit.verify_home(home)
    assert report.revoked == 2  # fired, other


# -- the verifier's approval and lockdown rules ------------------------------------------------


async def expect_invalid(home: Home, says: str) -> None:
    with pytest.raises(LedgerIntegrityError, match=says):
        await audit.verify_home(home)


async def test_verifier_refuses_an_intent_citing_an_ungranted_approval(home: Home) -> None:
    pending = await request(home)
    await intent(home, {"id": pending.id, "mode": "owner"})
    await expect_invalid(home, "requested, not granted")


async def test_verifier_refuses_an_approval_used_twice(home: Home) -> None:
    pending = await request(home)
    await approvals.approve(home, pending.id)
    await intent(home, {"id": pending.id, "mode": "owner"})
    await audit.verify_home(home)
    await intent(home, {"id": pending.id, "mode": "owner"})
    await expect_invalid(home, "used, not granted")


async def test_verifier_refuses_an_approval_for_other_arguments(home: Home) -> None:
    pending = await request(home)
    await approvals.approve(home, pending.id)
    await intent(home, {"id": pending.id, "mode": "owner"}, args={**ARGS, "body": "changed"})
    await expect_invalid(home, "another agent or other arguments")


async def test_verifier_refuses_an_expired_approval(home: Home, clock: FrozenClock) -> None:
    pending = await request(home)
    await approvals.approve(home, pending.id, valid_for=dt.timedelta(minutes=5))
    clock.advance(minutes=5)
    await intent(home, {"id": pending.id, "mode": "owner"})
    await expect_invalid(home, "expired owner approval")


async def test_verifier_refuses_a_decision_for_an_unknown_request(home: Home) -> None:
    await owner_event(home, "approval.approve", {"approval": "apr-1111111111111111"})
    await expect_invalid(home, "unknown, undecidable or already decided")


async def test_verifier_refuses_a_client_answer_to_an_owner_request(home: Home) -> None:
    pending = await request(home)
    agent = await identity.load_agent(home, "clerk")
    raw_tx(home).ledger.append_one(
        agent_draft(
            agent,
            action="approval.answer",
            phase="event",
            args={"approval": pending.id, "answer": "accept"},
            args_hash=hash_value(ARGS),
            outcome="ok",
        )
    )
    await expect_invalid(home, "not a pending client request")


async def test_verifier_refuses_lifting_without_a_lockdown(home: Home) -> None:
    await owner_event(home, "owner.lockdown.lift", {"lockdown": 1})
    await expect_invalid(home, "without a lockdown")


async def test_verifier_refuses_registering_during_a_lockdown(home: Home) -> None:
    await lockdown.lockdown(home)
    key = KeyPair.generate()
    now = home.clock.now()
    charter = make_charter(
        owner_key=home.owner_key(),
        owner_id=home.owner_id,
        agent_id="spiffe://charter.local/agent/owner/sneaky",
        agent_name="sneaky",
        agent_public_key=key.public_key,
        scopes=[],
        audiences=[],
        not_before=now,
        not_after=now + dt.timedelta(days=1),
    )
    await owner_event(
        home, "agent.register", {"charter": charter, "charter_hash": charter_hash(charter)}
    )
    await expect_invalid(home, "agent.register during a lockdown")


async def test_verifier_refuses_reinstating_a_finally_revoked_agent(home: Home) -> None:
    await identity.revoke_agent(home, "other")
    view = await identity.load_charter(home, (await identity.get_agent(home, "other")).charter_hash)
    now = home.clock.now()
    charter = make_charter(
        owner_key=home.owner_key(),
        owner_id=home.owner_id,
        agent_id=view.agent_id,
        agent_name="other",
        agent_public_key=view.agent_key,
        scopes=[],
        audiences=[],
        not_before=now,
        not_after=now + dt.timedelta(days=1),
    )
    await owner_event(
        home, "agent.reinstate", {"charter": charter, "charter_hash": charter_hash(charter)}
    )
    await expect_invalid(home, "agent.reinstate for an agent no lockdown revoked")


async def test_verifier_refuses_owner_actions_signed_by_an_agent(home: Home) -> None:
    agent = await identity.load_agent(home, "clerk")
    raw_tx(home).ledger.append_one(
        agent_draft(
            agent,
            action="owner.lockdown.lift",
            phase="event",
        )
    )
    await expect_invalid(home, "must be signed by the owner key")


async def test_lockdown_kills_every_token_for_good(home: Home) -> None:
    await identity.add_agent(
        home, "caller", scopes=["audit:read"], audiences=["https://api.example.com"]
    )
    issued = await tokens.issue_for_owner(home, "caller", audience="https://api.example.com")
    assert (await tokens.introspect(home, issued.token))["active"] is True
    await lockdown.lockdown(home)
    assert await tokens.introspect(home, issued.token) == {"active": False}
    await lockdown.lift(home)
    await lockdown.reinstate_agent(home, "caller")
    # Reinstating issues a new charter: tokens from before the lockdown stay dead.
    assert await tokens.introspect(home, issued.token) == {"active": False}
    await audit.verify_home(home)


@pytest.mark.parametrize("differs", [None, "arguments", "tool", "agent", "mode"])
async def test_a_retried_call_must_be_the_one_its_client_request_was_for(
    home: Home, differs: str | None
) -> None:
    """The retry of a 2026-07-28 client approval names its request in the (SDK-sealed) state;
    Charter still checks that request was asked for this very call."""
    pending = await request(home, mode="owner" if differs == "mode" else "client")
    agent = await identity.load_agent(home, "other" if differs == "agent" else "clerk")

    async def resolve() -> identity.AgentContext:
        return agent

    call = Call(
        deps=Deps(home=home, resolve_agent=resolve),
        agent=agent,
        tool="other_tool" if differs == "tool" else "test_mail",
        action="test.mail",
        arguments=ARGS | {"body": "changed"} if differs == "arguments" else ARGS,
        visible_args=frozenset(),
    )
    state = json.dumps({"approval": pending.id})
    if differs is None:
        assert (await server_approvals._stored_request(call, state)).id == pending.id
    else:
        with pytest.raises(ApprovalRefused, match="was asked for another call"):
            await server_approvals._stored_request(call, state)


def test_can_apply_only_when_a_granted_scope_can_match() -> None:
    assert not approvals.can_apply("email:send", ["email:read"])
    assert not approvals.can_apply("secret:read:*", ["secret:use:GH"])
    assert not approvals.can_apply("*", [])
    for pattern, granted in (
        ("email:send", ["email:send:*@example.com"]),
        ("email:send:bob@example.com", ["email:send"]),
        ("secret:use:GH", ["secret:use:*"]),
        ("secret:read:*", ["secret:read:DB_*"]),
        ("token:*", ["token:issue"]),
        ("*", ["audit:read"]),
    ):
        assert approvals.can_apply(pattern, granted), (pattern, granted)


def test_the_http_request_view_stays_recordable_with_hostile_headers() -> None:
    from charter.evidence.canonical import canonical_json
    from charter.server.calls import summarize

    args = {
        "method": "GET",
        "url": "https://h.example/\x00x",
        "headers": {"X-\ud800": "v", "Content-Type": "text/plain\ud800"},
        "body": "b",
    }
    view = approvals.call_view("secret_http_request", args, summarize(args, frozenset({"method"})))
    canonical_json(view)  # the approval.request entry can always be signed
    assert "url" not in view or view["url"] != args["url"]  # a NUL is never shown verbatim
    assert view["headers"]["names"] == ["X-\\ud800", "Content-Type"]
    assert view["body"]["content_type"] is None and view["body"]["bytes"] == 1
