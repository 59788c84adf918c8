"""Approval requests and their state: the ``approvals`` table.

Each request's history (request, answer, owner decision) is in the ledger; a row is the
queryable current state. ``scopes`` and ``summary`` are stored as JSON text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from charter.storage.db import Connection


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """One row of ``approvals``."""

    id: str
    mode: str
    agent: str
    agent_id: str
    tool: str
    action: str
    call_id: str
    args_hash: str
    scopes: tuple[str, ...]
    summary: dict[str, Any]
    status: str
    requested_at: str
    expires_at: str
    request_entry: str
    decided_at: str | None = None
    decided_by: str | None = None
    decision_seq: int | None = None
    reason: str | None = None
    used_at: str | None = None
    used_call: str | None = None


_COLUMNS = (
    "id, mode, agent, agent_id, tool, action, call_id, args_hash, scopes, summary, status,"
    " requested_at, expires_at, request_entry, decided_at, decided_by, decision_seq, reason,"
    " used_at, used_call"
)


def _record(row: tuple[Any, ...]) -> ApprovalRecord:
    (id_, mode, agent, agent_id, tool, action, call_id, args_hash, scopes, summary, *rest) = row
    return ApprovalRecord(
        id_,
        mode,
        agent,
        agent_id,
        tool,
        action,
        call_id,
        args_hash,
        tuple(json.loads(scopes)),
        json.loads(summary),
        *rest,
    )


class ApprovalRepo:
    """The ``approvals`` table. Callers hold the transaction where several calls must be atomic."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def insert(self, approval: ApprovalRecord) -> None:
        """Store a new request (the decision and use columns start empty)."""
        self._conn.execute(
            "INSERT INTO approvals(id, mode, agent, agent_id, tool, action, call_id, args_hash,"
            " scopes, summary, status, requested_at, expires_at, request_entry)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                approval.id,
                approval.mode,
                approval.agent,
                approval.agent_id,
                approval.tool,
                approval.action,
                approval.call_id,
                approval.args_hash,
                json.dumps(list(approval.scopes)),
                json.dumps(approval.summary, ensure_ascii=False),
                approval.status,
                approval.requested_at,
                approval.expires_at,
                approval.request_entry,
            ),
        )

    def get(self, approval_id: str) -> ApprovalRecord | None:
        """One approval by id, or None."""
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM approvals WHERE id = ?",  # noqa: S608 - fixed column list
            (approval_id,),
        ).fetchone()
        return None if row is None else _record(row)

    def find_latest_for_call(
        self, agent: str, tool: str, args_hash: str, mode: str
    ) -> ApprovalRecord | None:
        """The most recent request of ``mode`` for exactly this call, whatever its status."""
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM approvals WHERE agent = ? AND tool = ? AND args_hash = ?"  # noqa: S608
            " AND mode = ? ORDER BY requested_at DESC, rowid DESC LIMIT 1",
            (agent, tool, args_hash, mode),
        ).fetchone()
        return None if row is None else _record(row)

    def list_pending_owner(self, now: str) -> list[ApprovalRecord]:
        """Owner requests still pending and unexpired at ``now``, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM approvals WHERE mode = 'owner' AND status = 'pending'"  # noqa: S608
            " AND expires_at > ? ORDER BY requested_at, rowid",
            (now,),
        ).fetchall()
        return [_record(r) for r in rows]

    def mark_used(self, approval_id: str, *, status: str, call_id: str, now: str) -> bool:
        """Mark an unexpired approval in ``status`` used by ``call_id``; False if it is not.

        One statement, so of two concurrent claims only one succeeds.
        """
        cur = self._conn.execute(
            "UPDATE approvals SET status = 'used', used_at = ?, used_call = ?"
            " WHERE id = ? AND status = ? AND expires_at > ?",
            (now, call_id, approval_id, status, now),
        )
        return cur.rowcount == 1

    def mark_denied_if_pending(self, approval_id: str, *, reason: str, now: str) -> None:
        """Close a pending request as denied (no change if it is no longer pending)."""
        self._conn.execute(
            "UPDATE approvals SET status = 'denied', decided_at = ?, reason = ?"
            " WHERE id = ? AND status = 'pending'",
            (now, reason, approval_id),
        )

    def cancel_open(self, *, reason: str, now: str) -> int:
        """Cancel every pending or approved-but-unused request; returns how many."""
        cur = self._conn.execute(
            "UPDATE approvals SET status = 'cancelled', reason = ?,"
            " decided_at = COALESCE(decided_at, ?) WHERE status IN ('pending', 'approved')",
            (reason, now),
        )
        return cur.rowcount

    def record_decision(
        self,
        approval_id: str,
        *,
        status: str,
        decided_at: str,
        decided_by: str,
        decision_seq: int,
        expires_at: str,
        reason: str | None,
    ) -> None:
        """Store the owner's decision (``approved`` or ``denied``) on a request."""
        self._conn.execute(
            "UPDATE approvals SET status = ?, decided_at = ?, decided_by = ?, decision_seq = ?,"
            " expires_at = ?, reason = ? WHERE id = ?",
            (status, decided_at, decided_by, decision_seq, expires_at, reason, approval_id),
        )
