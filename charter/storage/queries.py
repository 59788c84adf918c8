"""Reading the ledger by its indexed columns: the filtered pages of ``audit_query`` and the
raw entry bytes that proofs are made of.

The columns are copies of the signed entries' fields (:mod:`charter.storage.ledger_rows`):
a page is selected on them, then every row served is checked against its entry, so an edited
column fails the read instead of steering it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from charter.evidence.canonical import canonical_json
from charter.evidence.entries import Entry
from charter.storage.db import Connection
from charter.storage.ledger_rows import ROW_COLUMNS, column_error, row_mismatch


@dataclass(frozen=True, slots=True)
class LedgerPage:
    """Entries in seq order, and the seq to start the next page at (None: no more)."""

    entries: tuple[Entry, ...]
    next_cursor: int | None


class LedgerQueries:
    """Read-only queries over one home's ledger table."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def find_page(
        self,
        *,
        cursor: int,
        limit: int,
        actor: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        since: str | None = None,
        until: str | None = None,
        session: str | None = None,
    ) -> LedgerPage:
        """At most ``limit`` entries from seq ``cursor`` on that match every filter given.

        ``actor``, ``action`` and ``outcome`` match exactly; ``since`` <= ts < ``until``, both
        normalized RFC 3339 stamps as the entries hold them. Uses the (actor, seq) and
        (action, seq) indexes: a page costs O(log n + limit).

        ``session`` matches the signed ``session`` field, which has no column: rows are
        narrowed in SQLite by the bytes ``"session":<canonical JSON of session>`` in the
        body (``instr``, a scan of the rows the other filters leave from ``cursor`` on),
        then each candidate's parsed field is compared. A page then costs a scan up to its
        last match, O(n) bytes in the worst case (a session with few entries in a large
        ledger); narrow it with ``actor``/``since``/``cursor``.

        Raises:
            LedgerIntegrityError: a row of the page whose columns its signed entry
                contradicts (say, another agent's entry relabelled as this actor's).
        """
        clauses, params = ["seq >= ?"], [cursor]
        if any(v is not None and "\x00" in v for v in (actor, action, outcome, since, until)):
            # No stored column holds a NUL (PostgreSQL text cannot): nothing matches.
            return LedgerPage(entries=(), next_cursor=None)
        for column, value in (("actor", actor), ("action", action), ("outcome", outcome)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)  # type: ignore[arg-type]
        for op, stamp in ((">=", since), ("<", until)):
            if stamp is not None:
                clauses.append(f"ts {op} ?")
                params.append(stamp)  # type: ignore[arg-type]
        if session is not None:
            try:
                needle = b'"session":' + canonical_json(session)
            except ValueError:  # outside canonical JSON (a lone surrogate): in no entry
                return LedgerPage(entries=(), next_cursor=None)
            clauses.append("instr(body, ?) > 0")
            params.append(needle)  # type: ignore[arg-type]
        where = " AND ".join(clauses)
        if session is None:
            sql = f"SELECT {ROW_COLUMNS} FROM ledger WHERE {where} ORDER BY seq LIMIT ?"  # noqa: S608 - fixed column names
            rows = self.conn.execute(sql, (*params, limit + 1)).fetchall()
        else:  # candidates only: the signed field decides, read lazily up to limit + 1
            sql = f"SELECT {ROW_COLUMNS} FROM ledger WHERE {where} ORDER BY seq"  # noqa: S608 - fixed column names
            rows = []
            for row in self.conn.execute(sql, params):
                if self._checked(row).fields.get("session") == session:
                    rows.append(row)
                    if len(rows) > limit:
                        break
        entries = [self._checked(row) for row in rows[:limit]]
        nxt = int(rows[limit][0]) if len(rows) > limit else None
        return LedgerPage(entries=tuple(entries), next_cursor=nxt)

    @staticmethod
    def _checked(row: Any) -> Entry:
        """The entry of a row whose copied columns agree with its signed body."""
        edited = row_mismatch(row)
        try:
            entry = Entry.from_body(bytes(row[-1]))
        except ValueError:
            edited = "body"
        if edited is not None:
            raise column_error(int(row[0]), edited)
        return entry

    def size(self) -> int:
        """Number of entries in the ledger (one primary-key probe)."""
        row = self.conn.execute("SELECT seq FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        return 0 if row is None else int(row[0]) + 1

    def get_body(self, seq: int) -> bytes | None:
        """The stored bytes of entry ``seq``, unchecked, or None if there is no such row."""
        row = self.conn.execute("SELECT body FROM ledger WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else bytes(row[0])

    # -- the owner's console (charter/console): newest first, activity ------------------------

    def find_older(
        self,
        *,
        before: int | None,
        limit: int,
        actor: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> LedgerPage:
        """At most ``limit`` entries with seq < ``before`` (None: from the head), newest
        first, matching every filter; ``next_cursor`` is the ``before`` of the next page.

        Keyset paging on the primary key, or on the (actor, seq) and (action, seq) indexes
        when those filters are given: a page costs O(log n + limit) at any depth (the time
        filters narrow the rows the index walk reads; they have no index of their own).
        Every row served is checked against its signed entry, as in :meth:`find_page`.
        """
        clauses: list[str] = []
        params: list[Any] = []
        if before is not None:
            clauses.append("seq < ?")
            params.append(before)
        for column, value in (("actor", actor), ("action", action), ("outcome", outcome)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        for op, stamp in ((">=", since), ("<", until)):
            if stamp is not None:
                clauses.append(f"ts {op} ?")
                params.append(stamp)
        where = " AND ".join(clauses) or "TRUE"
        sql = f"SELECT {ROW_COLUMNS} FROM ledger WHERE {where} ORDER BY seq DESC LIMIT ?"  # noqa: S608 - fixed column names
        rows = self.conn.execute(sql, (*params, limit + 1)).fetchall()
        entries = [self._checked(row) for row in rows[:limit]]
        nxt = int(rows[limit - 1][0]) if len(rows) > limit else None
        return LedgerPage(entries=tuple(entries), next_cursor=nxt)

    def last_activity(self, actor: str) -> str | None:
        """The time of ``actor``'s latest entry (one probe of the (actor, seq) index)."""
        row = self.conn.execute(
            "SELECT ts FROM ledger WHERE actor = ? ORDER BY seq DESC LIMIT 1", (actor,)
        ).fetchone()
        return None if row is None else str(row[0])

    def calls_per_actor(self, since_seq: int, bucket_chars: int) -> list[tuple[str, str, int]]:
        """(actor, time bucket, calls) of the entries from ``since_seq`` on that close a call
        (phase ``call`` or ``outcome``: one per call); a bucket is the first
        ``bucket_chars`` characters of the RFC 3339 stamp (13: the hour)."""
        rows = self.conn.execute(
            "SELECT actor, substr(ts, 1, ?), count(*) FROM ledger"
            " WHERE seq >= ? AND phase IN ('call', 'outcome') GROUP BY 1, 2 ORDER BY 2",
            (bucket_chars, since_seq),
        ).fetchall()
        return [(str(a), str(b), int(n)) for a, b, n in rows]

    def first_seq_at(self, stamp: str) -> int:
        """The first seq whose ``ts`` is >= ``stamp`` (the size when none): a binary search
        on seq, since entries are appended in time order (O(log n) probes)."""
        lo, hi = 0, self.size()
        while lo < hi:
            mid = (lo + hi) // 2
            row = self.conn.execute("SELECT ts FROM ledger WHERE seq = ?", (mid,)).fetchone()
            if row is not None and str(row[0]) < stamp:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def call_partner(self, actor: str, call_id: str, seq: int, window: int = 5000) -> list[int]:
        """The seqs of ``actor``'s entries of call ``call_id`` within ``window`` entries of
        ``seq`` (an intent and its outcome sit close together): the (actor, seq) index."""
        rows = self.conn.execute(
            "SELECT seq FROM ledger WHERE actor = ? AND seq BETWEEN ? AND ? AND call_id = ?"
            " ORDER BY seq",
            (actor, seq - window, seq + window, call_id),
        ).fetchall()
        return [int(r[0]) for r in rows]


__all__ = ["LedgerPage", "LedgerQueries"]
