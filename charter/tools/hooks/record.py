"""Record one Claude Code hook event in the ledger, signed by the agent (issue 23).

:func:`handle` is the whole of ``charter hook claude-code``: parse the event, sign its
entries with the agent's key under its current charter, append them, and answer Claude Code
(:mod:`.output`). The entries (AUDIT-FORMAT.md, "Claude Code hooks"):

=====================  ===========  ========================================================
event                  action       phase / fields
=====================  ===========  ========================================================
UserPromptSubmit       hook.prompt  event; args: sha256 and chars of the prompt, its text
                                    (redacted, cut) only when ``policy.hooks.prompt_text``
PreToolUse             hook.tool    intent, before the tool runs; call = tool_use_id; args:
                                    tool, redacted summary of the input, the owner rules'
                                    decision. A deny adds an outcome ``denied`` in the same
                                    transaction.
PostToolUse            hook.tool    outcome ``ok``; same call; result_hash = hash of the
                                    (redacted) response; args: exit status if any
PostToolUseFailure     hook.tool    outcome ``error``; same call; reason = redacted error
SessionStart / End     hook.session.start / hook.session.end (event)
Stop / SubagentStop    hook.stop / hook.subagent.stop (event)
anything else          hook.event   event; args: its name and field names only
=====================  ===========  ========================================================

Every entry carries the Claude Code ``session_id`` in the entry's signed ``session`` field,
so a session reads back as a timeline (``charter audit tail --session``). Fail closed: for
PreToolUse, anything that stops the intent being recorded (unreadable payload, unknown or
revoked agent, locked key, busy or broken database) is exit 2, which blocks the tool.

Kept lean on purpose (a hook runs on every tool call): nothing here imports pydantic, the
MCP server or the vault's HTTP code; the vault's redactor is imported only when the vault
holds values.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from charter.errors import CharterError, ConfigError, NotFound
from charter.evidence.canonical import canonical_json
from charter.evidence.charters import CharterView
from charter.evidence.entries import Entry
from charter.home import Home
from charter.keys import KeyHandle, agent_ref
from charter.storage.ports import Draft, Tx
from charter.storage.vault import Vault
from charter.storage.vault_values import SecretValue
from charter.tools.hooks import events as ev
from charter.tools.hooks import output
from charter.tools.owners import verify_stored_charter

if TYPE_CHECKING:
    from charter.tools.hooks.rules import OwnerRules

#: Where the rules and the prompt setting live in the charter's signed policy.
POLICY_KEY = "hooks"
#: Longest prompt text kept when the policy records prompts (then its hash).
PROMPT_MAX_CHARS = 4000
#: Longest error text of a failed tool kept in ``reason``.
ERROR_MAX_CHARS = 300
_SESSION_ACTIONS = {
    "SessionStart": "hook.session.start",
    "SessionEnd": "hook.session.end",
    "Stop": "hook.stop",
    "SubagentStop": "hook.subagent.stop",
}


@dataclass(frozen=True, slots=True)
class HookAgent:
    """The agent a hook signs for: its key and current charter."""

    name: str
    key: KeyHandle
    charter: CharterView


def rules_of(policy: dict[str, Any]) -> OwnerRules:
    """The owner's hook rules in a charter's policy (``policy["hooks"]``).

    Raises:
        RuleError: a stored rule that does not parse (the charter was signed with one).
    """
    from charter.tools.hooks.rules import OwnerRules  # only when there are rules: lean path

    hooks = policy.get(POLICY_KEY)
    if not isinstance(hooks, dict):
        return OwnerRules()
    return OwnerRules.parse(deny=hooks.get("deny", ()), ask=hooks.get("ask", ()))


def with_rules(
    policy: dict[str, Any],
    *,
    deny: Sequence[str] | None = None,
    ask: Sequence[str] | None = None,
    prompt_text: bool | None = None,
) -> dict[str, Any]:
    """``policy`` with its hook rules replaced (the lists given) after checking every rule.

    Raises:
        RuleError: a rule that cannot take effect (one line, naming it).
    """
    from charter.tools.hooks.rules import OwnerRules

    current = policy.get(POLICY_KEY)
    hooks = dict(current) if isinstance(current, dict) else {}
    if deny is not None:
        hooks["deny"] = list(deny)
    if ask is not None:
        hooks["ask"] = list(ask)
    if prompt_text is not None:
        hooks["prompt_text"] = prompt_text
    OwnerRules.parse(deny=hooks.get("deny", ()), ask=hooks.get("ask", ()))
    hooks = {k: v for k, v in hooks.items() if v not in ([], False)}
    out = {k: v for k, v in policy.items() if k != POLICY_KEY}
    return out | ({POLICY_KEY: hooks} if hooks else {})


async def load_hook_agent(home: Home, name: str) -> HookAgent:
    """The agent's key and current charter, even when revoked: its entries then carry
    ``require_agent`` and the ledger writes a refusal under the log key instead.

    Raises:
        NotFound: unknown agent.  ConfigError: the charter or key do not check out.
    """

    def look(tx: Tx) -> CharterView:
        record = tx.agents.get(name)
        if record is None:
            raise NotFound(f"no agent named {name!r} (see `charter agent list`)")
        body = tx.agents.charter_body(record.charter_hash)
        if body is None:
            raise ConfigError(f"charter of agent {name!r} is missing from the database")
        try:
            view = verify_stored_charter(home, tx, json.loads(body))
        except ValueError as exc:
            raise ConfigError(f"stored charter of agent {name!r} is invalid: {exc}") from None
        if view.hash != record.charter_hash:
            raise ConfigError(f"stored charter of agent {name!r} does not match its hash")
        return view

    view = await home.read(look)
    key = KeyHandle.of(home.signer, agent_ref(name))
    if key.public_key != view.agent_key:
        raise ConfigError(f"key of agent {name!r} does not match its charter")
    return HookAgent(name, key, view)


async def vault_values(home: Home) -> list[SecretValue]:
    """Every current secret value of the home (system ones too), for redaction only.

    Raises:
        ConfigError: a vault whose master key needs a passphrase the hook does not have.
    """
    vault = Vault(home.signer, home.clock)

    def values(tx: Tx) -> list[SecretValue]:
        infos = vault.list(tx, include_system=True)
        return [vault.get(tx, info.name) for info in infos]

    return await home.read(values)


async def handle(
    home: Home, agent: str, raw: bytes, *, project_dir: str | None = None
) -> output.HookResponse:
    """Record one hook event from ``raw`` (stdin) as ``agent``; the hook's answer.

    Never raises for a Charter error: a payload or agent that cannot be recorded becomes
    :func:`output.fail_closed` (exit 2 for PreToolUse, else a non-blocking exit 1).
    """
    name = "PreToolUse"
    try:
        try:
            event = ev.parse_event(raw)
        except ev.HookInputError:
            name = event_name(raw)
            raise
        name = event.event
        who = await load_hook_agent(home, agent)
        secrets = await vault_values(home)
        drafts, answer = plan(who, event, secrets, project_dir=project_dir)
        results = await home.store.append(drafts)
    except CharterError as exc:
        return output.fail_closed(f"Charter could not record this: {exc.public_message}", name)
    for result in results:
        if not isinstance(result, Entry):
            return output.fail_closed(
                f"Charter could not record this: {result.public_message}", name
            )
    return answer


def plan(
    who: HookAgent,
    event: ev.HookEvent,
    secrets: list[SecretValue],
    *,
    project_dir: str | None = None,
) -> tuple[list[Draft], output.HookResponse]:
    """The entries to append for ``event`` and the answer once they are committed."""
    policy = who.charter.policy
    hooks = policy.get(POLICY_KEY)
    if not isinstance(hooks, dict):
        hooks = {}
    if isinstance(event, ev.PreToolUse):
        rules = rules_of(policy) if hooks.get("deny") or hooks.get("ask") else None
        return _pre_tool(who, event, secrets, rules, project_dir)
    if isinstance(event, ev.PostToolUse | ev.PostToolUseFailure):
        return [_post_tool(who, event, secrets)], output.proceed()
    if isinstance(event, ev.UserPromptSubmit):
        args: dict[str, Any] = {"sha256": ev.content_hash(event.prompt), "chars": len(event.prompt)}
        if hooks.get("prompt_text") is True:
            args["text"] = ev.redacted_text(event.prompt, secrets, max_chars=PROMPT_MAX_CHARS)
        draft = _draft(who, event, "hook.prompt", "event", args, outcome="ok")
        draft.args_hash = args["sha256"]
        return [draft], output.proceed()
    if isinstance(event, ev.GenericEvent):
        # Field names are the payload's own keys: made recordable (no NUL, valid Unicode).
        names = [ev.redacted_text(f, secrets, max_chars=64) for f in event.fields[:64]]
        args = {"event": event.event, "fields": names}
        return [_draft(who, event, "hook.event", "event", args, outcome="ok")], output.proceed()
    args = {"event": event.event}
    for attr in ("source", "model", "reason", "agent_id", "agent_type", "stop_hook_active"):
        value = getattr(event, attr, None)
        if value is not None:
            args[attr] = value
    action = _SESSION_ACTIONS.get(event.event, "hook.event")
    return [_draft(who, event, action, "event", args, outcome="ok")], output.proceed()


def _pre_tool(
    who: HookAgent,
    event: ev.PreToolUse,
    secrets: list[SecretValue],
    rules: OwnerRules | None,
    project_dir: str | None,
) -> tuple[list[Draft], output.HookResponse]:
    args = _tool_args(event, secrets)
    if rules is None:  # no owner rule: nothing to decide (and rules.py is not imported)
        return [_intent(who, event, args, secrets)], output.proceed()
    from charter.tools.hooks.rules import ToolCall

    verdict = rules.decide(
        ToolCall.from_event(event, project_dir=project_dir, home=os.environ.get("HOME"))
    )
    if verdict.decision is not None:
        args["decision"] = verdict.decision
        args["rules"] = [r.text for r in verdict.rules]
    intent = _intent(who, event, args, secrets)
    drafts = [intent]
    if verdict.decision == "deny":
        denied = _draft(who, event, "hook.tool", "outcome", {"tool": event.tool_name})
        denied.outcome, denied.reason = "denied", verdict.reason
        denied.args_hash = intent.args_hash
        drafts.append(denied)
    return drafts, output.for_verdict(verdict)


def _intent(
    who: HookAgent, event: ev.PreToolUse, args: dict[str, Any], secrets: list[SecretValue]
) -> Draft:
    intent = _draft(who, event, "hook.tool", "intent", args)
    intent.args_hash = ev.redacted_hash(dict(event.tool_input), secrets)
    return intent


def _post_tool(
    who: HookAgent, event: ev.PostToolUse | ev.PostToolUseFailure, secrets: list[SecretValue]
) -> Draft:
    args = _tool_args(event, secrets, summary=False)
    draft = _draft(who, event, "hook.tool", "outcome", args)
    draft.args_hash = ev.redacted_hash(dict(event.tool_input), secrets)
    if isinstance(event, ev.PostToolUse):
        draft.outcome = "ok"
        draft.result_hash = ev.redacted_hash(event.tool_response, secrets)
        status = _exit_status(event.tool_response)
        if status is not None:
            args["exit_status"] = status
        interrupted = _field(event.tool_response, "interrupted")
        if isinstance(interrupted, bool):
            args["interrupted"] = interrupted
    else:
        draft.outcome = "error"
        draft.reason = ev.redacted_text(event.error, secrets, max_chars=ERROR_MAX_CHARS) or None
        args["interrupted"] = event.is_interrupt
    return draft


def _tool_args(
    event: ev.PreToolUse | ev.PostToolUse | ev.PostToolUseFailure,
    secrets: list[SecretValue],
    *,
    summary: bool = True,
) -> dict[str, Any]:
    args: dict[str, Any] = {"tool": event.tool_name}
    if event.tool_use_id is not None:
        args["tool_use_id"] = event.tool_use_id
    if summary:
        args["input"] = ev.summarize_tool_input(event.tool_input, secrets)
    if event.agent_id is not None:
        args["subagent"] = event.agent_id
    return args


def _draft(
    who: HookAgent,
    event: ev.HookEvent,
    action: str,
    phase: str,
    args: dict[str, Any],
    *,
    outcome: str | None = None,
) -> Draft:
    return Draft(
        actor=who.charter.agent_id,
        owner=who.charter.owner_id,
        action=action,
        phase=phase,
        signer=who.key,
        charter=who.charter.hash,
        session=event.session_id,
        call=_call_id(event),
        args=args,
        outcome=outcome,
        require_agent=who.name,
        charter_view=who.charter,
    )


def _call_id(event: ev.HookEvent) -> str | None:
    """The call an intent and its outcome share: Claude Code's ``tool_use_id``, else a hash
    of the session, tool and input (equal in the Pre and Post events of one call)."""
    if not isinstance(event, ev.PreToolUse | ev.PostToolUse | ev.PostToolUseFailure):
        return None
    if event.tool_use_id is not None:
        return event.tool_use_id
    basis = canonical_json([event.session_id, event.tool_name, ev.content_hash(event.tool_input)])
    return "h-" + hashlib.sha256(basis).hexdigest()[:32]


def _field(response: Any, name: str) -> Any:
    return response.get(name) if isinstance(response, dict) else None


def _exit_status(response: Any) -> int | None:
    for name in ("exit_code", "exitCode", "returnCode", "return_code"):
        value = _field(response, name)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**31:
            return value
    return None


def event_name(raw: bytes) -> str:
    """The payload's ``hook_event_name`` if it can be read at all, else PreToolUse (so an
    unreadable payload fails closed)."""
    try:
        value = json.loads(raw[: ev.MAX_EVENT_BYTES])
    except (ValueError, RecursionError):
        return "PreToolUse"
    name = value.get("hook_event_name") if isinstance(value, dict) else None
    return name if isinstance(name, str) else "PreToolUse"
