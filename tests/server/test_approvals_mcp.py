"""Approval of sensitive calls through a real MCP client, in both protocol generations.

``client`` mode asks the human through form elicitation: mid-call on a handshake connection
(``legacy``, 2025-11-25), through ``InputRequiredResult`` and a retried call on 2026-07-28
(``auto``). ``owner`` mode parks the call until ``charter approve``. A small test-only tool
(``test_poke``) stands in for the side-effecting tools: it requires a scope, commits its
intent, then "acts" by appending to a list.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from mcp import Client
from mcp.client.session import ElicitationFnT
from mcp.shared.exceptions import MCPError
from mcp.types import (
    ElicitRequestParams,
    ElicitResult,
    ErrorData,
    InputRequiredResult,
    ToolAnnotations,
)

from charter.errors import AgentRevoked, LedgerIntegrityError
from charter.evidence.entries import Entry
from charter.home import Home
from charter.server.app import CharterServer
from charter.server.calls import current_call, hash_value
from charter.testing import FrozenClock, agent_draft, make_home, raw_db, raw_tx, server_for
from charter.tools import approvals, audit, identity, lockdown

SIDE_EFFECT = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True)


@pytest.fixture
async def home(tmp_path: Any, clock: FrozenClock) -> Any:
    """Agent ``clerk``: token:issue needs the client's approval, email:send the owner's."""
    h = await make_home(tmp_path / "home", clock=clock)
    await identity.add_agent(
        h,
        "clerk",
        scopes=["token:issue", "email:send", "audit:read"],
        policy={
            "approvals": [
                {"pattern": "token:issue", "mode": "client"},
                {"pattern": "email:send", "mode": "owner"},
            ]
        },
    )
    yield h
    await h.close()


async def serve(home: Home, acted: list[str], agent: str = "clerk") -> CharterServer:
    """The agent's server plus test tools that need token:issue / email:send:<to>."""
    server = await server_for(home, agent)

    @server.charter_tool("test_poke", annotations=SIDE_EFFECT, visible_args=("target",))
    async def test_poke(target: str, secret_note: str = "") -> dict[str, str]:
        """Poke ``target`` (needs token:issue)."""
        call = current_call()
        call.require("token:issue")
        await call.intent({"resolved": target.upper()})
        acted.append(target)
        return {"poked": target}

    @server.charter_tool("test_mail", annotations=SIDE_EFFECT, visible_args=("to",))
    async def test_mail(to: list[str], body: str) -> dict[str, int]:
        """Mail ``to`` (needs email:send:<recipient> for each)."""
        call = current_call()
        for rcpt in to:
            call.require(f"email:send:{rcpt}")
        await call.intent()
        acted.append(",".join(to))
        return {"sent": len(to)}

    return server


def answering(
    action: str, content: dict[str, Any] | None = None
) -> tuple[ElicitationFnT, list[str]]:
    """An elicitation callback giving ``action`` (and ``content``); records what it was shown."""
    shown: list[str] = []

    async def answer(context: Any, params: ElicitRequestParams) -> ElicitResult:
        shown.append(params.message)
        return ElicitResult(action=action, content=content)

    return answer, shown


def entries(home: Home) -> list[dict[str, Any]]:
    return [Entry.from_body(b).fields for b in raw_tx(home).ledger.iter_bodies()]


def actions(home: Home, since: int = 0) -> list[tuple[str, str, str | None]]:
    return [(e["action"], e["phase"], e["outcome"]) for e in entries(home)[since:]]


def text(result: Any) -> str:
    return str(result.content[0].text)


# -- client approval ---------------------------------------------------------------------------


async def test_client_accept_runs_the_call_and_links_the_approval(home: Home, mode: str) -> None:
    acted: list[str] = []
    answer, shown = answering("accept", {"approve": True})
    args = {"target": "prod-db", "secret_note": "hunter2"}
    start = raw_tx(home).ledger.head()[0]
    async with Client(await serve(home, acted), mode=mode, elicitation_callback=answer) as client:
        result = await client.call_tool("test_poke", args)
    assert not result.is_error, text(result)
    assert acted == ["prod-db"]
    # The human saw the exact call: tool, visible argument, hidden one by hash, and the hash.
    (message,) = shown
    assert "test_poke" in message and '"prod-db"' in message
    assert "hunter2" not in message
    assert f"sha256 {hash_value('hunter2')}" in message
    assert hash_value(args) in message
    assert actions(home, start) == [
        ("approval.request", "event", None),
        ("approval.answer", "event", "ok"),
        ("test.poke", "intent", None),
        ("test.poke", "outcome", "ok"),
    ]
    request, answer_entry, intent, _ = entries(home)[start:]
    assert {e["args_hash"] for e in (request, answer_entry, intent)} == {hash_value(args)}
    assert request["args"]["mode"] == "client" and request["args"]["scopes"] == ["token:issue"]
    assert answer_entry["args"]["answer"] == "accept"
    assert answer_entry["args"]["client"]["name"] == "mcp"  # the relaying client's own name
    link = intent["args"]["details"]["approval"]
    assert link["id"] == request["args"]["approval"] == answer_entry["args"]["approval"]
    assert (
        link["request"]
        == Entry.from_body(next(raw_tx(home).ledger.iter_bodies(start, start + 1))).hash
    )
    assert intent["args"]["details"]["resolved"] == "PROD-DB"
    assert "hunter2" not in str(entries(home))
    await audit.verify_home(home)


@pytest.mark.parametrize(
    ("action", "content", "says"),
    [
        ("decline", None, "declined"),
        ("cancel", None, "dismissed"),
        ("accept", {"approve": False}, "declined"),
    ],
)
async def test_client_decline_or_cancel_refuses_and_records(
    home: Home, mode: str, action: str, content: dict[str, Any] | None, says: str
) -> None:
    acted: list[str] = []
    answer, shown = answering(action, content)
    start = raw_tx(home).ledger.head()[0]
    async with Client(await serve(home, acted), mode=mode, elicitation_callback=answer) as client:
        result = await client.call_tool("test_poke", {"target": "prod-db"})
    assert result.is_error
    assert says in text(result) and "not run" in text(result)
    assert acted == [] and len(shown) == 1
    assert actions(home, start) == [
        ("approval.request", "event", None),
        ("approval.answer", "event", "denied"),
        ("test.poke", "call", "denied"),
    ]
    expected = "decline" if content else action
    assert entries(home)[start + 1]["args"]["answer"] == expected
    await audit.verify_home(home)


async def test_client_without_elicitation_is_refused_with_the_reason(home: Home, mode: str) -> None:
    acted: list[str] = []
    start = raw_tx(home).ledger.head()[0]
    async with Client(await serve(home, acted), mode=mode) as client:
        result = await client.call_tool("test_poke", {"target": "prod-db"})
    assert result.is_error
    assert "did not declare the elicitation capability" in text(result)
    assert acted == []
    assert actions(home, start) == [("test.poke", "call", "denied")]
    await audit.verify_home(home)


async def test_calls_outside_the_policy_need_no_approval(home: Home, mode: str) -> None:
    async with Client(await server_for(home, "clerk"), mode=mode) as client:
        result = await client.call_tool("audit_query", {"limit": 1})
    assert not result.is_error


async def test_modern_answer_for_another_call_is_refused_and_recorded(home: Home) -> None:
    """2026-07-28: the retry's answer must be the one asked for this exact call, once."""
    acted: list[str] = []
    answer, _ = answering("accept", {"approve": True})
    accept = ElicitResult(action="accept", content={"approve": True})
    async with Client(await serve(home, acted), mode="auto", elicitation_callback=answer) as client:
        session = client.session
        first = await session.call_tool("test_poke", {"target": "a"}, allow_input_required=True)
        second = await session.call_tool("test_poke", {"target": "b"}, allow_input_required=True)
        assert isinstance(first, InputRequiredResult) and isinstance(second, InputRequiredResult)
        assert first.input_requests and second.input_requests
        (key_a,) = first.input_requests
        (key_b,) = second.input_requests
        assert key_a != key_b

        # The answer to call a, sent with call b's state: refused, and b's request is closed.
        start = raw_tx(home).ledger.head()[0]
        wrong = await session.call_tool(
            "test_poke",
            {"target": "b"},
            input_responses={key_a: accept},
            request_state=second.request_state,
            allow_input_required=True,
        )
        assert not isinstance(wrong, InputRequiredResult) and wrong.is_error
        assert "does not belong to this call" in text(wrong)
        assert actions(home, start) == [
            ("approval.answer", "event", "denied"),
            ("test.poke", "call", "denied"),
        ]
        assert entries(home)[start]["args"]["answer"] == "invalid"

        # The right answer smuggled in with an answer for another call: refused too.
        third = await session.call_tool("test_poke", {"target": "c"}, allow_input_required=True)
        assert isinstance(third, InputRequiredResult) and third.input_requests
        (key_c,) = third.input_requests
        mixed = await session.call_tool(
            "test_poke",
            {"target": "c"},
            input_responses={key_c: accept, key_a: accept},
            request_state=third.request_state,
        )
        assert mixed.is_error and "does not belong to this call" in text(mixed)

        # Call a's state replayed onto different arguments: the SDK's sealed state refuses it.
        with pytest.raises(MCPError, match="requestState"):
            await session.call_tool(
                "test_poke",
                {"target": "b"},
                input_responses={key_a: accept},
                request_state=first.request_state,
                allow_input_required=True,
            )

        # The right answer for call a runs it, once; replaying that answer is refused.
        ok = await session.call_tool(
            "test_poke",
            {"target": "a"},
            input_responses={key_a: accept},
            request_state=first.request_state,
        )
        assert not ok.is_error, text(ok)
        replay = await session.call_tool(
            "test_poke",
            {"target": "a"},
            input_responses={key_a: accept},
            request_state=first.request_state,
        )
        assert replay.is_error and "already answered" in text(replay)

        # An answer nobody asked for (no state) is refused too.
        unasked = await session.call_tool(
            "test_poke", {"target": "c"}, input_responses={key_a: accept}
        )
        assert unasked.is_error and "did not ask for" in text(unasked)
    assert acted == ["a"]
    await audit.verify_home(home)


async def test_modern_answer_after_expiry_is_refused(home: Home, clock: FrozenClock) -> None:
    acted: list[str] = []
    answer, _ = answering("accept", {"approve": True})
    async with Client(await serve(home, acted), mode="auto", elicitation_callback=answer) as client:
        asked = await client.session.call_tool(
            "test_poke", {"target": "a"}, allow_input_required=True
        )
        assert isinstance(asked, InputRequiredResult) and asked.input_requests
        clock.advance(minutes=11)
        late = await client.session.call_tool(
            "test_poke",
            {"target": "a"},
            input_responses={
                k: ElicitResult(action="accept", content={"approve": True})
                for k in asked.input_requests
            },
            request_state=asked.request_state,
        )
    assert late.is_error and "expired" in text(late)
    assert acted == []
    await audit.verify_home(home)


# -- owner approval ----------------------------------------------------------------------------


def pending_id(result: Any) -> str:
    match = re.search(r"\(id (apr-[0-9a-f]{16})\)", text(result))
    assert match, text(result)
    return match.group(1)


async def test_owner_approval_round_trip(home: Home, mode: str) -> None:
    acted: list[str] = []
    args = {"to": ["bob@example.com"], "body": "the quarterly numbers"}
    async with Client(await serve(home, acted), mode=mode) as client:
        start = raw_tx(home).ledger.head()[0]
        first = await client.call_tool("test_mail", args)
        assert first.is_error and text(first).startswith("approval pending")
        approval_id = pending_id(first)
        assert f"charter approve {approval_id}" in text(first)
        assert actions(home, start) == [
            ("approval.request", "event", None),
            ("test.mail", "call", "denied"),
        ]
        # Retrying before the owner decides is still pending, under the same id.
        again = await client.call_tool("test_mail", args)
        assert pending_id(again) == approval_id

        (listed,) = await approvals.list_pending(home)
        assert listed.id == approval_id and listed.args_hash == hash_value(args)
        assert listed.scopes == ["email:send:bob@example.com"]
        shown = approvals.render(listed)
        assert '"bob@example.com"' in shown and "quarterly" not in shown
        decided = await approvals.approve(home, approval_id)
        assert decided.status == "approved"

        start = raw_tx(home).ledger.head()[0]
        ok = await client.call_tool("test_mail", args)
        assert not ok.is_error, text(ok)
    assert acted == ["bob@example.com"]
    intent = entries(home)[start]
    assert intent["phase"] == "intent"
    link = intent["args"]["details"]["approval"]
    decision = Entry.from_body(next(raw_tx(home).ledger.iter_bodies(decided.decision_seq or 0)))
    assert link == {
        "id": approval_id,
        "mode": "owner",
        "request": listed.request_entry,
        "decision": decision.hash,
    }
    assert approvals.get_approval(raw_tx(home), approval_id).status == "used"
    assert await approvals.list_pending(home) == []
    await audit.verify_home(home)


async def test_owner_approval_runs_only_the_exact_arguments_once(home: Home, mode: str) -> None:
    acted: list[str] = []
    args = {"to": ["bob@example.com"], "body": "hello"}
    async with Client(await serve(home, acted), mode=mode) as client:
        approval_id = pending_id(await client.call_tool("test_mail", args))
        await approvals.approve(home, approval_id)
        # Drift: one more recipient, or a different body: refused, a new request is opened.
        for drift in (
            {**args, "to": ["bob@example.com", "eve@example.com"]},
            {**args, "body": "hello!"},
        ):
            refused = await client.call_tool("test_mail", drift)
            assert refused.is_error and pending_id(refused) != approval_id
        assert acted == []
        ok = await client.call_tool("test_mail", args)
        assert not ok.is_error, text(ok)
        replay = await client.call_tool("test_mail", args)
        assert replay.is_error
        assert f"approval {approval_id} was already used" in text(replay)
        assert pending_id(replay) != approval_id
    assert acted == ["bob@example.com"]
    await audit.verify_home(home)


async def test_expired_or_denied_owner_approval_is_refused(
    home: Home, clock: FrozenClock, mode: str
) -> None:
    acted: list[str] = []
    late = {"to": ["bob@example.com"], "body": "late"}
    denied = {"to": ["bob@example.com"], "body": "no"}
    async with Client(await serve(home, acted), mode=mode) as client:
        late_id = pending_id(await client.call_tool("test_mail", late))
        denied_id = pending_id(await client.call_tool("test_mail", denied))
        await approvals.approve(home, late_id, valid_for=dt.timedelta(minutes=5))
        await approvals.deny(home, denied_id, reason="not today")
        clock.advance(minutes=6)
        expired = await client.call_tool("test_mail", late)
        assert expired.is_error and f"approval {late_id} expired" in text(expired)
        refused = await client.call_tool("test_mail", denied)
        assert refused.is_error and "owner denied this exact call" in text(refused)
    assert acted == []
    await audit.verify_home(home)


async def test_an_approval_not_signed_by_the_owner_runs_nothing(home: Home, mode: str) -> None:
    """A row marked approved in the database, without the owner's signed decision, is refused."""
    acted: list[str] = []
    args = {"to": ["bob@example.com"], "body": "forged"}
    async with Client(await serve(home, acted), mode=mode) as client:
        approval_id = pending_id(await client.call_tool("test_mail", args))
        request = approvals.get_approval(raw_tx(home), approval_id)
        request_seq = (
            raw_db(home)
            .execute("SELECT seq FROM ledger WHERE hash = ?", (request.request_entry,))
            .fetchone()[0]
        )
        # Point the decision at the agent-signed request entry, as a tamperer might.
        raw_db(home).execute(
            "UPDATE approvals SET status = 'approved', decision_seq = ? WHERE id = ?",
            (request_seq, approval_id),
        )
        refused = await client.call_tool("test_mail", args)
    assert refused.is_error and "not signed by the owner's key" in text(refused)
    assert acted == []
    await audit.verify_home(home)


async def test_a_forged_approval_entry_fails_verification(home: Home, mode: str) -> None:
    acted: list[str] = []
    args = {"to": ["bob@example.com"], "body": "forged"}
    async with Client(await serve(home, acted), mode=mode) as client:
        approval_id = pending_id(await client.call_tool("test_mail", args))
    request = approvals.get_approval(raw_tx(home), approval_id)
    agent = await identity.load_agent(home, "clerk")
    # The agent's key signs a well-formed entry of its own that claims to approve its request.
    raw_tx(home).ledger.append_one(
        agent_draft(
            agent,
            action="approval.approve",
            phase="event",
            args={
                "approval": approval_id,
                "agent_id": request.agent_id,
                "call_args_hash": request.args_hash,
                "expires_at": request.expires_at,
            },
        )
    )
    with pytest.raises(LedgerIntegrityError, match="must be signed by the owner key"):
        await audit.verify_home(home)


# -- kill switch -------------------------------------------------------------------------------


async def test_lockdown_stops_a_running_server_on_the_next_call(home: Home, mode: str) -> None:
    acted: list[str] = []
    answer, _ = answering("accept", {"approve": True})
    async with Client(await serve(home, acted), mode=mode, elicitation_callback=answer) as client:
        assert not (await client.call_tool("identity_whoami", {})).is_error
        state = await lockdown.lockdown(home, reason="suspected leak")
        assert state.active and state.agents == ["clerk"]
        refused = await client.call_tool("test_poke", {"target": "x"})
        whoami = await client.call_tool("identity_whoami", {})
    assert refused.is_error and "revoked" in text(refused)
    assert whoami.is_error
    assert acted == []
    last = entries(home)[-1]
    assert last["outcome"] == "denied" and last["kid"] == home.log_key.kid
    await audit.verify_home(home)

    await lockdown.lift(home)
    with pytest.raises(AgentRevoked):
        await identity.load_agent(home, "clerk")  # still revoked: lifting reinstates no one
    await lockdown.reinstate_agent(home, "clerk")
    async with Client(await serve(home, acted), mode=mode, elicitation_callback=answer) as client:
        result = await client.call_tool("test_poke", {"target": "y"})
    assert not result.is_error, text(result)
    assert acted == ["y"]
    await audit.verify_home(home)


async def test_legacy_client_error_answer_refuses_and_records(home: Home) -> None:
    """Handshake era: a client that fails the elicitation request refuses the call."""
    acted: list[str] = []

    async def broken(context: Any, params: ElicitRequestParams) -> ErrorData:
        return ErrorData(code=-32603, message="no UI available")

    start = raw_tx(home).ledger.head()[0]
    async with Client(
        await serve(home, acted), mode="legacy", elicitation_callback=broken
    ) as client:
        result = await client.call_tool("test_poke", {"target": "x"})
    assert result.is_error and "could not ask for approval" in text(result)
    assert acted == []
    assert entries(home)[start + 1]["args"]["answer"] == "error"
    await audit.verify_home(home)


async def test_a_malformed_approval_policy_fails_closed(home: Home, mode: str) -> None:
    await identity.add_agent(
        home, "odd", scopes=["token:issue"], policy={"approvals": [{"pattern": "token:issue"}]}
    )
    acted: list[str] = []
    answer, shown = answering("accept", {"approve": True})
    async with Client(
        await serve(home, acted, "odd"), mode=mode, elicitation_callback=answer
    ) as client:
        result = await client.call_tool("test_poke", {"target": "x"})
    assert result.is_error and "approval policy is malformed" in text(result)
    assert acted == [] and shown == []
    await audit.verify_home(home)


async def test_the_real_token_issue_tool_waits_for_the_humans_yes(home: Home, mode: str) -> None:
    """The mechanism is generic: token_issue needs no code of its own to be approved."""
    await identity.add_agent(
        home,
        "issuer",
        scopes=["token:issue", "audit:read"],
        audiences=["https://api.example.com"],
        policy={"approvals": [{"pattern": "token:*", "mode": "client"}]},
    )
    args = {"audience": "https://api.example.com", "scopes": ["audit:read"]}
    for action, content in (("decline", None), ("accept", {"approve": True})):
        answer, shown = answering(action, content)
        server = await server_for(home, "issuer")
        async with Client(server, mode=mode, elicitation_callback=answer) as client:
            result = await client.call_tool("token_issue", args)
        assert len(shown) == 1 and "token_issue" in shown[0] and hash_value(args) in shown[0]
        assert result.is_error is (action == "decline"), text(result)
    assert result.structured_content and result.structured_content["token"]
    intent = next(e for e in reversed(entries(home)) if e["phase"] == "intent")
    assert intent["action"] == "token.issue" and intent["args"]["details"]["approval"]["answer"]
    await audit.verify_home(home)


async def test_the_real_email_send_waits_for_the_owner_per_recipient(home: Home, mode: str) -> None:
    """email_send requires email:send:<recipient> per recipient; only a matching one asks."""
    reader = "reader@agents.example.com"
    await identity.add_agent(
        home, "reader", scopes=["email:read"], policy={"email": {"address": reader}}
    )
    await identity.add_agent(
        home,
        "sender",
        scopes=["email:send"],
        policy={
            "email": {"address": "sender@agents.example.com"},
            "approvals": [{"pattern": "email:send:reader@*", "mode": "owner"}],
        },
    )
    args = {"to": [reader], "subject": "Launch", "text": "body-canary-5e1d"}
    async with Client(await server_for(home, "sender"), mode=mode) as client:
        pending = await client.call_tool("email_send", args)
        assert pending.is_error and text(pending).startswith("approval pending")
        approval = approvals.get_approval(raw_tx(home), pending_id(pending))
        assert approval.scopes == [f"email:send:{reader}"]
        assert "body-canary" not in approvals.render(approval)
        await approvals.approve(home, approval.id)
        sent = await client.call_tool("email_send", args)
        assert not sent.is_error, text(sent)
    (count,) = raw_db(home).execute("SELECT count(*) FROM mail_local_inbox").fetchone()
    assert count == 1
    assert b"body-canary" not in b"".join(raw_tx(home).ledger.iter_bodies())
    await audit.verify_home(home)


# -- what the human approves for secret_http_request (issue 27.5) ------------------------------

SECRET_VALUE = "sk-live-approval-test-0123456789"
HTTP_ARGS = {
    "method": "POST",
    "url": "https://api.example.com/v1/charges?key={{secret:API_KEY}}&amount=5000",
    "headers": {"Authorization": "Bearer {{secret:API_KEY}}", "Content-Type": "application/json"},
    "body": '{"to": "acct_9"}',
}


async def http_agent(home: Home, approval: str) -> None:
    from charter.tools import vault

    await vault.set_secret(
        home, "API_KEY", SECRET_VALUE.encode(), allowed_hosts=["api.example.com"]
    )
    await identity.add_agent(
        home,
        "payer",
        scopes=["secret:use:API_KEY"],
        policy={"approvals": [{"pattern": "secret:use:*", "mode": approval}]},
    )


def assert_shows_the_request(shown: str) -> None:
    """Method, full URL as written, header names, body size and type; never a value."""
    assert '  method: "POST"' in shown
    assert f"  url: {json.dumps(HTTP_ARGS['url'])}" in shown
    assert '  headers: "Authorization", "Content-Type" (values not shown; sha256 ' in shown
    assert '  body: 16 bytes, "application/json" (not shown; sha256 ' in shown
    assert "Bearer" not in shown and "acct_9" not in shown  # header values, body: hashes
    assert SECRET_VALUE not in shown


async def test_owner_sees_what_a_secret_http_request_would_do(home: Home, mode: str) -> None:
    await http_agent(home, "owner")
    async with Client(await server_for(home, "payer"), mode=mode) as client:
        result = await client.call_tool("secret_http_request", HTTP_ARGS)
    assert result.is_error and "approval pending" in text(result)
    [pending] = await approvals.list_pending(home)
    assert_shows_the_request(approvals.render(pending))
    request = entries(home)[-2]  # approval.request, then the call's closing entry
    assert request["action"] == "approval.request"
    assert SECRET_VALUE not in json.dumps(entries(home))
    await audit.verify_home(home)


async def test_client_elicitation_shows_what_a_secret_http_request_would_do(
    home: Home, mode: str
) -> None:
    await http_agent(home, "client")
    answer, shown = answering("decline")
    async with Client(await server_for(home, "payer"), mode=mode, elicitation_callback=answer) as c:
        result = await c.call_tool("secret_http_request", HTTP_ARGS)
    assert result.is_error and "declined" in text(result)
    [message] = shown
    assert_shows_the_request(message)
    await audit.verify_home(home)
