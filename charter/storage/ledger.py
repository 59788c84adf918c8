"""The append-only, signed, hash-chained ledger (DESIGN §4), stored in SQLite.

An entry is a JSON object; its bytes are RFC 8785 canonical JSON. The signer signs
``SIGNING_PREFIX || canonical(entry without "sig")``; the entry hash is
``SHA-256(canonical(entry))`` (signature included) and becomes the next entry's ``prev``.
Entry 0's ``prev`` is the genesis hash, which binds the ledger's origin, owner and log key.

Appends read the head and insert inside one ``BEGIN IMMEDIATE`` transaction, so processes
sharing the file never fork the chain. :class:`LedgerWriter` adds group commit for the
server: one writer thread, one transaction (one fsync) per batch, and each caller's future
resolved only after its entry is durable.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from charter.clock import Clock, parse_rfc3339, rfc3339
from charter.errors import AgentRevoked, CharterError, LedgerUnavailable
from charter.evidence.charters import check_validity
from charter.evidence.entries import (
    FORMAT_VERSION,
    OUTCOMES,
    PHASES,
    Entry,
    LedgerIdentity,
    sign_entry,
)
from charter.evidence.jwk import Ed25519Signer
from charter.storage.db import transaction
from charter.storage.ledger_rows import ROW_COLUMNS, row_mismatch
from charter.storage.ports import Draft, Effect

if TYPE_CHECKING:
    from charter.storage.ports import Tx

__all__ = ["Draft", "Effect", "Ledger", "agent_refusal"]

log = logging.getLogger(__name__)


#: Called inside the append transaction for every new entry: (connection, seq, entry bytes).
AppendHook = Callable[[sqlite3.Connection, int, bytes], None]


def agent_refusal(conn: sqlite3.Connection, name: str, charter: str | None) -> AgentRevoked | None:
    """Why ``name`` may not act under ``charter`` now (revoked, or charter replaced), or None.

    The one revocation check: the gate runs it before a tool, and every append for an agent
    runs it again inside the write transaction, so a revocation wins every race.
    """
    # One query walks the agent and its ancestors (sub-agents, issue 21): a revoked or
    # re-chartered parent stops every descendant at its next call.
    rows = conn.execute(_CHAIN, (name,)).fetchall()
    if not rows or rows[0][1] != "active":
        return AgentRevoked(f"agent {name!r} has been revoked")
    if rows[0][2] != charter:
        return AgentRevoked(
            "the agent's charter was replaced; reconnect (stdio: restart the server) to use it"
        )
    for (_, _, _, named), (parent, status, current, _) in itertools.pairwise(rows):
        if status != "active":
            return AgentRevoked(f"agent {name!r} is stopped: its ancestor {parent!r} was revoked")
        if current != named:
            return AgentRevoked(
                f"agent {name!r} is stopped: its ancestor {parent!r} has a new charter"
            )
    if rows[-1][3] is not None:  # a parent named but missing: never valid
        return AgentRevoked(f"agent {name!r} is stopped: its parent is unknown")
    return None


#: The agent (level 0) and each ancestor: name, status, charter hash, and the parent charter
#: its delegation names (NULL at the owner-chartered root).
_CHAIN = (
    "WITH RECURSIVE chain(name, status, charter_hash, parent_charter, parent, lvl) AS ("
    " SELECT name, status, charter_hash, parent_charter, parent, 0 FROM agents WHERE name = ?"
    " UNION ALL SELECT a.name, a.status, a.charter_hash, a.parent_charter, a.parent, c.lvl + 1"
    " FROM agents a JOIN chain c ON a.name = c.parent WHERE c.lvl < 16)"
    " SELECT name, status, charter_hash, parent_charter FROM chain ORDER BY lvl"
)


class Ledger:
    """Synchronous access to the ledger of one Charter home."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        identity: LedgerIdentity,
        clock: Clock,
        *,
        log_key: Ed25519Signer | None = None,
        hooks: Sequence[AppendHook] = (),
        tx: Tx | None = None,
    ) -> None:
        self.conn = conn
        #: The unit of work the effects of a draft are run with.
        self.tx = tx
        self.identity = identity
        self.clock = clock
        self.log_key = log_key
        self.hooks = list(hooks)

    # -- writing ---------------------------------------------------------------------------

    def append(
        self, drafts: Sequence[Draft], *, lock_wait: float | None = None
    ) -> list[Entry | CharterError]:
        """Append ``drafts`` in one transaction; return each one's entry or its refusal.

        A draft whose ``require_agent`` is no longer active is not written as asked: a denial
        signed by the log key is written in its place, and :class:`AgentRevoked` is returned
        for it. A draft that cannot be canonicalized gets a ``LedgerUnavailable``.

        ``lock_wait``: as for :func:`~charter.storage.db.transaction`.

        Raises:
            LedgerUnavailable: if the transaction cannot be committed (nothing was written);
                ``WriteLockBusy`` if the write lock was not had within ``lock_wait``.
        """
        results: list[Entry | CharterError] = []
        try:
            with transaction(self.conn, lock_wait=lock_wait):
                row = self.conn.execute(
                    "SELECT seq, body, ts FROM ledger ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                if row is None:
                    seq, prev, last_ts = 0, self.identity.genesis_hash(), ""
                else:  # the hash of the signed bytes: an edited hash column steers nothing
                    seq, prev, last_ts = row[0] + 1, _sha256_hex(row[1]), row[2]
                for draft in drafts:
                    ts = rfc3339(self.clock.now())
                    ts = max(ts, last_ts)  # never step back in time along the chain
                    refusal = self._check_agent(draft, ts)
                    if refusal is not None:
                        draft = self._refusal_draft(draft, refusal)
                    try:
                        chain = self._insert_chain(draft, seq, ts, prev)
                    except CharterError as exc:
                        results.append(exc)
                        continue
                    results.append(refusal if refusal is not None else chain[0])
                    seq, prev, last_ts = seq + len(chain), chain[-1].hash, ts
        except sqlite3.Error as exc:
            raise LedgerUnavailable(f"the ledger cannot be written: {exc}") from exc
        return results

    def append_one(self, draft: Draft) -> Entry:
        """Append a single draft.

        Raises:
            CharterError: the refusal or failure for that draft.
        """
        (result,) = self.append([draft])
        if isinstance(result, CharterError):
            raise result
        return result

    def _insert(self, entry: Entry) -> None:
        f = entry.fields
        self.conn.execute(
            "INSERT INTO ledger(seq, prev, hash, ts, actor, action, phase, outcome, call_id, body)"
            " VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                f["seq"],
                f["prev"],
                entry.hash,
                f["ts"],
                f["actor"],
                f["action"],
                f["phase"],
                f["outcome"],
                f["call"],
                entry.body,
            ),
        )
        for hook in self.hooks:
            hook(self.conn, f["seq"], entry.body)

    def _insert_chain(self, draft: Draft, seq: int, ts: str, prev: str) -> list[Entry]:
        """Sign and insert ``draft`` (with its effects) at ``seq``, then every entry its
        :attr:`~Draft.follow` chain makes, all under one savepoint: all of them or none.

        Raises:
            CharterError: the draft's refusal: an effect or a follower raised it (a refusal
                checked under the write lock), or ``LedgerUnavailable`` for anything else;
                nothing of the chain is inserted and the batch goes on.
        """
        if not draft.effects and draft.follow is None:
            entry = _signed(draft, seq, ts, prev)
            self._insert(entry)
            return [entry]
        chain: list[Entry] = []
        try:
            with transaction(self.conn):  # nested: a savepoint, so the batch goes on
                if self.tx is None:
                    raise LedgerUnavailable("effects need a unit of work")
                current: Draft | None = draft
                while current is not None:
                    link = chain[-1].hash if chain else prev
                    entry = _signed(current, seq + len(chain), ts, link)
                    for effect in current.effects:
                        effect(self.tx)
                    self._insert(entry)
                    chain.append(entry)
                    current = None if current.follow is None else current.follow(self.tx, entry)
        except CharterError:
            raise
        except Exception:
            log.exception("a state change recorded with seq %s failed", seq)
            raise LedgerUnavailable("the call's result could not be recorded") from None
        return chain

    def _check_agent(self, draft: Draft, ts: str) -> AgentRevoked | None:
        if draft.require_agent is None:
            return None
        refusal = agent_refusal(self.conn, draft.require_agent, draft.charter)
        if refusal is None and draft.charter_view is not None:
            try:
                check_validity(draft.charter_view, parse_rfc3339(ts))
            except AgentRevoked as exc:
                return exc
        return refusal

    def _refusal_draft(self, draft: Draft, refusal: AgentRevoked) -> Draft:
        if self.log_key is None:
            raise LedgerUnavailable("no log key loaded to record a refusal")
        # NOTE: a revoked agent's key is no longer trusted, so the server records the refusal
        # under its own log key; the verifier only accepts denials from that key.
        return Draft(
            actor=draft.actor,
            owner=draft.owner,
            action=draft.action,
            phase="call",
            signer=self.log_key,
            charter=draft.charter,
            session=draft.session,
            call=draft.call,
            args=draft.args,
            args_hash=draft.args_hash,
            outcome="denied",
            reason=refusal.public_message,
        )

    # -- reading ---------------------------------------------------------------------------

    def head(self) -> tuple[int, str]:
        """Return (size, hash of the last entry's bytes or the genesis hash)."""
        row = self.conn.execute("SELECT seq, body FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return 0, self.identity.genesis_hash()
        return int(row[0]) + 1, _sha256_hex(row[1])

    def get(self, seq: int) -> Entry | None:
        """The entry at ``seq``, or None."""
        row = self.conn.execute("SELECT body FROM ledger WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else Entry.from_body(bytes(row[0]))

    def iter_bodies(
        self,
        start: int = 0,
        end: int | None = None,
        *,
        mismatches: list[tuple[int, str]] | None = None,
    ) -> Iterator[bytes]:
        """Yield raw entry bytes in seq order from ``start`` (inclusive) to ``end`` (exclusive).

        With ``mismatches``, every row's other columns are checked against its entry
        (:func:`row_mismatch`) and each disagreement is appended as (row seq, column).
        """
        stop = end if end is not None else 1 << 62
        columns = ROW_COLUMNS if mismatches is not None else "seq, body"
        cursor = start
        while cursor < stop:
            rows = self.conn.execute(
                f"SELECT {columns} FROM ledger WHERE seq >= ? AND seq < ? ORDER BY seq LIMIT 2000",  # noqa: S608 - fixed column lists
                (cursor, stop),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                if mismatches is not None and (column := row_mismatch(row)) is not None:
                    mismatches.append((int(row[0]), column))
                yield bytes(row[-1])
            cursor = rows[-1][0] + 1


def _sha256_hex(body: bytes) -> str:
    """An entry's hash, from its stored bytes (never from the ``hash`` column, a copy)."""
    return hashlib.sha256(body).hexdigest()


def _signed(draft: Draft, seq: int, ts: str, prev: str) -> Entry:
    """The signed entry of ``draft`` at ``seq``.

    Raises:
        LedgerUnavailable: the draft holds what canonical JSON cannot (nothing is written).
    """
    try:
        return sign_entry(_fields(draft, seq, ts, prev), draft.signer)
    except ValueError as exc:
        raise LedgerUnavailable(f"entry cannot be recorded: {exc}") from None


def _fields(draft: Draft, seq: int, ts: str, prev: str) -> dict[str, Any]:
    if draft.phase not in PHASES:
        raise ValueError(f"unknown phase {draft.phase!r}")
    if draft.outcome is not None and draft.outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {draft.outcome!r}")
    return {
        "v": FORMAT_VERSION,
        "seq": seq,
        "ts": ts,
        "prev": prev,
        "actor": draft.actor,
        "owner": draft.owner,
        "charter": draft.charter,
        "session": draft.session,
        "call": draft.call,
        "phase": draft.phase,
        "action": draft.action,
        "args": draft.args,
        "args_hash": draft.args_hash,
        "outcome": draft.outcome,
        "reason": draft.reason,
        "result_hash": draft.result_hash,
    }
