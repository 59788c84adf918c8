"""Offline ledger verification (the algorithm AUDIT-FORMAT.md specifies, step by step).

Given the ledger identity (origin, owner id, owner key, log key) and the entries' bytes in
order, :func:`verify_entries` replays the chain and returns a :class:`VerifyReport`, or
raises :class:`~charter.errors.LedgerIntegrityError` naming the first bad entry and why.
It needs nothing but public keys: it is what an auditor runs on an export.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from charter.clock import parse_rfc3339
from charter.evidence.charters import CharterView, verify_charter
from charter.evidence.delegation import verify_delegation
from charter.evidence.entries import (
    SIGNING_PREFIX,
    LedgerIdentity,
)
from charter.evidence.entry_checks import (
    SIG_BAD,
    SIG_GOOD,
    SIG_NOT_B64,
    Verdict,
    parse,
    signed_bytes,
    verify_parallel,
)
from charter.evidence.entry_checks import fail as _fail
from charter.evidence.jwk import (
    b64url_decode,
    public_jwk,
    thumbprint,
    verify_signature,
)
from charter.evidence.owners import (
    OwnerState,
    apply_org_event,
    check_org_entry,
    note_genesis,
    owner_signer,
)

TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
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
#: Agent-signed outcomes that add or revoke a sub-agent (AUDIT-FORMAT §12).
_DELEGATION_ACTIONS = ("agent.delegate", "agent.revoke_delegate")


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
    #: Organization ledgers: the certified owners (charter.evidence.owners).
    owners: OwnerState = field(default_factory=OwnerState)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of a successful verification."""

    size: int
    head: str
    agents: int
    revoked: int


def verify_entries(
    identity: LedgerIdentity,
    bodies: Iterable[bytes],
    state: VerifyState | None = None,
    *,
    workers: int | None = 1,
) -> tuple[VerifyReport, VerifyState]:
    """Verify entries in order (from ``state`` if resuming) and return the report and state.

    Args:
        identity: the ledger identity (origin, owner, owner and log keys).
        bodies: the entries' canonical bytes, in order, from ``state.size`` on.
        state: what an earlier verification of the prefix returned (resume from it).
        workers: processes checking entries and signatures in parallel while this process
            replays the chain; ``None`` uses every core. The pool starts only when more than
            ``entry_checks.PARALLEL_MIN`` entries are to be checked. The result, and the first
            failing entry and reason, are the same whatever ``workers`` is.

    Raises:
        LedgerIntegrityError: at the first entry that breaks any rule.
    """
    st = state or VerifyState(head=identity.genesis_hash())
    replay = _Replay(identity, st)
    count = (os.cpu_count() or 1) if workers is None else workers
    if count > 1:
        verify_parallel(replay.step, replay.keys, iter(bodies), count)
    else:
        for body in bodies:
            replay.step(body, None)
    agents = {id(a): a for a in st.agents_by_id.values()}
    revoked = sum(1 for a in agents.values() if a.revoked_at is not None)
    return VerifyReport(st.size, st.head, len(agents), revoked), st


class _Replay:
    """The sequential state machine: one :meth:`step` per entry, in ledger order."""

    def __init__(self, identity: LedgerIdentity, st: VerifyState) -> None:
        self.identity = identity
        self.st = st
        self.owner_kid = thumbprint(identity.owner_key)
        self.log_kid = thumbprint(identity.log_key)
        #: Key id -> key, for workers: every key that may sign (candidates: learn_keys).
        self.keys: dict[str, bytes] = {
            self.owner_kid: identity.owner_key,
            self.log_kid: identity.log_key,
        }
        for kid, agent in st.agents_by_kid.items():
            self.keys.setdefault(kid, agent.charter.agent_key)

    def step(self, body: bytes, verdict: Verdict | None) -> None:
        """Check one entry; ``verdict`` is a worker's stateless precheck of it, if any."""
        st, identity = self.st, self.identity
        seq = st.size
        if verdict is None:
            entry = parse(seq, body)
        elif isinstance(verdict, str):
            _fail(seq, verdict)
        else:
            entry = orjson.loads(body)  # a worker ran every parse check on these bytes
        _check_chain(seq, entry, st, identity)
        kid = entry["kid"]
        if kid == self.owner_kid:
            signer = identity.owner_key
            if entry["actor"] != identity.owner_id or entry["charter"] is not None:
                _fail(seq, "owner-signed entry must name the owner as actor and carry no charter")
            if seq == 0:
                note_genesis(entry, st.owners)
            check_org_entry(seq, entry, st.owners)
        elif kid == self.log_kid:
            signer = identity.log_key
            # NOTE: the server's own key may only attest refusals (e.g. of a revoked agent)
            # and server housekeeping; it can never speak for an agent's action.
            if entry["outcome"] != "denied" and not entry["action"].startswith("server."):
                _fail(seq, "the log key may only sign refusals and server events")
        elif kid in st.agents_by_kid:
            agent = st.agents_by_kid[kid]
            signer = agent.charter.agent_key
            _check_agent_entry(seq, entry, agent)
            _check_ancestors(seq, agent, st)
        elif kid in st.owners.by_kid:  # a certified owner (organization ledgers, owners.py)
            owner = owner_signer(seq, entry, st.owners, st.agents_by_id, st.approvals)
            signer = owner.cert.owner_key
        else:
            _fail(seq, f"signed by an unknown key {kid!r}")
        if (
            kid != self.owner_kid
            and kid not in st.owners.by_kid
            and entry["action"] in OWNER_ONLY_ACTIONS
        ):
            _fail(seq, f"{entry['action']} must be signed by the owner key")
        if st.owners.organization is not None:  # the answerable owner (AUDIT-FORMAT §13.3)
            answerable = identity.owner_id
            if kid in st.owners.by_kid:
                answerable = st.owners.by_kid[kid].cert.owner_id
            elif kid in st.agents_by_kid:
                answerable = st.agents_by_kid[kid].charter.owner_id
            # A refusal under the log key may name the refused agent's owner.
            log_ok = kid == self.log_kid and entry["owner"] in st.owners.by_id
            if entry["owner"] != answerable and not log_ok:
                _fail(seq, "entry names a different owner")
        if verdict == SIG_NOT_B64:
            _fail(seq, "signature is not base64url")
        if verdict in (SIG_GOOD, SIG_BAD) and self.keys.get(kid) == signer:
            valid = verdict == SIG_GOOD  # checked by a worker under this very key
        else:
            try:
                sig = b64url_decode(entry["sig"])
            except ValueError:
                _fail(seq, "signature is not base64url")
            valid = verify_signature(signer, SIGNING_PREFIX + signed_bytes(entry, body), sig)
        if not valid:
            _fail(seq, "signature does not verify")
        if kid == self.owner_kid:
            others = (self.log_kid, st.agents_by_kid)
            if not apply_org_event(seq, entry, st, identity.owner_key, others):
                _apply_owner_event(seq, entry, st, identity)
        elif kid in st.owners.by_kid:
            cert = st.owners.by_kid[kid].cert
            _apply_owner_event(seq, entry, st, identity, cert.owner_key, cert.owner_id)
        elif kid != self.log_kid:
            _apply_agent_entry(seq, entry, st)
        st.size = seq + 1
        st.head = hashlib.sha256(body).hexdigest()
        st.last_ts = entry["ts"]


def _check_chain(
    seq: int, entry: dict[str, Any], st: VerifyState, identity: LedgerIdentity
) -> None:
    if entry["seq"] != seq:
        _fail(seq, f"expected seq {seq}, found {entry['seq']!r} (entry missing, inserted or moved)")
    if entry["prev"] != st.head:
        _fail(seq, "prev does not match the hash of the previous entry (chain broken)")
    # The fixed width (AUDIT-FORMAT §1) is what makes comparing timestamps as strings sound.
    if not TIMESTAMP.fullmatch(entry["ts"]):
        _fail(seq, "timestamp is not RFC 3339 UTC with milliseconds (YYYY-MM-DDTHH:MM:SS.mmmZ)")
    try:
        parse_rfc3339(entry["ts"])
    except ValueError:
        _fail(seq, "timestamp is not a valid date and time")
    if entry["ts"] < st.last_ts:
        _fail(seq, "timestamp goes back in time")
    if entry["owner"] != identity.owner_id and st.owners.organization is None:
        _fail(seq, "entry names a different owner")  # organizations: see _Replay.step
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


def _check_ancestors(seq: int, agent: _Agent, st: VerifyState) -> None:
    """A sub-agent acts only while every ancestor is unrevoked and still under the charter its
    delegation names (AUDIT-FORMAT §12): revoking or re-chartering a parent stops the chain."""
    view = agent.charter
    while view.parent_id is not None:
        parent = st.agents_by_id.get(view.parent_id)
        if parent is None:
            _fail(seq, "entry by a sub-agent whose parent is unknown (broken chain)")
        if parent.revoked_at is not None:
            _fail(seq, f"entry by a sub-agent whose ancestor {parent.charter.agent_id} is revoked")
        if parent.charter.hash != view.parent_charter:
            _fail(seq, "entry by a sub-agent whose parent's charter was replaced")
        view = parent.charter


def _apply_delegation(seq: int, entry: dict[str, Any], st: VerifyState) -> None:
    """``agent.delegate`` and ``agent.revoke_delegate`` outcomes (ok) signed by the parent."""
    details = entry["args"].get("details")
    if not isinstance(details, dict):
        _fail(seq, f"{entry['action']} outcome without details")
    parent = st.agents_by_id[entry["actor"]]
    if entry["action"] == "agent.revoke_delegate":
        target = st.agents_by_id.get(str(details.get("agent_id")))
        if target is None:
            _fail(seq, "agent.revoke_delegate names an unknown agent")
        ancestor = target.charter.parent_id
        while ancestor is not None and ancestor != parent.charter.agent_id:
            up = st.agents_by_id.get(ancestor)
            ancestor = None if up is None else up.charter.parent_id
        if ancestor is None:
            _fail(seq, "agent.revoke_delegate by an agent that is not the target's ancestor")
        target.revoked_at = seq
        target.by_lockdown = False
        return
    try:
        view = verify_delegation(details.get("charter"), parent.charter)
    except ValueError as exc:
        _fail(seq, f"agent.delegate carries an invalid delegation charter: {exc}")
    if details.get("charter_hash") != view.hash:
        _fail(seq, "agent.delegate charter hash does not match")
    kid = thumbprint(view.agent_key)
    if view.agent_id in st.agents_by_id or kid in st.agents_by_kid:
        _fail(seq, "agent.delegate for an agent or key already registered")
    child = _Agent(view)
    st.agents_by_id[view.agent_id] = child
    st.agents_by_kid[kid] = child


def _apply_owner_event(
    seq: int,
    entry: dict[str, Any],
    st: VerifyState,
    identity: LedgerIdentity,
    owner_key: bytes | None = None,
    owner_id: str | None = None,
) -> None:
    """Apply an event of the owner key, or of a certified owner's (``owner_key``, ``owner_id``)."""
    action, args = entry["action"], entry["args"]
    owner_key = identity.owner_key if owner_key is None else owner_key
    owner_id = identity.owner_id if owner_id is None else owner_id
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
            view = verify_charter(args.get("charter"), owner_key)
        except ValueError as exc:
            _fail(seq, f"{action} carries an invalid charter: {exc}")
        if args.get("charter_hash") != view.hash or view.owner_id != owner_id:
            _fail(seq, f"{action} charter hash or owner does not match")
        kid = thumbprint(view.agent_key)
        existing = st.agents_by_id.get(view.agent_id)
        if action == "agent.register":
            if existing is not None or kid in st.agents_by_kid or kid in st.owners.ever:
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
    if action in _DELEGATION_ACTIONS and entry["phase"] == "outcome" and entry["outcome"] == "ok":
        _apply_delegation(seq, entry, st)
    elif action == "approval.request":
        approval_id = args.get("approval")
        if not isinstance(approval_id, str) or approval_id in st.approvals:
            _fail(seq, "approval.request without a fresh approval id")
        if args.get("mode") not in ("client", "owner") or not isinstance(args.get("action"), str):
            _fail(seq, "approval.request without a valid mode and action")
        if not isinstance(entry["args_hash"], str):
            _fail(seq, "approval.request without the hash of the arguments it asks about")
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
