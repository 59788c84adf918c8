"""The per-call gate: who is calling, is it allowed, and what the ledger records.

Every tool call runs inside a :class:`Call`. A tool with side effects checks its scopes,
asks its service for a :class:`~charter.tools.plan.Plan` and hands it to :meth:`Call.run`,
the one place that acts: approvals, then the signed intent (with the plan's intent effects),
and only once that is durable, the act; its outcome facts and success effects are staged for
the outcome entry. When the tool returns or fails, the server writes the ``outcome`` entry
(success effects only with ``ok``); a call that never reached an intent (read-only tools,
refusals, invalid arguments) is recorded as one ``call`` entry.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from charter.errors import AgentRevoked, InvalidInput, ScopeDenied
from charter.evidence.canonical import canonical_json
from charter.evidence.entries import Entry
from charter.home import Home
from charter.scopes import grants, require
from charter.server.approvals import obtain_approval
from charter.server.deps import Deps
from charter.storage.ledger import Draft, Effect
from charter.storage.ports import Tx
from charter.tools.identity import AgentContext
from charter.tools.plan import LocalPlan, Plan

_current: contextvars.ContextVar[Call] = contextvars.ContextVar("charter_call")

#: Longest string kept verbatim in a ledger summary; longer ones are cut and marked.
SUMMARY_MAX_CHARS = 200

R = TypeVar("R")


def current_call() -> Call:
    """The call being served (tools use this to reach their agent and the ledger)."""
    return _current.get()


def hash_value(value: Any) -> str:
    """Hex SHA-256 of a JSON value's canonical bytes.

    Values outside the canonical domain (floats, huge integers) are hashed from a sorted
    compact ``json.dumps`` instead, so hashing agent input can never fail.
    """
    try:
        data = canonical_json(value)
    except ValueError:
        data = json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr).encode(
            "utf-8", "surrogatepass"
        )
    return hashlib.sha256(data).hexdigest()


def refusal_draft(
    home: Home, *, action: str, args: dict[str, Any], args_hash: str, session: str, reason: str
) -> Draft:
    """A refusal of a caller no agent could be resolved for (``actor`` unknown), signed by the
    log key: the gate's unresolved calls and the daemon's refused connections."""
    return Draft(
        actor="unknown",
        owner=home.owner_id,
        action=action,
        phase="call",
        signer=home.log_key,
        session=session,
        call=secrets.token_hex(8),
        args=args,
        args_hash=args_hash,
        outcome="denied",
        reason=reason,
    )


def summarize(arguments: dict[str, Any], visible: frozenset[str]) -> dict[str, Any]:
    """Redacted summary of ``arguments``: ``visible`` names kept (short), others hashed.

    The summary is always recordable: argument names and visible strings the ledger cannot
    hold verbatim (lone surrogates, names outside the BMP) are escaped or hashed, so a
    hostile argument can never keep its call off the record.
    """
    out: dict[str, Any] = {}
    for name in sorted(arguments):
        value = arguments[name]
        key = name if _in_bmp(name) else _escaped(name)
        if name in visible and _is_small(value):
            out[key] = value
        elif name in visible and isinstance(value, str) and _is_text(value):
            out[key] = value[:SUMMARY_MAX_CHARS] + "…[cut]"
        else:
            out[key] = {"sha256": hash_value(value)}
    return out


def _is_text(value: str) -> bool:
    """A string the ledger may keep verbatim: valid Unicode without NUL."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _in_bmp(name: str) -> bool:
    """Usable as a canonical JSON key (charter.evidence.canonical keeps keys in the BMP)."""
    return _is_text(name) and all(ord(ch) <= 0xFFFF for ch in name)


def _escaped(name: str) -> str:
    # An ASCII rendering (JSON escapes) of an argument name canonical JSON cannot use as a key.
    return json.dumps(name)[1:-1]


def _is_small(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) < 2**53
    if isinstance(value, str):
        return len(value) <= SUMMARY_MAX_CHARS and _is_text(value)
    if isinstance(value, list) and len(value) <= 20:
        return all(_is_small(v) and not isinstance(v, list) for v in value)
    return False


@dataclass
class Call:
    """One tool call by one agent."""

    deps: Deps
    agent: AgentContext
    tool: str
    action: str
    arguments: dict[str, Any]
    visible_args: frozenset[str]
    call_id: str = field(default_factory=lambda: secrets.token_hex(8))
    intent_entry: Entry | None = None
    #: Extra, non-secret facts the outcome entry carries (e.g. the SMTP reply): set by
    #: :meth:`run` from the plan, once the act succeeded.
    outcome_details: dict[str, Any] = field(default_factory=dict)
    #: The MCP request context (``mcp.server.mcpserver.Context``), to ask for approval.
    context: Any = None
    #: The concrete scopes this call needed (``require``); approval policy matches these.
    scopes: list[str] = field(default_factory=list)
    #: State changes committed atomically with an ``ok`` outcome entry: set by :meth:`run`
    #: from the plan, once the act succeeded; dropped if the call fails afterwards.
    success_effects: list[Effect] = field(default_factory=list)
    #: False for tools whose result is a secret (the outcome records no hash of it).
    hash_result: bool = True
    #: True once the call's closing entry is written: a local effect's outcome (committed
    #: with its intent) or the log key's denial in a revoked agent's intent's place. Then
    #: :meth:`finish` writes nothing more.
    closed: bool = False
    #: A local effect's outcome entry (committed with its intent), else None.
    closing_entry: Entry | None = None

    def require(self, scope: str) -> None:
        """Refuse the call unless the agent's charter (and its bearer token, if any) grant it.

        Every scope check of a tool goes through here: it is where bearer-token narrowing
        applies and where approval policy learns which scopes the call needs.

        Raises:
            ScopeDenied: recorded as a denied call.
        """
        require(self.agent.charter.scopes, scope)
        if not self._token_grants(scope):
            raise ScopeDenied(f"the token this call was made with does not grant {scope!r}")
        self.scopes.append(scope)

    def allows(self, scope: str) -> bool:
        """True when :meth:`require` would accept ``scope`` (for listing, not for acting)."""
        return grants(self.agent.charter.scopes, scope) and self._token_grants(scope)

    def _token_grants(self, scope: str) -> bool:
        # Over HTTP the bearer token narrows the charter; over stdio there is no token.
        token_scopes = self.agent.token_scopes
        return token_scopes is None or grants(token_scopes, scope)

    async def run(self, plan: Plan[R] | LocalPlan[R]) -> R:
        """Perform a side-effecting service's plan: the only way a tool acts.

        In one direction: approvals (:func:`obtain_approval`) -> the signed intent with
        ``plan.details``, and ``plan.intent_effects`` in its transaction -> ``plan.act`` (only
        once the intent is durable) -> ``plan.outcome`` and ``plan.success_effects`` of the
        result, staged for the outcome entry (:meth:`finish` commits the effects with an
        ``ok`` outcome only). Returns the act's result. A :class:`LocalPlan` commits its
        intent, effect and ``ok`` outcome in one transaction instead (:meth:`_run_local`).

        Raises:
            ApprovalPending / ApprovalRefused / InputRequired: no approval; nothing recorded
                as intent, nothing done.
            LedgerUnavailable / AgentRevoked / CharterError of an intent effect: the intent
                was not committed; nothing done.
            Whatever the act raises: the intent stands, the outcome is ``error``.
        """
        if isinstance(plan, LocalPlan):
            return await self._run_local(plan)
        entry = await self.intent(plan.details, effects=plan.intent_effects)
        result = await plan.act(entry)
        outcome = dict(plan.outcome(result))
        effects = list(plan.success_effects(result))
        self.outcome_details, self.success_effects = outcome, effects
        return result

    async def intent(
        self, details: Mapping[str, Any] | None = None, *, effects: tuple[Effect, ...] = ()
    ) -> Entry:
        """Commit the signed intent entry (the gate's step of :meth:`run`; tools use that).

        ``details`` are extra non-secret facts (e.g. the resolved Message-ID) merged into the
        argument summary. When the charter's policy says a scope this call needed requires
        approval, the approval is obtained first and linked as ``details["approval"]``
        (docs/APPROVALS.md). ``effects`` commit in the intent's transaction: they exist
        exactly when the intent does (e.g. the row that reserves an email's Message-ID).

        Raises:
            LedgerUnavailable / AgentRevoked: the intent was not committed; do not act.
            ApprovalPending / ApprovalRefused: no approval (yet); do not act.
            CharterError: an effect refused (e.g. MailDenied); the intent was not committed.
        """
        draft = await self._intent_draft(details)
        draft.effects = effects
        self.intent_entry = await self._append_intent(draft)
        return self.intent_entry

    async def _run_local(self, plan: LocalPlan[R]) -> R:
        """Approvals, then one transaction: the intent, ``plan.apply`` and the ``ok`` outcome
        (with ``plan.outcome``'s facts and the result's hash), chained on the intent draft
        (:attr:`Draft.follow`), so all three commit together or none does."""
        draft = await self._intent_draft(plan.details)
        done: list[tuple[R, Entry]] = []

        def outcome(tx: Tx, intent: Entry) -> Draft:
            result = plan.apply(tx, intent)
            closing = self._outcome_draft(intent, "ok", plan.outcome(result))
            closing.result_hash = hash_value(_structured(result)) if self.hash_result else None

            def keep(_tx: Tx, entry: Entry) -> None:
                done.append((result, entry))

            closing.follow = keep
            return closing

        draft.follow = outcome
        self.intent_entry = await self._append_intent(draft)
        ((result, self.closing_entry),) = done
        self.closed = True
        return result

    async def _intent_draft(self, details: Mapping[str, Any] | None) -> Draft:
        """The intent's draft, after the approvals the charter's policy demands."""
        if self.intent_entry is not None:
            raise InvalidInput("intent already recorded for this call")
        extra = dict(details or {})
        if "approval" in extra:
            raise InvalidInput("intent details may not use the reserved key 'approval'")
        approval = await obtain_approval(self, extra)
        if approval is not None:
            extra["approval"] = approval
        args = self.summary()
        if extra:
            args = args | {"details": extra}
        return self.draft("intent", args)

    async def _append_intent(self, draft: Draft) -> Entry:
        try:
            return await self.deps.writer.append(draft)
        except AgentRevoked:
            # The ledger wrote the log key's denial in the intent's place: the call is closed.
            self.closed = True
            raise

    @functools.cached_property
    def args_hash(self) -> str:
        """Hash of the call's full arguments (every entry and approval of the call cites it)."""
        return hash_value(self.arguments)

    def summary(self) -> dict[str, Any]:
        """The redacted argument summary recorded in the ledger."""
        return summarize(self.arguments, self.visible_args)

    async def finish(
        self,
        outcome: str,
        *,
        reason: str | None = None,
        result: Any = None,
    ) -> Entry | None:
        """Write the closing entry: ``outcome`` after an intent, else a single ``call`` entry;
        nothing (None) when the call is :attr:`closed` already."""
        if self.closed:
            return None
        if self.intent_entry is not None:
            draft = self._outcome_draft(self.intent_entry, outcome, self.outcome_details)
        else:
            args = self.summary()
            if self.outcome_details:
                args = args | {"details": self.outcome_details}
            draft = self.draft("call", args)
            draft.outcome = outcome
        draft.reason = reason
        draft.result_hash = None if result is None else hash_value(result)
        if outcome == "ok":
            draft.effects = tuple(self.success_effects)
        self.closed = True
        return await self.deps.writer.append(draft)

    def _outcome_draft(self, intent: Entry, outcome: str, facts: Mapping[str, Any]) -> Draft:
        args: dict[str, Any] = {"intent": intent.hash}
        if facts:
            args["details"] = dict(facts)
        draft = self.draft("outcome", args)
        draft.outcome = outcome
        return draft

    def draft(self, phase: str, args: dict[str, Any], action: str | None = None) -> Draft:
        """An entry of this call (``action`` defaults to the tool's), signed by its agent and
        committed only while the agent is active under this charter."""
        agent = self.agent
        return Draft(
            actor=agent.agent_id,
            owner=agent.owner_id,
            action=action or self.action,
            phase=phase,
            signer=agent.key,
            charter=agent.charter.hash,
            session=self.deps.session_id,
            call=self.call_id,
            args=args,
            args_hash=self.args_hash,
            require_agent=agent.name,
            charter_view=agent.charter,
        )


def _structured(result: Any) -> Any:
    """A tool result as the SDK sends it as ``structuredContent`` (what ``result_hash``
    hashes): a model's JSON dump by alias (``func_metadata.convert_result``)."""
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", by_alias=True)
    raise TypeError(f"a local plan must return a pydantic model, not {type(result).__name__}")


def enter(call: Call) -> contextvars.Token[Call]:
    """Make ``call`` current."""
    return _current.set(call)


def leave(token: contextvars.Token[Call]) -> None:
    """Restore the previous call."""
    _current.reset(token)
