"""Claude Code hook events: documented sample payloads parse to typed events, hostile ones to a
one-line error; summaries are bounded and never hold a vault value; hashes are canonical."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from charter.evidence.canonical import canonical_json
from charter.storage.vault_values import SecretValue
from charter.tools.hooks import events
from charter.tools.hooks.events import (
    GenericEvent,
    HookInputError,
    PostToolUse,
    PostToolUseFailure,
    PreToolUse,
    SessionEnd,
    SessionStart,
    Stop,
    SubagentStop,
    UserPromptSubmit,
    content_hash,
    parse_event,
    summarize_tool_input,
)

PAYLOADS = Path(__file__).parent / "hook_payloads"
SECRET = "sk-live-7Qm2vXr9Lp4Tz8Kd"


def payload(name: str) -> bytes:
    return (PAYLOADS / f"{name}.json").read_bytes()


def secrets() -> list[SecretValue]:
    return [SecretValue("stripe", 1, SECRET.encode())]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("user_prompt_submit", UserPromptSubmit),
        ("pre_tool_use_bash", PreToolUse),
        ("pre_tool_use_write", PreToolUse),
        ("pre_tool_use_edit", PreToolUse),
        ("pre_tool_use_read", PreToolUse),
        ("pre_tool_use_webfetch", PreToolUse),
        ("pre_tool_use_mcp", PreToolUse),
        ("post_tool_use_write", PostToolUse),
        ("post_tool_use_bash", PostToolUse),
        ("post_tool_use_failure_bash", PostToolUseFailure),
        ("session_start", SessionStart),
        ("session_end", SessionEnd),
        ("stop", Stop),
        ("subagent_stop", SubagentStop),
        ("notification", GenericEvent),
    ],
)
def test_every_documented_event_parses_to_its_type(name: str, kind: type) -> None:
    raw = json.loads(payload(name))
    event = parse_event(payload(name))
    assert type(event) is kind
    assert event.event == raw["hook_event_name"]
    assert event.session_id == "abc123"
    assert event.cwd == raw["cwd"]
    assert summarize_tool_input(getattr(event, "tool_input", {})) is not None
    canonical_json(summarize_tool_input(getattr(event, "tool_input", {})))  # recordable


def test_the_fields_of_each_event_are_read() -> None:
    pre = parse_event(payload("pre_tool_use_bash"))
    assert isinstance(pre, PreToolUse)
    assert (pre.tool_name, pre.tool_use_id, pre.permission_mode) == (
        "Bash",
        "toolu_01ABC123",
        "default",
    )
    assert pre.tool_input["command"] == "npm test"
    post = parse_event(payload("post_tool_use_write"))
    assert isinstance(post, PostToolUse)
    assert post.tool_response == {
        "filePath": "/home/user/my-project/src/factorial.py",
        "success": True,
    }
    failure = parse_event(payload("post_tool_use_failure_bash"))
    assert isinstance(failure, PostToolUseFailure)
    assert failure.error.startswith("Command exited") and failure.is_interrupt is False
    start = parse_event(payload("session_start"))
    assert isinstance(start, SessionStart)
    assert (start.source, start.model, start.permission_mode) == (
        "startup",
        "claude-sonnet-4-6",
        None,
    )
    end = parse_event(payload("session_end"))
    assert isinstance(end, SessionEnd) and end.reason == "prompt_input_exit"
    stop = parse_event(payload("stop"))
    assert isinstance(stop, Stop) and stop.stop_hook_active is True
    sub = parse_event(payload("subagent_stop"))
    assert isinstance(sub, SubagentStop)
    assert (sub.agent_id, sub.agent_type, sub.stop_hook_active) == ("def456", "Explore", False)
    assert sub.agent_transcript_path is not None
    prompt = parse_event(payload("user_prompt_submit"))
    assert isinstance(prompt, UserPromptSubmit) and "factorial" in prompt.prompt


def test_an_unknown_event_is_generic_never_a_crash() -> None:
    event = parse_event(
        json.dumps(
            {
                "hook_event_name": "SomethingNew",
                "session_id": "s1",
                "surprise": {"deep": [1, 2.5, None]},
                "\U0001f600": "emoji key",
            }
        )
    )
    assert isinstance(event, GenericEvent)
    assert event.event == "SomethingNew"
    assert "surprise" in event.fields and "hook_event_name" in event.fields
    canonical_json(list(event.fields))  # every field name is recordable
    generic = parse_event(payload("notification"))
    assert isinstance(generic, GenericEvent) and "message" in generic.fields


def _pre(**changes: Any) -> bytes:
    body: dict[str, Any] = json.loads(payload("pre_tool_use_bash"))
    body.update(changes)
    return json.dumps(body).encode()


HOSTILE = [
    (b"", "not valid JSON"),
    (b"{", "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[1, 2]", "must be a JSON object"),
    (b'"just a string"', "must be a JSON object"),
    (b'{"hook_event_name": "Stop", "session_id": "a", "session_id": "b"}', "duplicate key"),
    (b'{"hook_event_name": "Stop", "session_id": "a", "x": NaN}', "NaN"),
    (b'{"hook_event_name": "Stop", "session_id": "a", "x": Infinity}', "Infinity"),
    (b"[" * 200_000 + b"]" * 200_000, "nested too deep"),
    (
        b'{"hook_event_name": "Stop", "session_id": "a", "x": ' + b"[" * 70 + b"]" * 70 + b"}",
        "deeper",
    ),
    (b'{"session_id": "a"}', "hook_event_name is missing"),
    (b'{"hook_event_name": "Stop"}', "session_id is missing"),
    (b'{"hook_event_name": 7, "session_id": "a"}', "hook_event_name must be a string"),
    (b'{"hook_event_name": "", "session_id": "a"}', "hook_event_name is empty"),
    (_pre(tool_input=f"rm -rf / {SECRET}"), "tool_input must be a JSON object"),
    (_pre(tool_input=None), "tool_input must be a JSON object"),
    (_pre(tool_name=None), "tool_name is missing"),
    (_pre(tool_name=["Bash"]), "tool_name must be a string"),
    (_pre(session_id=f"evil\n{SECRET}"), "session_id holds control characters"),
    (_pre(session_id="x" * 300), "session_id is longer than"),
    (_pre(tool_use_id=12), "tool_use_id must be a string"),
    (_pre(hook_event_name="PostToolUseFailure", is_interrupt=SECRET), "must be true or false"),
    (_pre(hook_event_name="UserPromptSubmit"), "prompt is missing"),
    (_pre(hook_event_name="UserPromptSubmit", prompt={"text": SECRET}), "must be a string"),
    (_pre(hook_event_name="Stop", stop_hook_active="yes"), "must be true or false"),
]


@pytest.mark.parametrize(("data", "expected"), HOSTILE)
def test_malformed_payloads_get_a_clear_one_line_error(data: bytes, expected: str) -> None:
    with pytest.raises(HookInputError) as caught:
        parse_event(data)
    message = caught.value.public_message
    assert expected in message
    assert "\n" not in message and len(message) < 200
    assert SECRET not in message  # a field is named, never its value


def test_a_payload_past_the_size_limit_is_refused_before_parsing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events, "MAX_EVENT_BYTES", 1000)
    big = _pre(tool_input={"command": "x" * 2000})
    with pytest.raises(HookInputError, match="larger than 1000 bytes"):
        parse_event(big)
    assert isinstance(parse_event(payload("pre_tool_use_bash")), PreToolUse)


def test_repr_shows_ids_never_content() -> None:
    shown = {
        "user_prompt_submit": "factorial of a number",
        "pre_tool_use_write": "return 1 if",
        "post_tool_use_bash": "drwxr",
        "post_tool_use_failure_bash": "non-zero status",
        "stop": "src/factorial.py",
    }
    for name, content in shown.items():
        text = repr(parse_event(payload(name)))
        assert "abc123" in text and content not in text
    pre = parse_event(_pre(tool_input={"command": f"echo {SECRET}"}))
    assert SECRET not in repr(pre) and SECRET not in str(pre)


# -- summaries --------------------------------------------------------------------------------


def _recorded(summary: dict[str, Any]) -> str:
    return canonical_json(summary).decode("utf-8")


def test_a_vault_value_never_appears_in_a_summary() -> None:
    """Fails without the redaction: the value would be in the summary in every case below."""
    cases: list[dict[str, Any]] = [
        {"command": f'curl -H "Authorization: Bearer {SECRET}" https://api.example.com'},
        {"headers": [{"name": "Authorization", "value": SECRET}]},
        {SECRET: "a secret as an object key"},
        {"content": "x" * 5000 + SECRET + "y" * 10},  # past the cut
        {"content": SECRET + "z" * 5000},  # inside the kept prefix of a long string
        {"url": "https://example.com/?k=" + SECRET.replace("-", "%2D")},  # percent-encoded
        {"body": json.dumps({"k": SECRET}).replace("s", "\\u0073")},  # JSON-escaped
        {"b64": base64.b64encode(SECRET.encode()).decode()},
        {"deep": {"a": {"b": {"c": {"d": {"e": SECRET}}}}}},  # past the depth limit
        {f"k{i}": SECRET * 3 for i in range(200)},  # past the size limit
    ]
    for tool_input in cases:
        summary = summarize_tool_input(tool_input, secrets())
        text = _recorded(summary)
        assert SECRET not in text, tool_input
        assert base64.b64encode(SECRET.encode()).decode() not in text
        # The hash of a cut or hashed part is of the redacted text: no guessing oracle.
        assert hashlib.sha256(SECRET.encode()).hexdigest() not in text
        without = _recorded(summarize_tool_input(tool_input))
        assert text != without  # the redaction, and nothing else, took the value out
    summary = summarize_tool_input(cases[0], secrets())
    assert "[REDACTED:stripe]" in summary["command"]


def test_a_summary_is_bounded_and_always_recordable() -> None:
    hostile: list[dict[str, Any]] = [
        {"content": "a" * 1_000_000},
        {f"key{i}": i for i in range(10_000)},
        {"list": list(range(10_000))},
        {"nested": json.loads("[" * 60 + "]" * 60)},
        {"float": 1.5, "big": 2**80, "neg": -(2**70), "nan_str": "NaN"},
        {"lone": "\ud800 surrogate", "\udfff": "key", "\U0001f600": "astral key", "nul": "a\x00b"},
        {f"k{i}": "v" * 199 for i in range(300)},
    ]
    for tool_input in hostile:
        summary = summarize_tool_input(tool_input)
        assert len(canonical_json(summary)) <= events.SUMMARY_MAX_BYTES
    cut = summarize_tool_input({"content": "a" * 1000})["content"]
    assert cut.startswith("a" * events.SUMMARY_MAX_CHARS)
    assert f"sha256:{hashlib.sha256(b'a' * 1000).hexdigest()}" in cut
    assert summarize_tool_input({"n": 2**80, "f": 0.5}) == {"n": str(2**80), "f": "0.5"}
    short = summarize_tool_input(json.loads(payload("pre_tool_use_bash"))["tool_input"])
    assert short == {"command": "npm test", "description": "Run test suite", "timeout": 120000}


def test_content_hash_is_the_sha256_of_the_canonical_json() -> None:
    prompt = "Write a function to calculate the factorial of a number"
    assert content_hash(prompt) == hashlib.sha256(canonical_json(prompt)).hexdigest()
    response = {"stdout": "ok", "exit": 0}
    assert content_hash(response) == hashlib.sha256(canonical_json(response)).hexdigest()
    # Outside the canonical domain it still hashes, and distinct values stay distinct.
    values: list[Any] = [1, 1.0, "1", [1.5], {"a": 2**60}, "\ud800", {"\U0001f600": 1}]
    assert len({content_hash(v) for v in values}) == len(values)
