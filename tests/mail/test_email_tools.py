"""``email_send`` (and the local mailbox) through a real MCP client, in both protocol modes.

Sending goes to a real aiosmtpd server on 127.0.0.1 (STARTTLS + AUTH, or implicit TLS), or
through the local transport between agents of one home. Every test ends with a valid ledger.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
from typing import Any

import pytest
from mailhome import add_mail_agent, call, configure, entries, fail, ledger_bytes
from mailservers import SMTP_PASSWORD, SMTP_USERNAME, SmtpServer, TlsMaterial, free_port
from mcp import Client
from recipient import verify as recipient_verify

from charter.errors import AgentRevoked
from charter.home import Home
from charter.storage.db import transaction
from charter.storage.mail import NewSend
from charter.testing import BlockingVault, FrozenClock, agent_draft, raw_db, raw_tx, server_for
from charter.tools import audit, identity, mail
from charter.tools.mail import message as mm
from charter.tools.mail import sending
from charter.tools.mail.message import DEFAULT_MAX_BYTES

SENDER = "sender@agents.example.com"
READER = "reader@agents.example.com"
BODY = "The launch code is in the attached file. unique-body-canary-8f3a"
ATTACHMENT = b"attachment-canary-77c1\x00\x01\x02"


@pytest.fixture
async def agents(home: Home) -> Home:
    """``sender`` (send and read), ``reader`` (read), ``narrow`` (only *@example.com)."""
    await add_mail_agent(home, "sender", SENDER, ["email:send", "email:read"])
    await add_mail_agent(home, "reader", READER, ["email:read"])
    await add_mail_agent(home, "narrow", "narrow@agents.example.com", ["email:send:*@example.com"])
    return home


@pytest.fixture
async def smtp_home(
    agents: Home, smtp_server_auth_starttls: SmtpServer, tls_material: TlsMaterial
) -> Home:
    """The home configured for the STARTTLS + AUTH server, trusting its CA."""
    await configure(
        agents,
        username=SMTP_USERNAME,
        password=SMTP_PASSWORD,
        smtp_port=smtp_server_auth_starttls.port,
        ca_pem=tls_material.ca_pem.read_text(),
    )
    return agents


def _send_args(**overrides: Any) -> dict[str, Any]:
    return {
        "to": ["bob@example.com"],
        "cc": ["carol@example.org"],
        "bcc": ["auditor@example.net"],
        "subject": "Launch report",
        "text": BODY,
        "attachments": [
            {
                "filename": "codes.bin",
                "content_type": "application/octet-stream",
                "content_base64": base64.b64encode(ATTACHMENT).decode(),
            }
        ],
    } | overrides


async def _charter(home: Home, agent: str) -> dict[str, Any]:
    info = await identity.get_agent(home, agent)
    return (await identity.load_charter(home, info.charter_hash)).doc


# -- SMTP ---------------------------------------------------------------------------------------


async def test_send_over_starttls_with_auth_is_signed_recorded_and_verifiable(
    smtp_home: Home, smtp_server_auth_starttls: SmtpServer, mode: str
) -> None:
    home, server = smtp_home, smtp_server_auth_starttls
    async with Client(await server_for(home, "sender"), mode=mode) as client:
        out = await call(client, "email_send", _send_args())
    assert out["transport"] == "smtp"
    assert out["reply"].startswith("250 ")
    assert out["recipients"] == ["bob@example.com", "carol@example.org", "auditor@example.net"]

    [received] = server.wait_for_messages(1)
    assert received.tls and received.authenticated_as == SMTP_USERNAME
    assert received.mail_from == SENDER
    assert set(received.rcpt_tos) == set(out["recipients"])
    assert b"auditor@example.net" not in received.data  # Bcc is envelope-only
    assert received.message["Message-ID"] == out["message_id"]
    assert received.message["Charter-Agent"] == (await identity.get_agent(home, "sender")).agent_id

    # A recipient verifies it from the document, with the charter and the owner's key.
    payload = recipient_verify(
        received.data,
        await _charter(home, "sender"),
        {"crv": "Ed25519", "kty": "OKP", "x": _owner_x(home)},
    )
    assert payload["ledger"] == home.origin

    # The signed seq is the intent's; intent before outcome; no body anywhere in the ledger.
    log = entries(home)
    intent = next(e for e in log if e["action"] == "email.send" and e["phase"] == "intent")
    outcome = next(e for e in log if e["action"] == "email.send" and e["phase"] == "outcome")
    assert payload["seq"] == intent["seq"] == out["ledger_seq"] < outcome["seq"]
    details = intent["args"]["details"]
    assert details["digest"] == payload["digest"]
    assert details["message_id"] == out["message_id"]
    assert details["bcc"] == ["auditor@example.net"] and details["subject"] == "Launch report"
    assert details["attachments"][0]["size"] == len(ATTACHMENT)
    assert outcome["outcome"] == "ok"
    assert outcome["args"]["details"]["reply"] == out["reply"]
    raw_ledger = ledger_bytes(home)
    assert b"unique-body-canary" not in raw_ledger
    assert b"attachment-canary" not in raw_ledger
    assert base64.b64encode(ATTACHMENT) not in raw_ledger
    assert SMTP_PASSWORD.encode() not in raw_ledger

    [sent] = await mail.outbox(home)
    assert (sent.status, sent.message_id, sent.ledger_seq) == (
        "sent",
        out["message_id"],
        payload["seq"],
    )
    await audit.verify_home(home)


def _owner_x(home: Home) -> str:
    return str(json.loads(home.meta["owner_key"])["x"])


async def test_send_over_implicit_tls(agents: Home, tls_material: TlsMaterial, mode: str) -> None:
    with SmtpServer(auth={"smtps@example.com": "pw-smtps"}, implicit_tls=tls_material) as server:
        await configure(
            agents,
            username="smtps@example.com",
            password="pw-smtps",
            smtp_port=server.port,
            smtp_security="tls",
            ca_pem=tls_material.ca_pem.read_text(),
        )
        async with Client(await server_for(agents, "sender"), mode=mode) as client:
            await call(client, "email_send", {"to": "bob@example.com", "subject": "s", "text": "t"})
        [received] = server.wait_for_messages(1)
    assert received.tls and received.authenticated_as == "smtps@example.com"
    await audit.verify_home(agents)


async def test_retry_is_a_new_message_never_a_resend(
    smtp_home: Home, smtp_server_auth_starttls: SmtpServer, mode: str
) -> None:
    async with Client(await server_for(smtp_home, "sender"), mode=mode) as client:
        first = await call(client, "email_send", _send_args())
        second = await call(client, "email_send", _send_args())
    received = smtp_server_auth_starttls.wait_for_messages(2)
    assert len(received) == 2
    assert first["message_id"] != second["message_id"]
    assert [r.message["Message-ID"] for r in received] == [
        first["message_id"],
        second["message_id"],
    ]
    assert first["ledger_seq"] != second["ledger_seq"]
    await audit.verify_home(smtp_home)


async def _failed_send(home: Home, mode: str, expected: str) -> str:
    async with Client(await server_for(home, "sender"), mode=mode) as client:
        message = await fail(client, "email_send", _send_args())
    assert expected in message, message
    assert SMTP_PASSWORD not in message
    last = entries(home)[-1]
    assert (last["action"], last["phase"], last["outcome"]) == ("email.send", "outcome", "error")
    assert last["reason"] == message
    [sent] = await mail.outbox(home)
    assert sent.status == "failed" and sent.reply == message
    assert SMTP_PASSWORD.encode() not in ledger_bytes(home)
    await audit.verify_home(home)
    return message


async def test_smtp_server_down_is_a_clear_error_outcome(agents: Home, mode: str) -> None:
    await configure(agents, username=SMTP_USERNAME, password=SMTP_PASSWORD, smtp_port=free_port())
    message = await _failed_send(agents, mode, "cannot connect to the SMTP server 127.0.0.1:")
    assert "nothing was sent" in message


async def test_wrong_smtp_credentials_are_a_clear_error_outcome(
    agents: Home, smtp_server_auth_starttls: SmtpServer, tls_material: TlsMaterial, mode: str
) -> None:
    await configure(
        agents,
        username=SMTP_USERNAME,
        password="wrong password",
        smtp_port=smtp_server_auth_starttls.port,
        ca_pem=tls_material.ca_pem.read_text(),
    )
    message = await _failed_send(agents, mode, "rejected the credentials (535")
    assert "charter mail setup" in message and "wrong password" not in message
    assert smtp_server_auth_starttls.messages == []


async def test_untrusted_smtp_certificate_is_a_tls_failure(
    agents: Home, smtp_server_auth_starttls: SmtpServer, mode: str
) -> None:
    await configure(
        agents,
        username=SMTP_USERNAME,
        password=SMTP_PASSWORD,
        smtp_port=smtp_server_auth_starttls.port,
    )
    message = await _failed_send(agents, mode, "TLS failure with the SMTP server")
    assert "certificate is not trusted" in message and "--ca-file" in message
    assert smtp_server_auth_starttls.messages == []


async def test_refused_recipients(
    smtp_home: Home, smtp_server_auth_starttls: SmtpServer, mode: str
) -> None:
    server = smtp_server_auth_starttls
    server.reject_recipients("carol@example.org")
    async with Client(await server_for(smtp_home, "sender"), mode=mode) as client:
        partly = await call(client, "email_send", _send_args(bcc=None))
        server.reject_recipients("bob@example.com")
        message = await fail(client, "email_send", _send_args(bcc=None))
    assert partly["refused"] == {"carol@example.org": "550 5.1.1 No such user"}
    assert "refused every recipient" in message and "nothing was sent" in message
    assert [m.rcpt_tos for m in server.messages] == [("bob@example.com",)]
    await audit.verify_home(smtp_home)


# -- refusals before anything is sent -----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"subject": "Hi\r\nBcc: evil@example.net"}, "subject contains a line break"),
        ({"to": ["bob@example.com\r\nBcc: evil@example.net"]}, "to contains a line break"),
        ({"cc": "carol@example.org\nX-Evil: 1"}, "cc contains a line break"),
        ({"bcc": ["x@example.net\r"]}, "bcc contains a line break"),
        ({"reply_to": "r@example.com\r\nTo: evil@example.net"}, "reply_to contains a line break"),
        ({"in_reply_to": "<a@b.c>\r\nBcc: e@x.net"}, "in_reply_to contains a line break"),
        ({"to": ["Bob <bob@example.com>"]}, "not a bare address"),
        ({"to": [], "cc": None, "bcc": None}, "no recipient"),
        ({"text": "x" * (DEFAULT_MAX_BYTES + 1), "attachments": None}, "too large"),
    ],
)
async def test_bad_input_is_refused_before_anything_is_sent(
    smtp_home: Home,
    smtp_server_auth_starttls: SmtpServer,
    args: dict[str, Any],
    expected: str,
    mode: str,
) -> None:
    async with Client(await server_for(smtp_home, "sender"), mode=mode) as client:
        message = await fail(client, "email_send", _send_args(**args))
    assert expected in message
    assert smtp_server_auth_starttls.messages == []
    last = entries(smtp_home)[-1]
    assert (last["action"], last["phase"], last["outcome"]) == ("email.send", "call", "denied")
    assert not any(e["phase"] == "intent" for e in entries(smtp_home))
    assert await mail.outbox(smtp_home) == []
    await audit.verify_home(smtp_home)


async def test_recipient_patterns_narrow_every_recipient(
    smtp_home: Home, smtp_server_auth_starttls: SmtpServer, mode: str
) -> None:
    async with Client(await server_for(smtp_home, "narrow"), mode=mode) as client:
        for args in (
            {"to": ["bob@example.net"]},
            {"to": ["bob@example.com"], "cc": ["eve@example.org"]},
            {"to": ["bob@example.com"], "bcc": ["eve@evil.example"]},
        ):
            message = await fail(client, "email_send", {"subject": "s", "text": "t"} | args)
            assert "does not grant 'email:send:" in message
        await call(
            client,
            "email_send",
            {"to": "Bob@Example.COM", "cc": "x@example.com", "subject": "s", "text": "t"},
        )
    [received] = smtp_server_auth_starttls.wait_for_messages(1)
    assert received.rcpt_tos == ("Bob@Example.COM", "x@example.com")
    denied = [
        e for e in entries(smtp_home) if e["action"] == "email.send" and e["outcome"] == "denied"
    ]
    assert len(denied) == 3
    await audit.verify_home(smtp_home)


async def test_recipient_patterns_hold_reply_to_too(
    smtp_home: Home, smtp_server_auth_starttls: SmtpServer, mode: str
) -> None:
    """A Reply-To outside ``email:send:<glob>`` would steer the answers elsewhere (16.9b)."""
    args = {"to": ["bob@example.com"], "subject": "s", "text": "t"}
    async with Client(await server_for(smtp_home, "narrow"), mode=mode) as client:
        message = await fail(client, "email_send", args | {"reply_to": "x@evil.test"})
        assert "does not grant 'email:send:x@evil.test'" in message
        message = await fail(
            client, "email_send", args | {"reply_to": ["ok@example.com", "X@Evil.Test"]}
        )
        assert "does not grant 'email:send:x@evil.test'" in message
        await call(client, "email_send", args | {"reply_to": "Ok@Example.com"})
    [received] = smtp_server_auth_starttls.wait_for_messages(1)
    assert received.rcpt_tos == ("bob@example.com",)
    sends = [e for e in entries(smtp_home) if e["action"] == "email.send"]
    assert [(e["phase"], e["outcome"]) for e in sends] == [
        ("call", "denied"),
        ("call", "denied"),
        ("intent", None),
        ("outcome", "ok"),
    ]
    assert sends[2]["args"]["details"]["to"] == ["bob@example.com"]
    await audit.verify_home(smtp_home)


async def test_scope_and_address_are_required(agents: Home, mode: str) -> None:
    await identity.add_agent(agents, "noaddr", scopes=["email:send", "email:read"])
    async with Client(await server_for(agents, "noaddr"), mode=mode) as client:
        message = await fail(client, "email_send", {"to": READER, "subject": "s", "text": "t"})
        assert "no email address" in message and "charter agent update noaddr --email" in message
    async with Client(await server_for(agents, "reader"), mode=mode) as client:
        message = await fail(client, "email_send", {"to": SENDER, "subject": "s", "text": "t"})
        assert f"does not grant 'email:send:{SENDER}'" in message
    async with Client(await server_for(agents, "alpha"), mode=mode) as client:
        message = await fail(client, "email_list", {})
        assert "does not grant 'email:read'" in message
    await audit.verify_home(agents)


async def test_malformed_email_policy_fails_closed(agents: Home, mode: str) -> None:
    await identity.add_agent(
        agents,
        "odd",
        scopes=["email:send", "email:read"],
        policy={"email": {"address": "odd@agents.example.com\r\nBcc: x@y.z", "rate_per_hour": 5}},
    )
    async with Client(await server_for(agents, "odd"), mode=mode) as client:
        message = await fail(client, "email_send", {"to": READER, "subject": "s", "text": "t"})
        assert "email policy is malformed" in message
        assert "email policy is malformed" in await fail(client, "email_list", {})
    async with Client(await server_for(agents, "sender"), mode=mode) as client:  # others unaffected
        await call(client, "email_send", {"to": READER, "subject": "s", "text": "t"})
    assert [s.agent for s in await mail.outbox(agents)] == ["sender"]
    await audit.verify_home(agents)


async def test_rate_limit_is_a_recorded_denial_per_rolling_hour(
    home: Home, clock: FrozenClock, mode: str
) -> None:
    await add_mail_agent(
        home, "chatty", "chatty@agents.example.com", ["email:send"], rate_per_hour=2
    )
    await add_mail_agent(home, "inbox", "inbox@agents.example.com", [])
    args = {"to": "inbox@agents.example.com", "subject": "s", "text": "t"}
    async with Client(await server_for(home, "chatty"), mode=mode) as client:
        await call(client, "email_send", args)
        clock.advance(minutes=30)
        await call(client, "email_send", args)
        message = await fail(client, "email_send", args)
        assert "rate limit: this agent may send 2 messages per hour and has sent 2" in message
        clock.advance(minutes=30, seconds=1)  # the first send leaves the window
        await call(client, "email_send", args)
        assert "rate limit" in await fail(client, "email_send", args)
    denials = [e for e in entries(home) if e["action"] == "email.send" and e["outcome"] == "denied"]
    assert [d["reason"][:10] for d in denials] == ["rate limit"] * 2
    assert [s.status for s in await mail.outbox(home)] == ["sent"] * 3
    await audit.verify_home(home)


async def test_concurrent_sends_never_pass_the_rate_together(home: Home, mode: str) -> None:
    """Both calls pass the early rate check; the check in the intent's transaction lets one."""
    await add_mail_agent(home, "twice", "twice@agents.example.com", ["email:send"], rate_per_hour=1)
    await add_mail_agent(home, "inbox", "inbox@agents.example.com", [])
    args = {"to": "inbox@agents.example.com", "subject": "s", "text": "t"}
    async with Client(await server_for(home, "twice"), mode=mode) as client:
        results = await asyncio.gather(*(client.call_tool("email_send", args) for _ in range(2)))
    assert sorted(r.is_error for r in results) == [False, True]
    [refused] = [r for r in results if r.is_error]
    assert "rate limit" in refused.content[0].text  # type: ignore[union-attr]
    assert [s.status for s in await mail.outbox(home)] == ["sent"]
    sends = [e for e in entries(home) if e["action"] == "email.send"]
    assert sorted((e["phase"], e["outcome"]) for e in sends) == [
        ("call", "denied"),
        ("intent", None),
        ("outcome", "ok"),
    ]
    await audit.verify_home(home)


async def test_a_send_row_never_commits_without_its_intent(home: Home) -> None:
    """The row is an effect of the intent entry: refused with it (here: the agent revoked)."""
    await add_mail_agent(home, "gone", "gone@agents.example.com", ["email:send"])
    agent = await identity.load_agent(home, "gone")
    policy = mail.require_policy(agent)
    outgoing = mm.validate(
        sender=policy.address, to="x@example.com", subject="s", text="t", max_bytes=1 << 20
    )
    row = sending._Reservation(
        "gone", outgoing, "<m@x>", "0" * 64, "smtp", policy, home.clock.now()
    )
    await identity.revoke_agent(home, "gone", reason="test")
    draft = agent_draft(
        agent,
        action="email.send",
        phase="intent",
        session="s",
        call="c",
        args={"to": "x@example.com"},
        args_hash="0" * 64,
        require_agent="gone",
    )
    draft.effects = (row.insert,)
    [result] = raw_tx(home).ledger.append([draft])
    assert isinstance(result, AgentRevoked)  # recorded as a refusal under the log key
    assert await mail.outbox(home) == []


async def test_revoked_before_the_intent_leaves_no_send_row(
    agents: Home, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Revoked after the gate's check but before the intent commits: the ledger refuses the
    intent under the log key, and the send's row, an effect of the intent, never exists."""
    real = mail.transport_for

    async def revoke_then_route(home: Home) -> Any:
        await identity.revoke_agent(home, "sender", reason="revoked mid-call")
        return await real(home)

    monkeypatch.setattr(sending, "transport_for", revoke_then_route)
    async with Client(await server_for(agents, "sender"), mode=mode) as client:
        message = await fail(client, "email_send", {"to": READER, "subject": "s", "text": "t"})
    assert "revoked" in message
    assert await mail.outbox(agents) == []
    sends = [e for e in entries(agents) if e["action"] == "email.send"]
    assert sends and {(e["phase"], e["outcome"]) for e in sends} == {("call", "denied")}
    await audit.verify_home(agents)


async def test_outbox_marks_sends_a_crash_cut_off(
    home: Home, clock: FrozenClock, mode: str
) -> None:
    await add_mail_agent(home, "cut", "cut@agents.example.com", ["email:send"])
    await add_mail_agent(home, "inbox", "inbox@agents.example.com", [])
    args = {"to": "inbox@agents.example.com", "subject": "s", "text": "t"}
    async with Client(await server_for(home, "cut"), mode=mode) as client:
        for _ in range(3):
            await call(client, "email_send", args)
    # The states a kill -9 leaves (tests/security/test_crash.py): before and during delivery.
    before, during, done = (e.message_id for e in await mail.outbox(home))
    with transaction(raw_db(home)):
        for state, message_id in (("reserved", before), ("sending", during)):
            raw_db(home).execute(
                "UPDATE mail_sent SET status = ? WHERE message_id = ?", (state, message_id)
            )

    async def marks() -> dict[str, str | None]:
        return {e.message_id: e.interrupted for e in await mail.outbox(home, now=clock.now())}

    clock.advance(minutes=59)  # a send may still be under way: its transport's timeouts
    assert set((await marks()).values()) == {None}
    clock.advance(minutes=2)
    marked = await marks()
    assert "not sent" in str(marked[before]) and "delivery unknown" in str(marked[during])
    assert marked[done] is None
    assert all(e.interrupted is None for e in await mail.outbox(home))  # no time, no verdict


async def test_intent_refused_means_nothing_is_sent(
    smtp_home: Home, smtp_server_auth_starttls: SmtpServer, mode: str
) -> None:
    """An owner-approval rule parks the call at its intent: the transport is never reached."""
    policy = (await identity.get_agent(smtp_home, "sender")).policy
    await identity.update_agent(
        smtp_home,
        "sender",
        policy=policy | {"approvals": [{"pattern": "email:send*", "mode": "owner"}]},
    )
    async with Client(await server_for(smtp_home, "sender"), mode=mode) as client:
        message = await fail(client, "email_send", _send_args())
    assert "approv" in message
    assert smtp_server_auth_starttls.messages == []
    assert await mail.outbox(smtp_home) == []  # the row commits with the intent, or never
    await audit.verify_home(smtp_home)


# -- the local transport ------------------------------------------------------------------------


async def test_the_local_directory_follows_revocations_and_new_charters(
    agents: Home, mode: str
) -> None:
    """The local transport verifies each charter once per process (its address cached by
    charter hash), but reads the agents' states and current charters in every send: a
    recipient revoked or given a new address after a first send is out of reach at once."""
    home = agents
    args = {"subject": "s", "text": "t"}
    async with Client(await server_for(home, "sender"), mode=mode) as client:
        await call(client, "email_send", args | {"to": READER})  # caches reader's charter
        policy = (await identity.get_agent(home, "reader")).policy
        new = "reader2@agents.example.com"
        await identity.update_agent(home, "reader", policy=policy | {"email": {"address": new}})
        assert "is not one" in await fail(client, "email_send", args | {"to": READER})
        assert (await call(client, "email_send", args | {"to": new}))["recipients"] == [new]
        await identity.revoke_agent(home, "reader", reason="test")
        assert "is not one" in await fail(client, "email_send", args | {"to": new})
    await audit.verify_home(home)


async def test_local_round_trip_between_two_agents(agents: Home, mode: str) -> None:
    home = agents
    async with Client(await server_for(home, "sender"), mode=mode) as client:
        out = await call(client, "email_send", _send_args(to=[READER], cc=None, bcc=None))
        refused = await fail(client, "email_send", _send_args(to=[READER, "bob@example.com"]))
    assert out["transport"] == "local" and out["reply"] == "250 delivered locally to 1 mailbox(es)"
    assert "bob@example.com, carol@example.org, auditor@example.net are not one" in refused
    assert "charter mail setup" in refused

    async with Client(await server_for(home, "reader"), mode=mode) as client:
        listing = await call(client, "email_list", {"unread_only": True})
        [item] = listing["messages"]
        assert listing["transport"] == "local" and "UNTRUSTED" in listing["notice"]
        assert item["id"] == out["message_id"] and item["sender"] == SENDER
        assert item["verified_sender"] == (await identity.get_agent(home, "sender")).agent_id
        assert item["untrusted_content"]["subject"] == "Launch report"
        assert item["untrusted_content"]["attachments"] == [
            {
                "filename": "codes.bin",
                "content_type": "application/octet-stream",
                "size": len(ATTACHMENT),
            }
        ]
        assert item["seen"] is False
        read = await call(client, "email_read", {"message_id": item["id"]})
        assert read["untrusted_content"]["text"] == BODY and "UNTRUSTED" in read["notice"]
        assert (await call(client, "email_list", {"unread_only": True}))["messages"] == []
        missing = await fail(client, "email_read", {"message_id": "<nope@agents.example.com>"})
        assert "no message '<nope@agents.example.com>'" in missing
        assert "no folder" in await fail(client, "email_list", {"folder": "Archive"})

    # The locally delivered copy carries a signature a recipient can verify.
    (raw,) = raw_db(home).execute("SELECT raw FROM mail_local_inbox").fetchone()
    recipient_verify(
        bytes(raw),
        await _charter(home, "sender"),
        {"crv": "Ed25519", "kty": "OKP", "x": _owner_x(home)},
    )
    # Another agent's mailbox is not readable.
    async with Client(await server_for(home, "sender"), mode=mode) as client:
        assert (await call(client, "email_list", {}))["messages"] == []
        await fail(client, "email_read", {"message_id": out["message_id"]})
    assert [s.status for s in await mail.outbox(home)] == ["sent"]
    await audit.verify_home(home)


async def test_sender_allowlist_hides_everything_else(agents: Home, mode: str) -> None:
    await add_mail_agent(agents, "boss", "boss@agents.example.com", ["email:send"])
    await add_mail_agent(
        agents, "guarded", "guarded@agents.example.com", ["email:read"], allow_senders=["boss@*"]
    )
    for sender in ("sender", "boss"):
        async with Client(await server_for(agents, sender), mode=mode) as client:
            await call(
                client,
                "email_send",
                {"to": "guarded@agents.example.com", "subject": sender, "text": "t"},
            )
    hidden_id = (await mail.outbox(agents, agent="sender"))[0].message_id
    async with Client(await server_for(agents, "guarded"), mode=mode) as client:
        listing = await call(client, "email_list", {})
        assert [m["sender"] for m in listing["messages"]] == ["boss@agents.example.com"]
        message = await fail(client, "email_read", {"message_id": hidden_id})
    assert message == f"no message {hidden_id!r} in INBOX (see email_list)"
    await audit.verify_home(agents)


async def test_mail_password_lives_only_in_the_vault(smtp_home: Home) -> None:
    assert BlockingVault(smtp_home).get(mail.PASSWORD_SECRET).reveal() == SMTP_PASSWORD.encode()
    rows = raw_db(smtp_home).execute("SELECT * FROM mail_settings").fetchall()
    assert SMTP_PASSWORD not in json.dumps(rows)
    assert SMTP_PASSWORD.encode() not in ledger_bytes(smtp_home)
    setup = [e for e in entries(smtp_home) if e["action"] == "mail.setup"]
    assert setup and setup[0]["args"]["username"] == SMTP_USERNAME


@pytest.mark.sqlite_only("traces the writer's statements with sqlite3's set_trace_callback")
async def test_a_local_send_commits_intent_delivery_and_outcome_together(
    agents: Home, mode: str
) -> None:
    """The local transport never leaves Charter: the intent, the send's row, the signed copy
    in the recipient's mailbox and the outcome are one transaction (one fsync)."""
    server = await server_for(agents, "sender")
    statements: list[str] = []
    async with Client(server, mode=mode) as client:
        await server.deps.writer.store.run(  # type: ignore[attr-defined]
            lambda conn: conn.set_trace_callback(statements.append)
        )
        out = await call(client, "email_send", {"to": READER, "subject": "s", "text": "t"})
    begin = max(i for i, s in enumerate(statements) if s.startswith("BEGIN IMMEDIATE"))
    traced = statements[begin : statements.index("COMMIT", begin) + 1]
    # SQLite traces a statement a second time when a trigger of it runs (ledger_links)
    txn = [s for i, s in enumerate(traced) if i == 0 or s != traced[i - 1]]
    order = [
        kind
        for s in txn
        for kind, prefix in (
            ("ledger", "INSERT INTO ledger"),
            ("reserve", "INSERT INTO mail_sent"),
            ("inbox", "INSERT INTO mail_local_inbox"),
            ("sent", "UPDATE mail_sent"),
        )
        if s.startswith(prefix)
    ]
    assert order == ["ledger", "reserve", "inbox", "sent", "ledger"], txn
    sends = [e for e in entries(agents) if e["action"] == "email.send"]
    assert [(e["phase"], e["outcome"]) for e in sends] == [("intent", None), ("outcome", "ok")]
    assert sends[1]["args"]["details"]["reply"] == out["reply"]
    assert [s.status for s in await mail.outbox(agents)] == ["sent"]
    await audit.verify_home(agents)


async def test_a_local_send_that_fails_inside_leaves_no_intent_and_no_mail(
    agents: Home, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the copy was put in the mailbox (in the same transaction) takes the
    intent, the row and the copy with it: the ledger shows one failed call, nothing else."""

    def fail_after_delivery(*_args: Any, **_kwargs: Any) -> bool:
        raise RuntimeError("the disk filled up")

    monkeypatch.setattr(type(raw_tx(agents).mail), "change_status", fail_after_delivery)
    async with Client(await server_for(agents, "sender"), mode=mode) as client:
        message = await fail(client, "email_send", {"to": READER, "subject": "s", "text": "t"})
    assert "could not be recorded" in message
    assert raw_db(agents).execute("SELECT count(*) FROM mail_local_inbox").fetchone()[0] == 0
    assert await mail.outbox(agents) == []
    sends = [e for e in entries(agents) if e["action"] == "email.send"]
    assert [(e["phase"], e["outcome"]) for e in sends] == [("call", "error")]
    await audit.verify_home(agents)


async def test_a_send_log_row_moves_only_when_exactly_one_row_matches(home: Home) -> None:
    """The send log has no unique index on Message-ID (migration 0016: one page less per
    send): a row changes state only when its (agent, time, Message-ID) names exactly one row,
    so two rows with one Message-ID (a copy planted in the database) stop the send."""
    send = NewSend(
        message_id="<dup@agents.example.com>",
        agent="sender",
        sender=SENDER,
        to=(READER,),
        cc=(),
        bcc=(),
        subject="s",
        digest="0" * 64,
        size=1,
        transport="local",
        created_at="2026-01-01T00:00:00Z",
    )
    tx = raw_tx(home)

    def move(status: str, expect: str) -> bool:
        return tx.mail.change_status(
            send.message_id,
            status,
            agent="sender",
            created_at=send.created_at,
            expect=expect,
            finished_at="t",
        )

    with transaction(raw_db(home)):
        assert tx.mail.reserve(send)
        assert move("sending", "reserved")
        assert not move("sending", "reserved")
        assert move("sent", "sending")
        assert tx.mail.reserve(send)
        assert tx.mail.reserve(send)  # a second row with the same Message-ID
        with pytest.raises(sqlite3.IntegrityError):
            move("sending", "reserved")


@pytest.mark.sqlite_only("reads SQLite's query plans")
async def test_the_rate_count_and_state_changes_use_the_send_logs_index(home: Home) -> None:
    """A send's rate check counts the agent's rows of the last hour from the index alone, and
    its state changes find the row through the same index: neither reads the whole log."""
    conn = raw_db(home)
    count = "SELECT count(*) FROM mail_sent WHERE agent = ? AND created_at > ?"
    rate = conn.execute(
        f"EXPLAIN QUERY PLAN {count} AND status != 'aborted'", ("a", "t")
    ).fetchall()
    assert "COVERING INDEX mail_sent_agent_time" in str(rate)
    update = conn.execute(
        "EXPLAIN QUERY PLAN UPDATE mail_sent SET status = 'sent' WHERE agent = ? AND"
        " created_at = ? AND message_id = ? AND status = ?",
        ("a", "t", "m", "reserved"),
    ).fetchall()
    assert "INDEX mail_sent_agent_time" in str(update)


async def test_a_mail_server_configured_by_another_process_is_used_from_the_next_send(
    agents: Home, smtp_server_auth_starttls: SmtpServer, tls_material: TlsMaterial, mode: str
) -> None:
    """A running server remembers that its home has no mail server (no settings read per
    send); when another process configures one, the local send in flight is refused with
    nothing delivered, and the next send goes to the mail server, never to a local mailbox."""
    home = agents
    args = {"subject": "s", "text": "t"}
    async with Client(await server_for(home, "sender"), mode=mode) as client:
        assert (await call(client, "email_send", args | {"to": READER}))["transport"] == "local"
        await configure(
            home,
            username=SMTP_USERNAME,
            password=SMTP_PASSWORD,
            smtp_port=smtp_server_auth_starttls.port,
            ca_pem=tls_material.ca_pem.read_text(),
        )
        # What `charter mail setup` in another process leaves this one knowing: nothing.
        mail.settings._LOCAL_HOMES.add(home.origin)
        refused = await fail(client, "email_send", args | {"to": READER})
        assert "configured a mail server" in refused and "nothing was sent" in refused
        assert (await call(client, "email_send", args | {"to": READER}))["transport"] == "smtp"
    assert len(smtp_server_auth_starttls.messages) == 1
    (delivered,) = raw_db(home).execute("SELECT count(*) FROM mail_local_inbox").fetchone()
    assert delivered == 1
    await audit.verify_home(home)
