"""One Claude Code hook event, parsed from the JSON Claude Code writes on the hook's stdin.

Every event carries ``hook_event_name`` and ``session_id`` (and usually ``transcript_path``,
``cwd``, ``permission_mode``); each event adds its own fields (Claude Code's hooks reference):

- ``UserPromptSubmit``: ``prompt``.
- ``PreToolUse``: ``tool_name``, ``tool_input`` (an object), ``tool_use_id``.
- ``PostToolUse``: the same plus ``tool_response`` (any JSON).
- ``PostToolUseFailure``: the same as PreToolUse plus ``error`` and ``is_interrupt``.
- ``SessionStart``: ``source`` (startup, resume, clear, compact), ``model``.
- ``SessionEnd``: ``reason`` (clear, logout, prompt_input_exit, other…).
- ``Stop`` / ``SubagentStop``: ``stop_hook_active``; SubagentStop also ``agent_id``,
  ``agent_type``, ``agent_transcript_path``; both may carry ``last_assistant_message``.

Any other event name (Notification, PreCompact, PermissionRequest, ones added later) parses
to a :class:`GenericEvent` holding only its name, session and the names of its fields: it is
never a crash. A payload that is not JSON, too big, nested too deep, has duplicate keys or a
field of the wrong type raises :class:`HookInputError` with a one-line message that names
the field but never echoes a value (a value may hold a secret).

Summaries for the ledger (:func:`summarize_tool_input`) are bounded, redact vault values in
every form :class:`~charter.tools.vault.redact.Redactor` knows, and replace long strings by
a prefix plus the SHA-256 of the whole (redacted) string. :func:`content_hash` hashes a
prompt or a tool response from its canonical JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import FrozenInstanceError
from typing import TYPE_CHECKING, Any, ClassVar

from charter.errors import InvalidInput
from charter.evidence.canonical import MAX_SAFE_INT, canonical_json
from charter.storage.vault_values import SecretValue

if TYPE_CHECKING:
    from charter.tools.vault.redact import Redactor

#: Largest hook payload accepted (a Write of a big file carries the whole file).
MAX_EVENT_BYTES = 8 * 1024 * 1024
#: Deepest nesting accepted in a payload.
MAX_DEPTH = 64
#: Longest id (session, tool use, agent) and tool or event name accepted.
MAX_ID_CHARS = 256

#: A string longer than this is cut in a summary (prefix + its SHA-256).
SUMMARY_MAX_CHARS = 200
#: Items of one object or list kept in a summary; the rest are counted.
SUMMARY_MAX_ITEMS = 32
#: Depth below which a summary shows only the hash of a value.
SUMMARY_MAX_DEPTH = 4
#: Bound on the canonical size of a whole summary.
SUMMARY_MAX_BYTES = 4096


class HookInputError(InvalidInput):
    """The hook payload is malformed; the message is one line and holds no value."""


class HookEvent:
    """What every hook event carries. ``repr`` shows no content (prompts, inputs, responses
    may hold secrets), only names and ids.

    Frozen value objects built from keyword arguments (every field required). Plain slotted
    classes rather than dataclasses: creating ten dataclasses costs about 20 ms at import,
    paid by the hook command on every tool call (issue 23's lean import path).
    """

    __slots__ = (
        "agent_id",
        "agent_type",
        "cwd",
        "event",
        "permission_mode",
        "session_id",
        "transcript_path",
    )
    #: Fields ``repr`` never shows (content, not ids).
    _HIDDEN: ClassVar[frozenset[str]] = frozenset()
    _NAMES: ClassVar[tuple[str, ...]] = ()

    event: str
    session_id: str
    transcript_path: str | None
    cwd: str | None
    permission_mode: str | None
    #: Set when the event comes from inside a subagent (newer Claude Code versions).
    agent_id: str | None
    agent_type: str | None

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls._NAMES = tuple(
            n for c in reversed(cls.__mro__) for n in c.__dict__.get("__slots__", ())
        )

    def __init__(self, **values: Any) -> None:
        names = self._NAMES or HookEvent.__slots__
        missing = [n for n in names if n not in values]
        extra = sorted(set(values) - set(names))
        if missing or extra:
            raise TypeError(f"{type(self).__name__}: missing {missing}, unexpected {extra}")
        for name in names:
            object.__setattr__(self, name, values[name])

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in self._NAMES or HookEvent.__slots__)

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, HookEvent)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self.event, self.session_id, getattr(self, "tool_use_id", None)))

    def __repr__(self) -> str:
        shown = (n for n in self._NAMES or HookEvent.__slots__ if n not in self._HIDDEN)
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in shown)})"


class UserPromptSubmit(HookEvent):
    __slots__ = ("prompt",)
    _HIDDEN = frozenset(__slots__)
    prompt: str


class PreToolUse(HookEvent):
    __slots__ = ("tool_input", "tool_name", "tool_use_id")
    _HIDDEN = frozenset({"tool_input"})
    tool_name: str
    tool_input: Mapping[str, Any]
    tool_use_id: str | None


class PostToolUse(HookEvent):
    __slots__ = ("tool_input", "tool_name", "tool_response", "tool_use_id")
    _HIDDEN = frozenset({"tool_input", "tool_response"})
    tool_name: str
    tool_input: Mapping[str, Any]
    tool_use_id: str | None
    tool_response: Any


class PostToolUseFailure(HookEvent):
    __slots__ = ("error", "is_interrupt", "tool_input", "tool_name", "tool_use_id")
    _HIDDEN = frozenset({"tool_input", "error"})
    tool_name: str
    tool_input: Mapping[str, Any]
    tool_use_id: str | None
    error: str
    is_interrupt: bool


class SessionStart(HookEvent):
    __slots__ = ("model", "source")
    source: str | None
    model: str | None


class SessionEnd(HookEvent):
    __slots__ = ("reason",)
    reason: str | None


class Stop(HookEvent):
    __slots__ = ("last_assistant_message", "stop_hook_active")
    _HIDDEN = frozenset({"last_assistant_message"})
    stop_hook_active: bool
    last_assistant_message: str | None


class SubagentStop(HookEvent):
    __slots__ = ("agent_transcript_path", "last_assistant_message", "stop_hook_active")
    _HIDDEN = frozenset({"last_assistant_message"})
    stop_hook_active: bool
    last_assistant_message: str | None
    agent_transcript_path: str | None


class GenericEvent(HookEvent):
    """An event this module does not model: its name, session and field names only."""

    __slots__ = ("fields",)
    fields: tuple[str, ...]


_TOOL_EVENTS = ("PreToolUse", "PostToolUse", "PostToolUseFailure")


def parse_event(data: bytes | str) -> HookEvent:
    """Parse one hook event from the bytes Claude Code wrote on stdin.

    Raises:
        HookInputError: not UTF-8 JSON, too big or deep, duplicate keys, not an object, a
            missing field or one of the wrong type.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if len(raw) > MAX_EVENT_BYTES:
        raise HookInputError(f"hook payload is larger than {MAX_EVENT_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HookInputError("hook payload is not UTF-8") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except _Refused as exc:
        raise HookInputError(str(exc)) from None
    except RecursionError:
        raise HookInputError("hook payload is nested too deeply") from None
    except json.JSONDecodeError as exc:  # its position only, never the text
        raise HookInputError(
            f"hook payload is not valid JSON (line {exc.lineno} column {exc.colno})"
        ) from None
    if not isinstance(value, dict):
        raise HookInputError("hook payload must be a JSON object")
    if _depth(value) > MAX_DEPTH:
        raise HookInputError(f"hook payload is nested deeper than {MAX_DEPTH} levels")
    return event_from_dict(value)


def event_from_dict(payload: Mapping[str, Any]) -> HookEvent:
    """Build the typed event of an already-parsed payload (see :func:`parse_event`)."""
    f = _Fields(payload)
    name = f.ident("hook_event_name", required=True)
    assert name is not None
    f.event = name
    common: dict[str, Any] = {
        "event": name,
        "session_id": f.ident("session_id", required=True),
        "transcript_path": f.text("transcript_path"),
        "cwd": f.text("cwd"),
        "permission_mode": f.ident("permission_mode"),
        "agent_id": f.ident("agent_id"),
        "agent_type": f.ident("agent_type"),
    }
    if name in _TOOL_EVENTS:
        common |= {
            "tool_name": f.ident("tool_name", required=True),
            "tool_input": f.object("tool_input"),
            "tool_use_id": f.ident("tool_use_id"),
        }
    if name == "UserPromptSubmit":
        return UserPromptSubmit(**common, prompt=f.text("prompt", required=True) or "")
    if name == "PreToolUse":
        return PreToolUse(**common)
    if name == "PostToolUse":
        return PostToolUse(**common, tool_response=payload.get("tool_response"))
    if name == "PostToolUseFailure":
        return PostToolUseFailure(
            **common, error=f.text("error") or "", is_interrupt=f.flag("is_interrupt")
        )
    if name == "SessionStart":
        return SessionStart(**common, source=f.ident("source"), model=f.ident("model"))
    if name == "SessionEnd":
        return SessionEnd(**common, reason=f.ident("reason"))
    stop: dict[str, Any] = {
        "stop_hook_active": f.flag("stop_hook_active"),
        "last_assistant_message": f.text("last_assistant_message"),
    }
    if name == "Stop":
        return Stop(**common, **stop)
    if name == "SubagentStop":
        return SubagentStop(**common, **stop, agent_transcript_path=f.text("agent_transcript_path"))
    return GenericEvent(**common, fields=tuple(sorted(_key(k) for k in payload)))


class _Refused(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            # Two readers of one payload could each see another value: refuse it.
            raise _Refused("hook payload has a duplicate key")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise _Refused(f"hook payload holds {name}, which JSON does not allow")


def _depth(value: Any) -> int:
    """Nesting depth of a parsed value, iteratively (no recursion on hostile input)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


class _Fields:
    """Typed access to a payload's fields, with one-line errors naming the field."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        self.payload = payload
        self.event = "hook event"

    def _fail(self, name: str, what: str) -> HookInputError:
        return HookInputError(f"{self.event}: {name} {what}")

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self.payload.get(name)
        if value is None:
            if required:
                raise self._fail(name, "is missing")
            return None
        if not isinstance(value, str):
            raise self._fail(name, "must be a string")
        return value

    def ident(self, name: str, *, required: bool = False) -> str | None:
        value = self.text(name, required=required)
        if value is None:
            return None
        if required and not value:
            raise self._fail(name, "is empty")
        if len(value) > MAX_ID_CHARS:
            raise self._fail(name, f"is longer than {MAX_ID_CHARS} characters")
        if not value.isprintable():
            raise self._fail(name, "holds control characters")
        return value

    def object(self, name: str) -> dict[str, Any]:
        value = self.payload.get(name)
        if not isinstance(value, dict):
            raise self._fail(name, "must be a JSON object")
        return value

    def flag(self, name: str) -> bool:
        value = self.payload.get(name, False)
        if not isinstance(value, bool):
            raise self._fail(name, "must be true or false")
        return value


# -- hashes and summaries ------------------------------------------------------------------


def content_hash(value: Any) -> str:
    """Hex SHA-256 of ``value``'s canonical JSON (a prompt, a tool response).

    A value outside the canonical domain (a float, a huge integer, a lone surrogate, a key
    outside the BMP) is hashed from its sorted, compact, ASCII JSON instead. Both encodings
    parse back to the value and no canonical text holds a float or a ``\\uD800`` escape,
    so distinct values never share bytes; hashing hostile input never fails.
    """
    try:
        data = canonical_json(value)
    except ValueError:
        data = json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr).encode()
    return hashlib.sha256(data).hexdigest()


def summarize_tool_input(
    tool_input: Mapping[str, Any], secrets: Iterable[SecretValue] = ()
) -> dict[str, Any]:
    """A redacted, bounded summary of a tool input, always recordable in the ledger.

    Every string (object keys too) first has each ``secrets`` value replaced by
    ``[REDACTED:NAME]`` in any form the vault's redactor matches (raw, percent-encoded,
    JSON-escaped, base64, hex). Then a string longer than :data:`SUMMARY_MAX_CHARS` keeps
    its start, followed by ``…[cut N chars, sha256:HEX]`` where HEX is the hash of the
    whole *redacted* string (a hash of the raw one would let anyone confirm a guess of a
    secret). Objects and lists keep :data:`SUMMARY_MAX_ITEMS` items, nesting stops at
    :data:`SUMMARY_MAX_DEPTH`, and a summary whose canonical JSON still passes
    :data:`SUMMARY_MAX_BYTES` is replaced by its field names and hash.
    """
    redactor = _redactor(secrets)
    for max_chars in (SUMMARY_MAX_CHARS, SUMMARY_MAX_CHARS // 4):
        out = _summary(dict(tool_input), redactor, max_chars, 0)
        assert isinstance(out, dict)
        body = canonical_json(out)
        if len(body) <= SUMMARY_MAX_BYTES:
            return out
    keys = [_text(redactor, _key(k), SUMMARY_MAX_CHARS // 4) for k in tool_input]
    return {
        "_summary": "too large",
        "keys": sorted(keys)[:SUMMARY_MAX_ITEMS],
        "sha256": hashlib.sha256(body).hexdigest(),
    }


def redacted_text(text: str, secrets: Iterable[SecretValue] = (), *, max_chars: int) -> str:
    """``text`` as a summary holds a string: vault values redacted, valid Unicode, no NUL,
    cut after ``max_chars`` characters with the SHA-256 of the whole redacted text."""
    return _text(_redactor(secrets), text, max_chars)


def redacted_hash(value: Any, secrets: Iterable[SecretValue] = ()) -> str:
    """:func:`content_hash` of ``value`` with every vault value redacted in its strings and
    keys: what the ledger holds for a tool input or response (a hash of the raw value would
    let anyone who guesses the rest of it confirm a guess of a secret)."""
    secrets = list(secrets)
    if not secrets:
        return content_hash(value)
    return content_hash(_redacted(value, _redactor(secrets)))


class _NoSecrets:
    """The redactor of a home whose vault holds no value (and the lean import path)."""

    def redact_text(self, text: str) -> str:
        return text


def _redactor(secrets: Iterable[SecretValue]) -> Redactor | _NoSecrets:
    values = list(secrets)
    if not values:
        return _NoSecrets()
    # Imported only when there is something to redact: the vault package pulls in pydantic
    # and HTTP code a hook with an empty vault never needs (issue 23: a lean import path).
    from charter.tools.vault.redact import Redactor

    return Redactor(values)


def _summary(value: Any, redactor: Redactor | _NoSecrets, max_chars: int, depth: int) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) <= MAX_SAFE_INT else str(value)
    if isinstance(value, float):
        return repr(value)  # the ledger holds no floats
    if isinstance(value, str):
        return _text(redactor, value, max_chars)
    if depth >= SUMMARY_MAX_DEPTH:
        return {"sha256": content_hash(_redacted(value, redactor))}
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        names = sorted(value, key=_key)
        for name in names[:SUMMARY_MAX_ITEMS]:
            key = _text(redactor, _key(name), max_chars)
            out[key] = _summary(value[name], redactor, max_chars, depth + 1)
        if len(names) > SUMMARY_MAX_ITEMS:
            out["…"] = f"{len(names) - SUMMARY_MAX_ITEMS} more fields"
        return out
    if isinstance(value, list):
        items = [_summary(v, redactor, max_chars, depth + 1) for v in value[:SUMMARY_MAX_ITEMS]]
        if len(value) > SUMMARY_MAX_ITEMS:
            items.append(f"…{len(value) - SUMMARY_MAX_ITEMS} more items")
        return items
    return _text(redactor, repr(type(value).__name__), max_chars)


def _redacted(value: Any, redactor: Redactor | _NoSecrets) -> Any:
    """``value`` with every string (and key) redacted, otherwise unchanged."""
    if isinstance(value, str):
        return redactor.redact_text(_valid(value))
    if isinstance(value, dict):
        return {
            redactor.redact_text(_valid(str(k))): _redacted(v, redactor) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redacted(v, redactor) for v in value]
    return value


def _text(redactor: Redactor | _NoSecrets, value: str, max_chars: int) -> str:
    """A string the ledger can hold: redacted, valid Unicode, no NUL, cut with its hash."""
    # Valid Unicode first (lone surrogates become U+FFFD; no secret holds one), then redact.
    clean = redactor.redact_text(_valid(value)).replace("\x00", "\ufffd")
    if len(clean) <= max_chars:
        return clean
    digest = hashlib.sha256(clean.encode("utf-8")).hexdigest()
    return f"{clean[:max_chars]}…[cut {len(clean) - max_chars} chars, sha256:{digest}]"


def _valid(text: str) -> str:
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _key(name: Any) -> str:
    """An object key usable in canonical JSON (in the BMP): others as JSON escapes."""
    text = str(name)
    if all(ord(ch) <= 0xFFFF for ch in text):
        return text
    return json.dumps(text)[1:-1]
