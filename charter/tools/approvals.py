"""Human approval of sensitive calls: the charter's policy, approval requests, owner decisions.

The owner marks scopes whose calls need a human yes in the agent's (owner-signed) charter::

    policy["approvals"] = [{"pattern": "email:send", "mode": "client"},
                           {"pattern": "secret:read:*", "mode": "owner"}]

A rule applies to a call when its pattern matches one of the concrete scopes the call needed
(:func:`pattern_matches`). ``client`` asks the human through the MCP client (elicitation, see
``charter/server/approvals.py``); ``owner`` parks the call as a pending request that the owner
approves or denies with the owner key (``charter approve ID``), after which the agent's retry
with exactly the same arguments runs once. When several rules match, ``owner`` wins.

Every request and decision is a signed ledger entry (docs/APPROVALS.md lists them); the
``approvals`` table is the queryable current state.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel

from charter.clock import parse_rfc3339, rfc3339
from charter.errors import AgentRevoked, CharterError, ConfigError, InvalidInput, NotFound
from charter.evidence.canonical import canonical_json
from charter.evidence.entries import SIGNING_PREFIX, Entry
from charter.evidence.jwk import b64url_decode, thumbprint, verify_signature
from charter.home import ActingOwner, Home
from charter.storage.approvals import ApprovalRecord
from charter.storage.ports import Tx
from charter.tools import owners
from charter.tools.guards import check_reason

Mode = Literal["client", "owner"]
MODES: tuple[Mode, ...] = ("client", "owner")
#: How long a pending request waits for an answer.
PENDING_TTL: dict[str, dt.timedelta] = {
    "client": dt.timedelta(minutes=10),  # the MCP SDK's request-state lifetime
    "owner": dt.timedelta(hours=24),
}
#: How long an owner-approved call may be retried before the approval lapses.
DEFAULT_USE_WINDOW = dt.timedelta(hours=1)
FAMILIES = ("token", "email", "secret", "audit")
_PATTERN = re.compile(r"^[A-Za-z0-9_.*?@+\-\[\]!:]{1,250}$")
_ID = re.compile(r"^apr-[0-9a-f]{16}$")


class ApprovalPending(CharterError):
    """The call waits for the owner's decision; the message names the approval id."""

    exit_code = 4
    outcome = "denied"


class ApprovalRefused(CharterError):
    """The human declined, the answer did not match the call, or approval was impossible."""

    exit_code = 4
    outcome = "denied"


@dataclass(frozen=True, slots=True)
class ApprovalRule:
    """One ``{"pattern", "mode"}`` entry of ``policy["approvals"]``."""

    pattern: str
    mode: Mode

    def as_policy(self) -> dict[str, str]:
        """The JSON form stored in the charter."""
        return {"pattern": self.pattern, "mode": self.mode}


class Approval(BaseModel):
    """An approval request and its state (what ``charter approvals`` shows)."""

    id: str
    mode: Mode
    agent: str
    agent_id: str
    tool: str
    action: str
    call_id: str
    args_hash: str
    scopes: list[str]
    summary: dict[str, Any]
    status: Literal["pending", "approved", "denied", "used", "cancelled"]
    requested_at: str
    expires_at: str
    request_entry: str
    decided_at: str | None = None
    decided_by: str | None = None
    decision_seq: int | None = None
    reason: str | None = None
    used_at: str | None = None
    used_call: str | None = None


# -- policy ------------------------------------------------------------------------------------


def validate_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a scope glob of a known family (or ``*``).

    Raises:
        InvalidInput: otherwise.
    """
    family = pattern.split(":", 1)[0]
    if pattern != "*" and (not _PATTERN.match(pattern) or family not in FAMILIES):
        raise InvalidInput(
            f"invalid approval pattern {pattern!r}: use a scope or scope glob such as "
            "'email:send', 'secret:read:*' or 'token:issue'"
        )
    return pattern


def parse_rule(text: str) -> ApprovalRule:
    """Parse ``SCOPE_PATTERN[=client|owner]`` (the default mode is ``client``).

    Raises:
        InvalidInput: bad pattern or mode.
    """
    pattern, sep, mode = text.rpartition("=")
    if not sep:
        pattern, mode = text, "client"
    if mode not in MODES:
        raise InvalidInput(f"invalid approval mode {mode!r} in {text!r}: use client or owner")
    return ApprovalRule(validate_pattern(pattern.strip()), mode)


def rules_of(policy: dict[str, Any]) -> list[ApprovalRule]:
    """The approval rules of a charter policy.

    Raises:
        ConfigError: the (owner-signed) policy is malformed; callers fail closed.
    """
    raw = policy.get("approvals", [])
    if not isinstance(raw, list):
        raise ConfigError("the charter's approval policy is malformed")
    rules = []
    for item in raw:
        if not isinstance(item, dict) or set(item) != {"pattern", "mode"}:
            raise ConfigError("the charter's approval policy is malformed")
        try:
            rules.append(parse_rule(f"{item['pattern']}={item['mode']}"))
        except InvalidInput as exc:
            raise ConfigError(f"the charter's approval policy is malformed: {exc}") from exc
    return rules


def with_rules(policy: dict[str, Any], rules: Iterable[ApprovalRule]) -> dict[str, Any]:
    """``policy`` with its approval rules replaced (dropped when there are none)."""
    out = {k: v for k, v in policy.items() if k != "approvals"}
    unique = {(r.pattern, r.mode): r for r in rules}
    if unique:
        out["approvals"] = [r.as_policy() for r in unique.values()]
    return out


def pattern_matches(pattern: str, scope: str) -> bool:
    """True when ``pattern`` covers the concrete ``scope``.

    A glob match, plus: a pattern naming a scope covers its refinements, so ``email:send``
    covers ``email:send:bob@example.com`` (as the scope ``email:send`` grants it).
    """
    return fnmatch.fnmatchcase(scope, pattern) or scope.startswith(pattern + ":")


def can_apply(pattern: str, granted: Iterable[str]) -> bool:
    """Whether a rule with ``pattern`` can ever match a call the ``granted`` scopes allow.

    It can when it matches a granted scope, or names a scope (or a narrower glob) a granted
    one covers. Two globs of one family (``secret:use:A*`` against ``secret:use:*B``) are
    taken to overlap: deciding that exactly is not worth refusing a working rule.
    """
    from charter.scopes import GLOB_FAMILIES, grants

    for scope in granted:
        if pattern == "*" or pattern_matches(pattern, scope) or grants([scope], pattern):
            return True
        family = next((f for f in GLOB_FAMILIES if scope.startswith(f)), None)
        if (
            family
            and pattern.startswith(family)
            and _is_glob(scope[len(family) :])
            and _is_glob(pattern[len(family) :])
        ):
            return True
    return False


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def required_mode(
    rules: Iterable[ApprovalRule], scopes: Iterable[str]
) -> tuple[Mode | None, list[str]]:
    """The strongest mode any rule demands for ``scopes``, and the scopes that matched."""
    mode: Mode | None = None
    matched: list[str] = []
    for scope in dict.fromkeys(scopes):
        modes = {rule.mode for rule in rules if pattern_matches(rule.pattern, scope)}
        if modes:
            matched.append(scope)
            mode = "owner" if "owner" in modes or mode == "owner" else "client"
    return mode, matched


# -- requests ----------------------------------------------------------------------------------


def new_approval_id() -> str:
    """A fresh approval id, e.g. ``apr-3f9c2a1b7d4e5f60``."""
    return f"apr-{secrets.token_hex(8)}"


def insert_request(tx: Tx, approval: Approval) -> None:
    """Store a new pending request (its ``approval.request`` entry is already committed)."""
    data = approval.model_dump()
    tx.approvals.insert(ApprovalRecord(**data | {"scopes": tuple(data["scopes"])}))


def _approval(record: ApprovalRecord) -> Approval:
    return Approval.model_validate(asdict(record))


async def find(home: Home, approval_id: str) -> Approval:
    """One approval by id.

    Raises:
        NotFound: unknown (or malformed) id.
    """
    return await home.read(lambda tx: get_approval(tx, approval_id))


def get_approval(tx: Tx, approval_id: str) -> Approval:
    """:func:`find` inside a unit of work."""
    if _ID.match(approval_id):
        record = tx.approvals.get(approval_id)
        if record is not None:
            return _approval(record)
    raise NotFound(f"no approval {approval_id!r} (see `charter approvals`)")


def latest_for_call(tx: Tx, agent: str, tool: str, args_hash: str, mode: Mode) -> Approval | None:
    """The most recent request of ``mode`` for exactly this call, whatever its status."""
    record = tx.approvals.find_latest_for_call(agent, tool, args_hash, mode)
    return None if record is None else _approval(record)


async def list_pending(home: Home, owner: str | None = None) -> list[Approval]:
    """Owner requests waiting for a decision (unexpired), oldest first; ``owner``: only those
    for that owner's agents (organization homes)."""
    now = rfc3339(home.clock.now())

    def work(tx: Tx) -> list[Approval]:
        found = [_approval(r) for r in tx.approvals.list_pending_owner(now)]
        return [a for a in found if owner is None or tx.owners.agent_owner(a.agent) == owner]

    return await home.read(work)


def claim(tx: Tx, approval_id: str, *, status: str, call_id: str, now: str) -> bool:
    """Atomically mark an unexpired ``status`` approval used by ``call_id``; False if gone.

    Single use: of two concurrent retries, only one claim succeeds (run it in a write).
    """
    return tx.approvals.mark_used(approval_id, status=status, call_id=call_id, now=now)


def close_request(tx: Tx, approval_id: str, *, reason: str, now: str) -> None:
    """Mark a pending client request denied (declined, cancelled or answered wrongly)."""
    tx.approvals.mark_denied_if_pending(approval_id, reason=reason, now=now)


def cancel_open(tx: Tx, *, reason: str, now: str) -> int:
    """Cancel every pending or approved-but-unused request (the kill switch does this)."""
    return tx.approvals.cancel_open(reason=reason, now=now)


# -- owner decisions ---------------------------------------------------------------------------


async def approve(
    home: Home,
    approval_id: str,
    *,
    valid_for: dt.timedelta = DEFAULT_USE_WINDOW,
    passphrase: bytes | None = None,
    by: ActingOwner | None = None,
) -> Approval:
    """Approve a pending owner request: an owner-signed ``approval.approve`` entry.

    The agent may then retry exactly the same call once, within ``valid_for``.

    Raises:
        NotFound: unknown id.  InvalidInput: not pending, expired, or not an owner request.
        AgentRevoked: the agent was revoked meanwhile.  ConfigError: wrong passphrase.
    """
    return await _decide(
        home, approval_id, approved=True, valid_for=valid_for, passphrase=passphrase, by=by
    )


async def deny(
    home: Home,
    approval_id: str,
    *,
    reason: str = "",
    passphrase: bytes | None = None,
    by: ActingOwner | None = None,
) -> Approval:
    """Deny a pending owner request: an owner-signed ``approval.deny`` entry.

    Raises:
        NotFound / InvalidInput / ConfigError: as for :func:`approve`.
    """
    check_reason(reason)
    return await _decide(
        home, approval_id, approved=False, reason=reason, passphrase=passphrase, by=by
    )


async def _decide(
    home: Home,
    approval_id: str,
    *,
    approved: bool,
    valid_for: dt.timedelta = DEFAULT_USE_WINDOW,
    reason: str = "",
    passphrase: bytes | None = None,
    by: ActingOwner | None = None,
) -> Approval:
    action = "approval.approve" if approved else "approval.deny"
    if home.organization is None:
        home.owner_key(passphrase)  # a wrong passphrase fails here, before anything is read
    else:  # organizations: the agent's own owner decides (AUDIT-FORMAT §13)
        by = by or await owners.acting_owner(home, passphrase=passphrase)
        if by is None or by.is_org:
            raise InvalidInput("the agent's owner decides its approvals, not the organization")
        agent = (await home.read(lambda tx: get_approval(tx, approval_id))).agent
        await owners.guarded(home, agent, by, action)
    now = home.clock.now()

    def work(tx: Tx) -> Approval:
        current = get_approval(tx, approval_id)
        if current.mode != "owner":
            raise InvalidInput(f"approval {approval_id} is answered by the client, not the owner")
        if current.status != "pending":
            raise InvalidInput(f"approval {approval_id} is already {current.status}")
        if parse_rfc3339(current.expires_at) <= now:
            raise InvalidInput(
                f"approval {approval_id} expired at {current.expires_at}; the agent must ask again"
            )
        status = tx.agents.status(current.agent)
        if approved and status != "active":
            raise AgentRevoked(f"agent {current.agent!r} is revoked; nothing to approve")
        expires_at = rfc3339(now + valid_for) if approved else current.expires_at
        args: dict[str, Any] = {
            "approval": current.id,
            "agent_id": current.agent_id,
            "tool": current.tool,
            "action": current.action,
            "call_args_hash": current.args_hash,
            "request": current.request_entry,
        }
        args |= {"expires_at": expires_at} if approved else {"reason": reason}
        entry = tx.ledger.append_one(home.owner_event(action, args, passphrase=passphrase, by=by))
        tx.approvals.record_decision(
            current.id,
            status="approved" if approved else "denied",
            decided_at=rfc3339(now),
            decided_by=home.owner_id if by is None else by.owner_id,
            decision_seq=entry.seq,
            expires_at=expires_at,
            reason=reason or None,
        )
        return get_approval(tx, approval_id)

    return await home.write(work)


def genuine_decision(home: Home, tx: Tx, approval: Approval) -> Entry | None:
    """The approval's decision entry, if it is an owner-signed approval of exactly it.

    The server checks this before running an owner-approved call, so a row edited in the
    database (or a decision signed by any other key) approves nothing.
    """
    entry = None if approval.decision_seq is None else tx.ledger.get(approval.decision_seq)
    if entry is None:
        return None
    f = entry.fields
    args = f.get("args") or {}
    unsigned = {k: v for k, v in f.items() if k != "sig"}
    try:
        sig = b64url_decode(f["sig"])
    except (KeyError, ValueError):
        return None
    key = home.owner_public_key
    if home.organization is not None:  # signed by the agent's own (current) owner
        owner = tx.owners.agent_owner(approval.agent)
        record = None if owner is None else tx.owners.active(owner)
        if record is None:
            return None
        key = b64url_decode(record.public_key)
    genuine = (
        f.get("kid") == thumbprint(key)
        and f.get("action") == "approval.approve"
        and args.get("approval") == approval.id
        and args.get("call_args_hash") == approval.args_hash
        and args.get("agent_id") == approval.agent_id
        and args.get("tool") == approval.tool
        and args.get("expires_at") == approval.expires_at
        and verify_signature(key, SIGNING_PREFIX + canonical_json(unsigned), sig)
    )
    return entry if genuine else None


# -- what the human sees -----------------------------------------------------------------------

#: Longest URL or header name shown to the approver (the tool's own URL limit).
MAX_SHOWN_CHARS = 8192


def call_view(tool: str, arguments: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """The arguments of an approval request, as the human who approves it sees them.

    ``summary`` is the call's redacted ledger summary (arguments a tool does not show are
    hashes). For ``secret_http_request`` a hash hides what is approved, so the view adds, from
    the call's own arguments: the URL as written (``{{secret:NAME}}`` placeholders, never
    values), the header names (not their values), and the body's size and content type
    (the body stays a hash). Built here, from the arguments, so the tool need not know.
    """
    if tool != "secret_http_request":
        return summary
    view = dict(summary)
    url = arguments.get("url")
    if isinstance(url, str) and _shown(url):
        view["url"] = url
    headers = arguments.get("headers")
    headers = headers if isinstance(headers, dict) else {}
    if headers and isinstance(summary.get("headers"), dict):
        names = [n if _shown(n) else json.dumps(n)[1:-1] for n in map(str, headers)]
        view["headers"] = {"names": names, "sha256": summary["headers"].get("sha256")}
    body = arguments.get("body")
    if isinstance(body, str) and body and isinstance(summary.get("body"), dict):
        content_type = next(
            (v for k, v in headers.items() if str(k).lower() == "content-type"), None
        )
        view["body"] = {
            "sha256": summary["body"].get("sha256"),
            "bytes": len(body.encode("utf-8", "surrogatepass")),
            "content_type": content_type[:200]
            if isinstance(content_type, str) and _shown(content_type[:200])
            else None,
        }
    return view


def _shown(text: str) -> bool:
    """A string the ledger may hold verbatim (valid Unicode, no NUL, not too long)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text and len(text) <= MAX_SHOWN_CHARS


def _render_value(value: Any) -> str:
    if isinstance(value, dict) and set(value) == {"sha256"}:
        return f"(not shown; sha256 {value['sha256']})"
    if isinstance(value, dict) and set(value) == {"names", "sha256"}:
        names = ", ".join(json.dumps(n) for n in value["names"])
        return f"{names} (values not shown; sha256 {value['sha256']})"
    if isinstance(value, dict) and set(value) == {"sha256", "bytes", "content_type"}:
        kind = json.dumps(value["content_type"]) if value["content_type"] else "no content type"
        return f"{value['bytes']} bytes, {kind} (not shown; sha256 {value['sha256']})"
    return json.dumps(value)


def render(approval: Approval) -> str:
    """The plain-text summary a human approves: who, which tool, the exact arguments, the hash.

    Values are JSON-escaped (ASCII only), so agent-chosen text cannot fake extra lines.
    Arguments the tool does not show are named with their hash.
    """
    lines = [
        f"Agent {approval.agent!r} wants to run {approval.tool} "
        f"(needs approval for: {', '.join(approval.scopes)}).",
        "Arguments:",
    ]
    arguments = approval.summary.get("arguments", {})
    for name, value in arguments.items():
        lines.append(f"  {name}: {_render_value(value)}")
    if not arguments:
        lines.append("  (none)")
    for name, value in (approval.summary.get("details") or {}).items():
        lines.append(f"  [{name}]: {json.dumps(value)}")
    lines += [
        f"Call hash (SHA-256 of the canonical arguments): {approval.args_hash}",
        f"Approval {approval.id}, expires {approval.expires_at}.",
    ]
    return "\n".join(lines)
