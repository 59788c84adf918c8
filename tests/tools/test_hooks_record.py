"""``charter hook claude-code`` end to end (issue 23): recorded Claude Code payloads through
the REAL command (a subprocess of ``python -m charter``), the owner's rules, fail-closed
behaviour on bad input or an agent that may not act, redaction of vault values, and reading a
session back (``audit_query`` / ``charter audit tail --session``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from charter.home import Home
from charter.testing import make_home
from charter.tools import audit, identity, vault
from charter.tools.hooks import record
from charter.tools.hooks.rules import RuleError

PAYLOADS = Path(__file__).parent / "hook_payloads"
SESSION = "abc123"
SECRET = "sk-live-7Qm2vXr9Lp4Tz8Kd"

#: One session as Claude Code would send it: every event and tool type.
SESSION_EVENTS = [
    "session_start",
    "user_prompt_submit",
    "pre_tool_use_bash",
    "post_tool_use_failure_bash",
    "pre_tool_use_bash_ls",
    "post_tool_use_bash",
    "pre_tool_use_read",
    "post_tool_use_read",
    "pre_tool_use_edit",
    "post_tool_use_edit",
    "pre_tool_use_write",
    "post_tool_use_write",
    "pre_tool_use_webfetch",
    "post_tool_use_webfetch",
    "pre_tool_use_mcp",
    "post_tool_use_mcp",
    "notification",
    "subagent_stop",
    "stop",
    "session_end",
]


def payload(name: str, **changes: Any) -> bytes:
    data = json.loads((PAYLOADS / f"{name}.json").read_text())
    data.update(changes)
    return json.dumps(data).encode()


def charter(home: Path, *args: str, data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """``python -m charter ARGS --home HOME`` in a subprocess, ``data`` on its stdin."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARTER_")}
    return subprocess.run(
        [sys.executable, "-m", "charter", *args, "--home", str(home)],
        input=data,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )


def hook(home: Home, data: bytes, agent: str = "cc") -> subprocess.CompletedProcess[bytes]:
    """The real command, as Claude Code runs it (stdin in; stdout, stderr, exit code out)."""
    return charter(home.settings.home, "hook", "claude-code", "--agent", agent, data=data)


async def session_entries(home: Home, session: str = SESSION) -> list[audit.EntryOut]:
    return (await audit.query(home, session=session, limit=200)).entries


async def assert_valid(home: Home) -> None:
    result = await audit.verify_out(home)
    assert result.valid, result.reason


@pytest.fixture
async def hk(tmp_path: Path) -> AsyncIterator[Home]:
    """A home on the system clock (the command runs on it) with agent ``cc``."""
    h = await make_home(tmp_path / "home")
    await identity.add_agent(h, "cc", scopes=[])
    yield h
    await h.close()


async def set_rules(home: Home, **rules: Any) -> None:
    old = await identity.get_agent(home, "cc")
    await identity.update_agent(home, "cc", policy=record.with_rules(old.policy, **rules))


async def test_a_session_is_recorded_intent_before_outcome_and_verifies(hk: Home) -> None:
    for name in SESSION_EVENTS:
        done = hook(hk, payload(name))
        assert done.returncode == 0, (name, done.stderr)
        assert done.stdout == b"", name  # no owner rule: no decision
        assert b"Traceback" not in done.stderr
    entries = await session_entries(hk)
    assert [e.action for e in entries if e.phase == "event"] == [
        "hook.session.start",
        "hook.prompt",
        "hook.event",
        "hook.subagent.stop",
        "hook.stop",
        "hook.session.end",
    ]
    agent = await identity.get_agent(hk, "cc")
    assert {e.actor for e in entries} == {agent.agent_id}
    assert {e.kid for e in entries} == {agent.kid}  # signed by the agent's key
    tools = [e for e in entries if e.action == "hook.tool"]
    assert len(tools) == 14
    for intent, outcome in zip(tools[::2], tools[1::2], strict=True):
        assert (intent.phase, outcome.phase) == ("intent", "outcome")
        assert intent.call == outcome.call and intent.call is not None
        assert intent.args["tool"] == outcome.args["tool"]
        assert intent.args_hash is not None and outcome.args_hash is not None
        assert outcome.seq > intent.seq
    by_tool = {e.args["tool"]: e for e in tools if e.phase == "intent"}
    assert set(by_tool) == {
        "Bash",
        "Read",
        "Edit",
        "Write",
        "WebFetch",
        "mcp__github__create_issue",
    }
    assert by_tool["WebFetch"].args["input"]["url"] == "https://docs.example.com/api/v2"
    failed = next(e for e in tools if e.call == "toolu_01ABC123" and e.phase == "outcome")
    assert (failed.outcome, failed.args["interrupted"]) == ("error", False)
    assert failed.reason
    ok = next(e for e in tools if e.call == "toolu_01LS" and e.phase == "outcome")
    assert ok.outcome == "ok" and ok.result_hash is not None
    ls_intent = next(e for e in tools if e.call == "toolu_01LS" and e.phase == "intent")
    assert ls_intent.args_hash == ok.args_hash  # the same input: the same hash
    prompt = next(e for e in entries if e.action == "hook.prompt")
    text = json.loads((PAYLOADS / "user_prompt_submit.json").read_text())["prompt"]
    assert prompt.args["chars"] == len(text) and "text" not in prompt.args  # hash only
    await assert_valid(hk)


async def test_deny_rule_denies_rm_and_records_it_and_allows_ls(hk: Home) -> None:
    done = charter(hk.settings.home, "agent", "update", "cc", "--hook-deny", "Bash(rm:*)")
    assert done.returncode == 0, done.stderr
    denied = hook(hk, payload("pre_tool_use_bash_rm"))
    assert denied.returncode == 0, denied.stderr
    answer = json.loads(denied.stdout)["hookSpecificOutput"]
    assert answer["permissionDecision"] == "deny"
    assert "Bash(rm:*)" in answer["permissionDecisionReason"]
    allowed = hook(hk, payload("pre_tool_use_bash_ls"))
    assert (allowed.returncode, allowed.stdout) == (0, b"")
    entries = [e for e in await session_entries(hk) if e.action == "hook.tool"]
    assert [(e.call, e.phase, e.outcome) for e in entries] == [
        ("toolu_01RM", "intent", None),
        ("toolu_01RM", "outcome", "denied"),
        ("toolu_01LS", "intent", None),
    ]
    assert entries[0].args["decision"] == "deny" and entries[0].args["rules"] == ["Bash(rm:*)"]
    assert "decision" not in entries[2].args
    # The rule is part of the signed charter an auditor sees.
    assert (await identity.get_agent(hk, "cc")).policy["hooks"] == {"deny": ["Bash(rm:*)"]}
    await assert_valid(hk)


async def test_ask_rule_asks(hk: Home) -> None:
    await set_rules(hk, ask=["WebFetch(domain:example.com)"])
    done = hook(hk, payload("pre_tool_use_webfetch"))
    assert json.loads(done.stdout)["hookSpecificOutput"]["permissionDecision"] == "ask"
    assert hook(hk, payload("pre_tool_use_mcp")).stdout == b""


def test_rules_that_cannot_take_effect_are_refused() -> None:
    with pytest.raises(RuleError, match="case-sensitive"):
        record.with_rules({}, deny=["bash(rm:*)"])
    with pytest.raises(RuleError):
        record.with_rules({}, ask=["Write(./x)"])
    policy = record.with_rules({"email": "x"}, deny=["Bash(rm:*)"], prompt_text=True)
    assert policy == {"email": "x", "hooks": {"deny": ["Bash(rm:*)"], "prompt_text": True}}
    assert record.with_rules(policy, deny=[], prompt_text=False) == {"email": "x"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", b"not valid JSON"),
        (b"[1, 2]", b"must be a JSON object"),
        (b'{"hook_event_name": "PreToolUse", "session_id": "s", "session_id": "t"}', b"duplicate"),
        (b'{"hook_event_name": "PreToolUse", "session_id": "s", "tool_name": "Bash",'
         b' "tool_input": {"n": NaN}}', b"NaN"),
        (b'{"hook_event_name": "PreToolUse", "session_id": "s", "tool_name": "Bash",'
         b' "tool_input": "rm -rf /"}', b"tool_input must be a JSON object"),
        (b'{"hook_event_name": "PreToolUse", "session_id": "s", "tool_name": "Bash",'
         b' "tool_input": ' + b'{"a":' * 200 + b"1" + b"}" * 200 + b"}", b"nested"),
        (b"\xff\xfe", b"not UTF-8"),
    ],
    ids=["not-json", "not-object", "duplicate", "nan", "wrong-type", "deep", "not-utf8"],
)  # fmt: skip
async def test_hostile_pre_tool_use_fails_closed_with_one_line(
    hk: Home, data: bytes, message: bytes
) -> None:
    size = await hk.read(lambda tx: tx.queries.size())
    done = hook(hk, data)
    assert done.returncode == 2  # Claude Code blocks the tool
    assert message in done.stderr
    assert done.stderr.count(b"\n") == 1 and b"Traceback" not in done.stderr
    assert done.stdout == b""
    assert await hk.read(lambda tx: tx.queries.size()) == size
    await assert_valid(hk)


async def test_huge_payload_fails_closed_without_reading_it_all(hk: Home) -> None:
    data = payload("pre_tool_use_write", tool_input={"content": "x" * (9 * 1024 * 1024)})
    done = hook(hk, data)
    assert done.returncode == 2
    assert b"larger than" in done.stderr and b"Traceback" not in done.stderr
    await assert_valid(hk)


async def test_a_big_write_is_recorded_as_a_bounded_summary(hk: Home) -> None:
    content = "line\n" * 200_000  # 1 MB: under the payload bound, far over a summary's
    done = hook(
        hk, payload("pre_tool_use_write", tool_input={"file_path": "/a", "content": content})
    )
    assert done.returncode == 0, done.stderr
    (intent,) = await session_entries(hk)
    assert len(json.dumps(intent.args)) < 5000
    assert "sha256:" in intent.args["input"]["content"]


async def test_a_malformed_non_blocking_event_is_a_non_blocking_error(hk: Home) -> None:
    done = hook(hk, b'{"hook_event_name": "Stop", "session_id": 7}')
    assert done.returncode == 1  # exit 2 after Stop would keep Claude working
    assert b"session_id must be a string" in done.stderr


async def test_revoked_agent_fails_closed_and_the_refusal_is_recorded(hk: Home) -> None:
    await identity.revoke_agent(hk, "cc", reason="test")
    done = hook(hk, payload("pre_tool_use_bash_ls"))
    assert done.returncode == 2
    assert b"revoked" in done.stderr
    (refusal,) = await session_entries(hk)
    assert (refusal.outcome, refusal.kid) == ("denied", hk.log_key.kid)  # not the agent's
    await assert_valid(hk)


async def test_unknown_agent_or_home_fails_closed(hk: Home, tmp_path: Path) -> None:
    done = hook(hk, payload("pre_tool_use_bash_ls"), agent="nobody")
    assert done.returncode == 2 and b"no agent named 'nobody'" in done.stderr
    missing = charter(
        tmp_path / "nowhere", "hook", "claude-code", "--agent", "cc",
        data=payload("pre_tool_use_bash_ls"),
    )  # fmt: skip
    assert missing.returncode == 2 and b"Traceback" not in missing.stderr
    assert missing.stderr.count(b"\n") == 1


async def test_vault_values_never_reach_the_ledger(hk: Home) -> None:
    await vault.set_secret(hk, "stripe", SECRET.encode())
    await set_rules(hk, prompt_text=True)
    command = f"curl -H 'Authorization: Bearer {SECRET}' https://api.stripe.com"
    pre = payload("pre_tool_use_bash", tool_input={"command": command})
    assert hook(hk, pre).returncode == 0
    post = payload(
        "post_tool_use_bash", tool_use_id="toolu_01ABC123", tool_input={"command": command}
    )
    assert hook(hk, post).returncode == 0
    prompt = payload("user_prompt_submit", prompt=f"use the key {SECRET} please")
    assert hook(hk, prompt).returncode == 0
    entries = await session_entries(hk)
    assert len(entries) == 3
    bodies = await hk.read(lambda tx: [tx.ledger.get(e.seq) for e in entries])
    for entry in bodies:
        assert entry is not None and SECRET.encode() not in entry.body
    assert "[REDACTED:stripe]" in entries[0].args["input"]["command"]
    assert entries[2].args["text"] == "use the key [REDACTED:stripe] please"
    await assert_valid(hk)


async def test_session_filter_reads_one_session_back(hk: Home) -> None:
    for session in ("s-one", "s-two", "s-one"):
        assert hook(hk, payload("pre_tool_use_bash_ls", session_id=session)).returncode == 0
    # An entry whose arguments merely mention the session is not in it.
    decoy = payload("pre_tool_use_mcp", session_id="s-two", tool_input={"session": "s-one"})
    assert hook(hk, decoy).returncode == 0
    one = await session_entries(hk, "s-one")
    assert len(one) == 2 and all(e.args["tool"] == "Bash" for e in one)
    page = await audit.query(hk, session="s-one", limit=1)
    assert len(page.entries) == 1 and page.next_cursor == one[1].seq
    assert len(await session_entries(hk, "s-two")) == 2
    assert await session_entries(hk, "nope") == []
    tail = charter(hk.settings.home, "audit", "tail", "--session", "s-one", "--json")
    assert tail.returncode == 0, tail.stderr
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [line["seq"] for line in lines] == [e.seq for e in one]


async def test_audit_tail_shows_a_session_as_a_timeline(hk: Home) -> None:
    await set_rules(hk, deny=["Bash(rm:*)"])
    for name in ("user_prompt_submit", "pre_tool_use_bash_rm", "pre_tool_use_bash_ls"):
        assert hook(hk, payload(name)).returncode == 0
    markup = payload("pre_tool_use_bash_ls", tool_input={"command": "echo [red]x[/red]"})
    assert hook(hk, markup).returncode == 0
    tail = charter(hk.settings.home, "audit", "tail", "--session", SESSION)
    assert tail.returncode == 0, tail.stderr
    text = tail.stdout.decode()
    assert "hook.prompt" in text and "chars)" in text
    assert "Bash: rm -rf" in text and "(deny)" in text  # the table may wrap a cell
    assert "denied" in text and "Bash: ls -la" in text
    assert "echo [red]x[/red]" in text  # agent-written text is shown, not interpreted


async def test_audit_query_tool_filters_by_session_and_shows_only_own_entries(
    home: Home, mode: str
) -> None:
    from mcp import Client

    from charter.testing import server_for
    from charter.tools.hooks.events import parse_event

    for agent, session in (("alpha", "s-a"), ("beta", "s-a"), ("alpha", "s-b")):
        who = await record.load_hook_agent(home, agent)
        event = parse_event(payload("pre_tool_use_bash_ls", session_id=session))
        drafts, _ = record.plan(who, event, [])
        await home.store.append(drafts)
    async with Client(await server_for(home, "alpha"), mode=mode) as client:
        result = await client.call_tool("audit_query", {"session": "s-a"})
    assert not result.is_error
    page = result.structured_content
    assert page is not None
    (entry,) = page["entries"]  # alpha's own, of that session only
    assert entry["action"] == "hook.tool" and entry["actor"].endswith("/alpha")
    await assert_valid(home)


async def test_a_session_no_entry_can_hold_finds_nothing(hk: Home) -> None:
    assert hook(hk, payload("pre_tool_use_bash_ls")).returncode == 0
    for odd in ("\ud800", "", "a" * 10_000, '"session":"abc123"'):
        assert (await audit.query(hk, session=odd)).entries == []


async def test_an_unknown_event_with_hostile_field_names_is_recorded(hk: Home) -> None:
    data = json.dumps(
        {"hook_event_name": "Notification", "session_id": SESSION, "a\u0000b": 1, "\ud800": 2}
    ).encode()
    done = hook(hk, data)
    assert done.returncode == 0, done.stderr
    (entry,) = await session_entries(hk)
    assert entry.action == "hook.event" and len(entry.args["fields"]) == 4
    await assert_valid(hk)


async def test_a_sub_agent_records_its_own_session(hk: Home) -> None:
    """A sub-agent's charter is signed by its parent: the hook verifies that chain up to the
    owner and records under the sub-agent's own key; revoking the parent stops it."""
    from mcp import Client

    from charter.testing import server_for

    await identity.update_agent(hk, "cc", scopes=["agent:delegate", "audit:read"])
    async with Client(await server_for(hk, "cc")) as client:
        made = await client.call_tool("agent_delegate", {"name": "worker", "scopes": []})
    assert not made.is_error, made.content
    done = hook(hk, payload("pre_tool_use_bash_ls"), agent="worker")
    assert done.returncode == 0, done.stderr
    (entry,) = await session_entries(hk)
    worker = await identity.load_agent(hk, "worker")
    assert (entry.actor, entry.kid) == (worker.agent_id, worker.key.kid)
    await identity.revoke_agent(hk, "cc", reason="parent gone")
    refused = hook(hk, payload("pre_tool_use_bash_ls"), agent="worker")
    assert refused.returncode == 2 and b"revoked" in refused.stderr
    await assert_valid(hk)
