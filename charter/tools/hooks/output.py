"""What the hook answers Claude Code: stdout JSON and an exit code (Claude Code's hooks
reference).

- A PreToolUse decision is JSON on stdout with exit code 0::

      {"hookSpecificOutput": {"hookEventName": "PreToolUse",
                              "permissionDecision": "deny",
                              "permissionDecisionReason": "..."}}

  ``allow`` skips the permission prompt (Claude Code's own deny and ask rules still apply),
  ``deny`` cancels the call and shows the reason to Claude, ``ask`` shows the prompt with
  the reason to the user.
- No decision (no owner rule matched, or any other event recorded): nothing on stdout, exit
  code 0; Claude Code goes on as it would without the hook.
- Fail closed (:func:`fail_closed`): exit code 2 and the reason on stderr. For PreToolUse
  Claude Code then blocks the call and shows stderr to Claude; stdout is ignored. Used when
  the intent cannot be recorded or the payload cannot be read.
- Any other failure (:func:`failed`): exit code 1 with the reason on stderr, a non-blocking
  error Claude Code shows the user. Exit 2 is not used there: after ``Stop`` or
  ``SubagentStop`` it would keep Claude working, after ``PostToolUse`` the tool has run.

Reasons are cut to one line of at most :data:`MAX_REASON_CHARS` printable characters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # not imported at run time: the hook's lean import path (issue 23)
    from charter.tools.hooks.rules import Decision, Verdict

MAX_REASON_CHARS = 500
#: Events for which exit code 2 blocks what is about to happen, so failing closed is exit 2.
BLOCKING_EVENTS = frozenset({"PreToolUse"})


@dataclass(frozen=True, slots=True)
class HookResponse:
    """What the hook process writes and how it exits."""

    stdout: str
    stderr: str
    exit_code: int


def one_line(reason: str) -> str:
    """``reason`` as one printable line of at most :data:`MAX_REASON_CHARS` characters."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in reason).split())
    if len(text) > MAX_REASON_CHARS:
        text = text[: MAX_REASON_CHARS - 1] + "…"
    return text or "no reason given"


def pre_tool_use(decision: Decision, reason: str) -> HookResponse:
    """The PreToolUse answer for ``decision``."""
    if decision not in ("allow", "deny", "ask"):
        raise ValueError(f"unknown permission decision {decision!r}")
    body = {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": decision,
            "permissionDecisionReason": one_line(reason),
        }
    }
    return HookResponse(json.dumps(body, separators=(",", ":")) + "\n", "", 0)


def for_verdict(verdict: Verdict, *, prefix: str = "Charter: ") -> HookResponse:
    """The PreToolUse answer for a rule verdict; no decision is an empty answer."""
    if verdict.decision is None:
        return proceed()
    return pre_tool_use(verdict.decision, prefix + verdict.reason)


def proceed() -> HookResponse:
    """No decision: Claude Code goes on as without the hook."""
    return HookResponse("", "", 0)


def fail_closed(reason: str, event: str = "PreToolUse") -> HookResponse:
    """Block what ``event`` is about to do (exit 2); for an event where exit 2 blocks
    nothing useful or harms, the non-blocking :func:`failed`."""
    if event not in BLOCKING_EVENTS:
        return failed(reason)
    return HookResponse("", one_line(reason) + "\n", 2)


def failed(reason: str) -> HookResponse:
    """A non-blocking error (exit 1): Claude Code shows it and goes on."""
    return HookResponse("", one_line(reason) + "\n", 1)
