"""Offline ledger verification (the algorithm AUDIT-FORMAT.md specifies, step by step).

Given the ledger identity (origin, owner id, owner key, log key) and the entries' bytes in
order, :func:`verify_entries` replays the chain and returns a :class:`VerifyReport`, or
raises :class:`~charter.errors.LedgerIntegrityError` naming the first bad entry and why.
It needs nothing but public keys: it is what an auditor runs on an export.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from charter.canonical import canonical_json
from charter.charters import CharterView, verify_charter
from charter.clock import parse_rfc3339
from charter.errors import LedgerIntegrityError
from charter.keys import b64url_decode, public_jwk, thumbprint, verify_signature
from charter.storage.ledger import (
    FORMAT_VERSION,
    OUTCOMES,
    PHASES,
    SIGNING_PREFIX,
    LedgerIdentity,
)

ENTRY_FIELDS = frozenset(
    {
        "v", "seq", "ts", "prev", "actor", "owner", "charter", "session", "call", "phase",
        "action", "args", "args_hash", "outcome", "reason", "result_hash", "kid", "sig",
    }
)  # fmt: skip
#: Owner actions that revoke every agent at once (the kill switch).
LOCKDOWN_ACTIONS = frozenset({"owner.lockdown"})
#: Actions only the owner key may sign, whoever else could produce a valid signature.
OWNER_ONLY_ACTIONS = frozenset(
    {
        "ledger.init", "agent.register", "agent.update", "agent.revoke", "agent.reinstate",
        "approval.approve", "approval.deny", "owner.lockdown", "owner.lockdown.lift",
    }
)  # fmt: skip
_CHARTER_ACTIONS = ("agent.register", "agent.update", "agent.reinstate")


@dataclass
class _Agent:
    charter: CharterView
    revoked_at: int | None = None
    #: Revoked by a lockdown (so it may be reinstated), not by ``agent.revoke`` (final).
    by_lockdown: bool = False


@dataclass
class _Approval:
    """An approval request as the ledger tells it (docs/APPROVALS.md)."""

    mode: str
    actor: str
    action: str
    args_hash: str
    expires_at: dt.datetime
    #: requested -> approved | denied (owner) or accepted | denied (client) -> used; or cancelled
    status: str = "requested"


@dataclass
class VerifyState:
    """Everything the verifier knows after some prefix of the ledger; resumable."""

    size: int = 0
    head: str = ""
    last_ts: str = ""
    agents_by_kid: dict[str, _Agent] = field(default_factory=dict)
    agents_by_id: dict[str, _Agent] = field(default_factory=dict)
    approvals: dict[str, _Approval] = field(default_factory=dict)
    locked_down: bool = False


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of a successful verification."""

    size: int
    head: str
    agents: int
    revoked: int


def verify_entries(
    identity: LedgerIdentity, bodies: Iterable[bytes], state: VerifyState | None = None
) -> tuple[VerifyReport, VerifyState]:
    """Verify entries in order (from ``state`` if resuming) and return the report and state.

    Raises:
        LedgerIntegrityError: at the first entry that breaks any rule.
    """
    st = state or VerifyState(head=identity.genesis_hash())
    owner_kid = thumbprint(identity.owner_key)
    log_kid = thumbprint(identity.log_key)
    for body in bodies:
        seq = st.size
        entry = _parse(seq, body)
        _check_chain(seq, entry, st, identity)
        kid = entry["kid"]
        if kid == owner_kid:
            signer = identity.owner_key
            if entry["actor"] != identity.owner_id or entry["charter"] is not None:
                _fail(seq, "owner-signed entry must name the owner as actor and carry no charter")
        elif kid == log_kid:
            signer = identity.log_key
            # NOTE: the server's own key may only attest refusals (e.g. of a revoked agent)
            # and server housekeeping; it can never speak for an agent's action.
            if entry["outcome"] != "denied" and not entry["action"].startswith("server."):
                _fail(seq, "the log key may only sign refusals and server events")
        elif kid in st.agents_by_kid:
            agent = st.agents_by_kid[kid]
            signer = agent.charter.agent_key
            _check_agent_entry(seq, entry, agent)
        else:
            _fail(seq, f"signed by an unknown key {kid!r}")
        if kid != owner_kid and entry["action"] in OWNER_ONLY_ACTIONS:
            _fail(seq, f"{entry['action']} must be signed by the owner key")
        unsigned = {k: v for k, v in entry.items() if k != "sig"}
        try:
            sig = b64url_decode(entry["sig"])
        except ValueError:
            _fail(seq, "signature is not base64url")
        if not verify_signature(signer, SIGNING_PREFIX + canonical_json(unsigned), sig):
            _fail(seq, "signature does not verify")
        if kid == owner_kid:
            _apply_owner_event(seq, entry, st, identity)
        elif kid != log_kid:
            _apply_agent_entry(seq, entry, st)
        st.size = seq + 1
        st.head = hashlib.sha256(body).hexdigest()
        st.last_ts = entry["ts"]
    agents = {id(a): a for a in st.agents_by_id.values()}
    revoked = sum(1 for a in agents.values() if a.revoked_at is not None)
    return VerifyReport(st.size, st.head, len(agents), revoked), st


def _fail(seq: int | None, reason: str) -> NoReturn:
    raise LedgerIntegrityError(seq, reason)


def _parse(seq: int, body: bytes) -> dict[str, Any]:
    try:
        entry = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        _fail(seq, "entry is not valid UTF-8 JSON")
    if not isinstance(entry, dict):
        _fail(seq, "entry is not a JSON object")
    if set(entry) != ENTRY_FIELDS:
        missing, extra = ENTRY_FIELDS - set(entry), set(entry) - ENTRY_FIELDS
        _fail(
            seq, f"entry fields are wrong (missing {sorted(missing)}, unexpected {sorted(extra)})"
        )
    try:
        canonical = canonical_json(entry)
    except ValueError as exc:
        _fail(seq, f"entry cannot be canonicalized: {exc}")
    if canonical != body:
        _fail(seq, "entry bytes are not canonical JSON (RFC 8785)")
    if entry["v"] != FORMAT_VERSION:
        _fail(seq, f"unsupported format version {entry['v']!r}")
    for name in ("ts", "prev", "actor", "owner", "phase", "action", "kid", "sig"):
        if not isinstance(entry[name], str):
            _fail(seq, f"field {name!r} must be a string")
    if not isinstance(entry["args"], dict):
        _fail(seq, "field 'args' must be an object")
    if entry["phase"] not in PHASES:
        _fail(seq, f"unknown phase {entry['phase']!r}")
    if entry["outcome"] is not None and entry["outcome"] not in OUTCOMES:
        _fail(seq, f"unknown outcome {entry['outcome']!r}")
    return entry


def _check_chain(
    seq: int, entry: dict[str, Any], st: VerifyState, identity: LedgerIdentity
) -> None:
    if entry["seq"] != seq:
        _fail(seq, f"expected seq {seq}, found {entry['seq']!r} (entry missing, inserted or moved)")
    if entry["prev"] != st.head:
        _fail(seq, "prev does not match the hash of the previous entry (chain broken)")
    try:
        parse_rfc3339(entry["ts"])
    except ValueError:
        _fail(seq, "timestamp is not RFC 3339")
    if entry["ts"] < st.last_ts:
        _fail(seq, "timestamp goes back in time")
    if entry["owner"] != identity.owner_id:
        _fail(seq, "entry names a different owner")
    if seq == 0 and entry["action"] != "ledger.init":
        _fail(0, "the first entry must be ledger.init")
    if seq != 0 and entry["action"] == "ledger.init":
        _fail(seq, "ledger.init may only be the first entry")


def _check_agent_entry(seq: int, entry: dict[str, Any], agent: _Agent) -> None:
    view = agent.charter
    if agent.revoked_at is not None:
        _fail(seq, f"entry by revoked agent {view.agent_id} (revoked at entry {agent.revoked_at})")
    if entry["actor"] != view.agent_id:
        _fail(seq, "agent-signed entry names another actor")
    if entry["charter"] != view.hash:
        _fail(seq, "entry does not carry the agent's current charter (unknown or superseded)")
    ts = parse_rfc3339(entry["ts"])
    if not view.not_before <= ts < view.not_after:
        _fail(seq, "entry made outside its charter's validity window (expired charter)")


def _apply_owner_event(
    seq: int, entry: dict[str, Any], st: VerifyState, identity: LedgerIdentity
) -> None:
    action, args = entry["action"], entry["args"]
    if action == "ledger.init":
        if (
            args.get("origin") != identity.origin
            or args.get("owner_key") != public_jwk(identity.owner_key)
            or args.get("log_key") != public_jwk(identity.log_key)
        ):
            _fail(seq, "ledger.init does not match the ledger identity")
    elif action in _CHARTER_ACTIONS:
        if st.locked_down:
            _fail(seq, f"{action} during a lockdown")
        try:
            view = verify_charter(args.get("charter"), identity.owner_key)
        except ValueError as exc:
            _fail(seq, f"{action} carries an invalid charter: {exc}")
        if args.get("charter_hash") != view.hash or view.owner_id != identity.owner_id:
            _fail(seq, f"{action} charter hash or owner does not match")
        kid = thumbprint(view.agent_key)
        existing = st.agents_by_id.get(view.agent_id)
        if action == "agent.register":
            if existing is not None or kid in st.agents_by_kid:
                _fail(seq, "agent.register for an agent or key already registered")
        elif action == "agent.reinstate":
            if existing is None or existing.revoked_at is None or not existing.by_lockdown:
                _fail(seq, "agent.reinstate for an agent no lockdown revoked")
            if thumbprint(existing.charter.agent_key) != kid:
                _fail(seq, "agent.reinstate changes the agent's key")
        elif existing is None or existing.revoked_at is not None:
            _fail(seq, "agent.update for an unknown or revoked agent")
        elif thumbprint(existing.charter.agent_key) != kid:
            _fail(seq, "agent.update changes the agent's key")
        agent = _Agent(view)
        st.agents_by_id[view.agent_id] = agent
        st.agents_by_kid[kid] = agent
    elif action == "agent.revoke":
        target = st.agents_by_id.get(str(args.get("agent_id")))
        if target is None:
            _fail(seq, "agent.revoke names an unknown agent")
        target.revoked_at = seq
        target.by_lockdown = False
    elif action in LOCKDOWN_ACTIONS:
        st.locked_down = True
        for agent in st.agents_by_id.values():
            if agent.revoked_at is None:
                agent.revoked_at = seq
                agent.by_lockdown = True
        for approval in st.approvals.values():
            if approval.status in ("requested", "approved", "accepted"):
                approval.status = "cancelled"
    elif action == "owner.lockdown.lift":
        if not st.locked_down:
            _fail(seq, "owner.lockdown.lift without a lockdown")
        st.locked_down = False
    elif action in ("approval.approve", "approval.deny"):
        _apply_owner_decision(seq, entry, st)


def _apply_owner_decision(seq: int, entry: dict[str, Any], st: VerifyState) -> None:
    args = entry["args"]
    approval = st.approvals.get(str(args.get("approval")))
    if approval is None or approval.mode != "owner" or approval.status != "requested":
        _fail(seq, f"{entry['action']} for an unknown, undecidable or already decided approval")
    if args.get("agent_id") != approval.actor or args.get("call_args_hash") != approval.args_hash:
        _fail(seq, f"{entry['action']} does not match the request's agent or arguments")
    if entry_time(entry) >= approval.expires_at:
        _fail(seq, f"{entry['action']} after the request expired")
    if entry["action"] == "approval.deny":
        approval.status = "denied"
        return
    approval.status = "approved"
    approval.expires_at = _time_arg(seq, args, "expires_at")


def _apply_agent_entry(seq: int, entry: dict[str, Any], st: VerifyState) -> None:
    """Approval rules for agent-signed entries: requests, client answers, approved intents."""
    action, args = entry["action"], entry["args"]
    if action == "approval.request":
        approval_id = args.get("approval")
        if not isinstance(approval_id, str) or approval_id in st.approvals:
            _fail(seq, "approval.request without a fresh approval id")
        if args.get("mode") not in ("client", "owner") or not isinstance(args.get("action"), str):
            _fail(seq, "approval.request without a valid mode and action")
        st.approvals[approval_id] = _Approval(
            mode=args["mode"],
            actor=entry["actor"],
            action=args["action"],
            args_hash=str(entry["args_hash"]),
            expires_at=_time_arg(seq, args, "expires_at"),
        )
    elif action == "approval.answer":
        approval = _linked_approval(seq, entry, st, str(args.get("approval")))
        if approval.mode != "client" or approval.status != "requested":
            _fail(seq, "approval.answer for a request that is not a pending client request")
        accepted = args.get("answer") == "accept" and entry["outcome"] == "ok"
        if accepted and entry_time(entry) >= approval.expires_at:
            _fail(seq, "approval.answer accepted after the request expired")
        approval.status = "accepted" if accepted else "denied"
    elif entry["phase"] == "intent":
        details = args.get("details")
        link = details.get("approval") if isinstance(details, dict) else None
        if link is None:
            return
        if not isinstance(link, dict):
            _fail(seq, "intent carries a malformed approval link")
        approval = _linked_approval(seq, entry, st, str(link.get("id")))
        if approval.action != action or link.get("mode") != approval.mode:
            _fail(seq, "intent's approval was given for another action")
        if approval.status != ("approved" if approval.mode == "owner" else "accepted"):
            _fail(seq, f"intent relies on an approval that is {approval.status}, not granted")
        if approval.mode == "owner" and entry_time(entry) >= approval.expires_at:
            _fail(seq, "intent relies on an expired owner approval")
        approval.status = "used"


def _linked_approval(
    seq: int, entry: dict[str, Any], st: VerifyState, approval_id: str
) -> _Approval:
    approval = st.approvals.get(approval_id)
    if approval is None:
        _fail(seq, f"{entry['action']} names an unknown approval")
    if approval.actor != entry["actor"] or approval.args_hash != entry["args_hash"]:
        _fail(seq, f"{entry['action']} names an approval for another agent or other arguments")
    return approval


def _time_arg(seq: int, args: dict[str, Any], name: str) -> dt.datetime:
    try:
        return parse_rfc3339(str(args.get(name)))
    except ValueError:
        _fail(seq, f"field args.{name} is not an RFC 3339 timestamp")


def charter_views(state: VerifyState) -> list[CharterView]:
    """The current charter of every agent the verifier has seen."""
    return [a.charter for a in state.agents_by_id.values()]


def entry_time(entry: dict[str, Any]) -> dt.datetime:
    """An entry's timestamp."""
    return parse_rfc3339(entry["ts"])
