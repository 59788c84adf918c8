"""Obtaining a human's approval inside the gate, before a call's intent is committed.

:meth:`Call.run <charter.server.calls.Call.run>` (through its intent step) calls
:func:`obtain_approval` before anything is recorded as intent or done. When a scope the call
needed matches a rule of the charter's ``approvals`` policy:

- ``owner``: an owner-approved, unexpired, unused approval for this agent, tool and exact
  arguments hash is claimed (single use) and linked; otherwise a request is recorded and
  :class:`ApprovalPending` names its id (the owner runs ``charter approve ID``, the agent
  retries the same call).
- ``client``: the human is asked through the MCP client (form elicitation). On a handshake
  connection (2025-11-25 and older) the question is an ``elicitation/create`` request sent
  mid-call. On 2026-07-28 a tool cannot call back, so :class:`InputRequired` carries an
  ``InputRequiredResult`` out of the tool (the gate returns it); the client asks its human and
  retries the same call with the answer, and this module matches the answer to the stored
  request (same agent, tool and arguments hash, still pending, unexpired, answered once).
- ``owner`` through the console (URL-mode elicitation): when the server knows the owner's
  console (``Deps.console_url``) and a handshake client declared ``elicitation.url``, the
  pending request's console page is sent to the client (``elicitation/create``, mode
  ``url``); once the human accepts to open it, the call waits (up to
  :data:`URL_APPROVAL_WAIT` seconds) for the owner's signed decision there, then proceeds
  exactly as on a retry after ``charter approve`` (:mod:`charter.server.console_link`). On
  2026-07-28 (no back-channel) the call ends with ``URLElicitationRequired`` (-32042) naming
  the page (the refusal recorded as for a pending call); the retry runs once approved.

Ledger entries (agent-signed, phase ``event``, ``args_hash`` = the call's): ``approval.request``
and ``approval.answer``; the owner's decisions are ``approval.approve`` / ``approval.deny``
(see :mod:`charter.tools.approvals`). The intent carries ``details.approval``:
``{"id", "mode", "request", "answer" | "decision"}`` (entry hashes).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from mcp.server.elicitation import render_elicitation_schema
from mcp.shared.exceptions import MCPError
from mcp_types import ElicitRequest, ElicitRequestFormParams, ElicitResult, InputRequiredResult
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, Field

from charter.clock import parse_rfc3339, rfc3339
from charter.errors import NotFound
from charter.evidence.entries import Entry
from charter.server import console_link
from charter.storage.ports import Tx
from charter.tools import approvals as store
from charter.tools.approvals import Approval, ApprovalPending, ApprovalRefused, Mode

if TYPE_CHECKING:
    from mcp.server.mcpserver import Context

    from charter.server.deps import Deps
    from charter.storage.ledger import Draft
    from charter.tools.identity import AgentContext


class Call(Protocol):
    """What approval needs of the call being served (:class:`charter.server.calls.Call`,
    which runs approval before its intent: this module does not import it)."""

    deps: Deps
    agent: AgentContext
    tool: str
    action: str
    call_id: str
    arguments: dict[str, Any]
    context: Any
    scopes: list[str]

    @property
    def args_hash(self) -> str:
        """Hash of the call's full arguments."""
        ...

    def summary(self) -> dict[str, Any]:
        """The call's redacted argument summary."""
        ...

    def draft(self, phase: str, args: dict[str, Any], action: str | None = None) -> Draft:
        """An entry of this call, signed by its agent."""
        ...

    async def finish(self, outcome: str, *, reason: str | None = None) -> Entry | None:
        """Write the call's closing entry."""
        ...


#: First protocol revision where a tool asks through ``InputRequiredResult`` (no back-channel).
INPUT_REQUIRED_VERSION = "2026-07-28"
_KEY_PREFIX = "charter.approval/"

_REFUSALS = {
    "decline": "your human declined this call (approval {id}); it was not run",
    "cancel": "your human dismissed the approval question (approval {id}); the call was not run",
    "invalid": "the client's approval answer does not belong to this call (approval {id}); "
    "the call was not run",
    "error": "the client could not ask for approval (approval {id}); the call was not run",
    "expired": "the approval answer came after the request expired (approval {id}); "
    "the call was not run",
}


class InputRequired(Exception):
    """Raised inside a tool on a 2026-07-28 connection; the gate returns ``result``."""

    def __init__(self, result: InputRequiredResult) -> None:
        super().__init__("client input required")
        self.result = result


class ApprovalForm(BaseModel):
    """What the human fills in."""

    approve: bool = Field(
        title="Approve this exact call",
        description="Check to let the agent run the call shown above, exactly once.",
    )


async def obtain_approval(call: Call, details: dict[str, Any]) -> dict[str, Any] | None:
    """Obtain the approval the charter's policy demands for ``call``; return its link.

    Returns None when no rule matches the scopes the call needed.

    Raises:
        ApprovalPending: an owner decision is awaited (the message names the approval id).
        ApprovalRefused: declined, cancelled, mismatched, expired, used, or impossible.
        InputRequired: (2026-07-28) the client must ask its human and retry.
        ConfigError: the charter's approval policy is malformed (fail closed).
    """
    rules = store.rules_of(call.agent.charter.policy)
    mode, matched = store.required_mode(rules, call.scopes)
    if mode is None:
        return None
    if mode == "owner":
        try:
            return await _owner_approval(call, matched, details)
        except _Pending as pending:
            url = call.deps.console_url
            if url is None or not await console_link.usable(url, call.context):
                raise
            if console_link.without_back_channel(call.context):
                required = console_link.url_required(url, pending.approval)
                # The JSON-RPC error passes the gate's handlers: record the refusal here.
                await call.finish("denied", reason=required.error.message)
                raise required from None
            await console_link.send_and_wait(call.deps.home, url, call.context, pending.approval)
            return await _owner_approval(call, matched, details)
    return await _client_approval(call, matched, details)


# -- owner -------------------------------------------------------------------------------------


async def _owner_approval(
    call: Call, matched: list[str], details: dict[str, Any]
) -> dict[str, Any]:
    home = call.deps.home
    now = home.clock.now()
    agent, tool, args_hash = call.agent.name, call.tool, call.args_hash

    def look(tx: Tx) -> tuple[Approval | None, Entry | None]:
        latest = store.latest_for_call(tx, agent, tool, args_hash, "owner")
        decision = None if latest is None else store.genuine_decision(home, tx, latest)
        return latest, decision

    latest, decision = await home.read(look)
    note = ""
    if latest is not None:
        expired = parse_rfc3339(latest.expires_at) <= now
        if latest.status == "approved" and not expired:
            if decision is None:
                raise ApprovalRefused(
                    f"approval {latest.id} is not signed by the owner's key; the call was not run"
                )
            approval_id, call_id = latest.id, call.call_id
            if await home.write(
                lambda tx: store.claim(
                    tx, approval_id, status="approved", call_id=call_id, now=rfc3339(now)
                )
            ):
                return _link(latest, decision=decision.hash)
        if latest.status == "pending" and not expired:
            raise _Pending(latest, _pending_message(latest))
        if latest.status == "denied" and not expired:
            raise ApprovalRefused(
                f"the owner denied this exact call (approval {latest.id}); it was not run"
            )
        if latest.status in ("approved", "used"):
            note = (
                f" (approval {latest.id} was already used: an approval runs one call)"
                if latest.status == "used" or not expired
                else f" (approval {latest.id} expired at {latest.expires_at})"
            )
    request = await _record_request(call, "owner", matched, details)
    raise _Pending(request, _pending_message(request) + note)


class _Pending(ApprovalPending):
    """:class:`ApprovalPending` naming its request (for the console link)."""

    def __init__(self, approval: Approval, message: str) -> None:
        super().__init__(message)
        self.approval = approval


def _pending_message(approval: Approval) -> str:
    return (
        f"approval pending: this call needs your owner's approval (id {approval.id}). Ask them "
        f"to run `charter approve {approval.id}`, then retry exactly the same call (same "
        f"arguments) before {approval.expires_at}; any change to the arguments needs a new "
        "approval"
    )


# -- client ------------------------------------------------------------------------------------


async def _client_approval(
    call: Call, matched: list[str], details: dict[str, Any]
) -> dict[str, Any]:
    ctx: Context[Any, Any] | None = call.context
    if ctx is None or ctx.protocol_version is None:
        raise ApprovalRefused(
            "this call needs your human's approval through the MCP client, but it did not "
            "arrive over a client session; it was not run"
        )
    if not _can_elicit(ctx):
        raise ApprovalRefused(
            "this call needs your human's approval, asked through the MCP client (form "
            "elicitation), but this client did not declare the elicitation capability; it was "
            "not run. Use a client that supports elicitation, or ask the owner to require "
            "owner approval instead (`charter agent update NAME --approve PATTERN=owner`)"
        )
    if is_version_at_least(ctx.protocol_version, INPUT_REQUIRED_VERSION):
        return await _client_approval_by_retry(call, ctx, matched, details)
    request = await _record_request(call, "client", matched, details)
    try:
        answer = await ctx.session.elicit_form(
            message=store.render(request),
            requested_schema=render_elicitation_schema(ApprovalForm),
            related_request_id=ctx.request_id,
        )
    except MCPError:
        return await _settle(call, ctx, request, "error")
    return await _settle(call, ctx, request, _answer_of(answer))


async def _client_approval_by_retry(
    call: Call, ctx: Context[Any, Any], matched: list[str], details: dict[str, Any]
) -> dict[str, Any]:
    """2026-07-28: ask through ``InputRequiredResult``; check the retried call's answer."""
    answers = ctx.input_responses or {}
    if ctx.request_state is None:
        if answers:
            raise ApprovalRefused(
                "an approval answer arrived that this server did not ask for; the call was not run"
            )
        request = await _record_request(call, "client", matched, details)
        question = ElicitRequest(
            params=ElicitRequestFormParams(
                message=store.render(request),
                requested_schema=render_elicitation_schema(ApprovalForm),
            )
        )
        raise InputRequired(
            InputRequiredResult(
                input_requests={_KEY_PREFIX + request.id: question},
                request_state=json.dumps({"approval": request.id}),
            )
        )
    request = await _stored_request(call, ctx.request_state)
    key = _KEY_PREFIX + request.id
    answer = answers.get(key)
    if set(answers) != {key} or not isinstance(answer, ElicitResult):
        return await _settle(call, ctx, request, "invalid")
    return await _settle(call, ctx, request, _answer_of(answer))


async def _stored_request(call: Call, state: str) -> Approval:
    """The pending client request a retried call's (SDK-sealed) state names, checked."""
    try:
        approval_id = str(json.loads(state)["approval"])
        request = await store.find(call.deps.home, approval_id)
    except (ValueError, KeyError, TypeError, NotFound):
        raise ApprovalRefused(
            "the retried call names no approval request of this server; it was not run"
        ) from None
    if (request.mode, request.agent, request.tool, request.args_hash) != (
        "client",
        call.agent.name,
        call.tool,
        call.args_hash,
    ):
        raise ApprovalRefused(
            f"approval {request.id} was asked for another call; this one was not run"
        )
    if request.status != "pending":
        raise ApprovalRefused(
            f"approval {request.id} was already answered ({request.status}); an answer "
            "approves one call, once"
        )
    return request


async def _settle(
    call: Call, ctx: Context[Any, Any], request: Approval, answer: str
) -> dict[str, Any]:
    """Record the client's answer (``approval.answer``) and return the link, or refuse."""
    home = call.deps.home
    now = home.clock.now()
    if answer == "accept" and parse_rfc3339(request.expires_at) <= now:
        answer = "expired"
    approval_id, call_id, stamp = request.id, call.call_id, rfc3339(now)
    if answer == "accept":
        if not await home.write(
            lambda tx: store.claim(tx, approval_id, status="pending", call_id=call_id, now=stamp)
        ):
            raise ApprovalRefused(f"approval {request.id} was already answered; it was not run")
    else:
        await home.write(lambda tx: store.close_request(tx, approval_id, reason=answer, now=stamp))
    draft = call.draft(
        "event",
        {
            "approval": request.id,
            "request": request.request_entry,
            "answer": answer,
            "client": _client_info(ctx),
        },
        action="approval.answer",
    )
    draft.outcome = "ok" if answer == "accept" else "denied"
    entry = await call.deps.writer.append(draft)
    if answer != "accept":
        raise ApprovalRefused(_REFUSALS[answer].format(id=request.id))
    return _link(request, answer=entry.hash)


def _answer_of(result: ElicitResult) -> str:
    if result.action == "accept":
        content = result.content or {}
        return "accept" if content.get("approve") is True else "decline"
    return result.action


def _can_elicit(ctx: Context[Any, Any]) -> bool:
    """The client declared form elicitation (a bare ``elicitation: {}`` counts, as in the SDK)."""
    caps = ctx.client_capabilities
    elicitation = caps.elicitation if caps is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def _client_info(ctx: Context[Any, Any]) -> dict[str, str] | None:
    """The relaying client's self-reported name and version (not an identity)."""
    params = ctx.session.client_params
    info = params.client_info if params is not None else None
    if info is None:
        return None
    return {"name": info.name[:100], "version": info.version[:100]}


# -- shared ------------------------------------------------------------------------------------


async def _record_request(
    call: Call, mode: Mode, matched: list[str], details: dict[str, Any]
) -> Approval:
    """Sign ``approval.request`` into the ledger, then store the pending request."""
    home = call.deps.home
    now = home.clock.now()
    # What the human approves: the ledger's summary, made readable where a hash would hide
    # what the call does (the exact arguments stay bound by the call's args_hash).
    summary: dict[str, Any] = {
        "arguments": store.call_view(call.tool, call.arguments, call.summary())
    }
    if details:
        summary["details"] = details
    approval_id = store.new_approval_id()
    expires_at = rfc3339(now + store.PENDING_TTL[mode])
    entry = await call.deps.writer.append(
        call.draft(
            "event",
            {
                "approval": approval_id,
                "mode": mode,
                "tool": call.tool,
                "action": call.action,
                "scopes": matched,
                "summary": summary,
                "expires_at": expires_at,
            },
            action="approval.request",
        )
    )
    approval = Approval(
        id=approval_id,
        mode=mode,
        agent=call.agent.name,
        agent_id=call.agent.agent_id,
        tool=call.tool,
        action=call.action,
        call_id=call.call_id,
        args_hash=call.args_hash,
        scopes=matched,
        summary=summary,
        status="pending",
        requested_at=rfc3339(now),
        expires_at=expires_at,
        request_entry=entry.hash,
    )
    await home.write(lambda tx: store.insert_request(tx, approval))
    return approval


def _link(approval: Approval, **entries: str) -> dict[str, Any]:
    return {"id": approval.id, "mode": approval.mode, "request": approval.request_entry} | entries
