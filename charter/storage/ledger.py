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

import asyncio
import hashlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from charter.clock import Clock, parse_rfc3339, rfc3339
from charter.errors import AgentRevoked, CharterError, LedgerUnavailable, WriteLockBusy
from charter.evidence.charters import CharterView, check_validity
from charter.evidence.entries import (
    FORMAT_VERSION,
    OUTCOMES,
    PHASES,
    Entry,
    LedgerIdentity,
    sign_entry,
)
from charter.evidence.jwk import Ed25519Signer
from charter.storage.db import preallocate_wal, transaction
from charter.storage.ledger_rows import ROW_COLUMNS, row_mismatch

log = logging.getLogger(__name__)


#: Called inside the append transaction for every new entry: (connection, seq, entry bytes).
AppendHook = Callable[[sqlite3.Connection, int, bytes], None]
#: Called on the writer thread after each committed batch, with the writer's connection
#: (e.g. to sign a checkpoint every N entries, off the callers' path).
AfterCommit = Callable[[sqlite3.Connection], None]
#: A state change committed atomically with one entry (e.g. a token's row with the outcome
#: that issues it): run inside the append transaction, just before the entry is inserted.
Effect = Callable[[sqlite3.Connection], object]


@dataclass(slots=True)
class Draft:
    """An entry to be appended; the ledger fills in seq, ts, prev, kid and sig."""

    actor: str
    owner: str
    action: str
    phase: str
    signer: Ed25519Signer
    charter: str | None = None
    session: str | None = None
    call: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    args_hash: str | None = None
    outcome: str | None = None
    reason: str | None = None
    result_hash: str | None = None
    #: Agent name that must still be active (with ``charter`` current) when the entry is
    #: committed; checked inside the append transaction so a revocation wins every race.
    require_agent: str | None = None
    #: The signer's charter (with ``require_agent``): the entry's time must fall inside its
    #: validity window, checked in the append transaction like revocation, so an agent key
    #: never signs past its charter (a refusal then goes under the log key).
    charter_view: CharterView | None = None
    #: Committed with this entry or not at all; dropped when the entry is refused.
    effects: tuple[Effect, ...] = ()


def agent_refusal(conn: sqlite3.Connection, name: str, charter: str | None) -> AgentRevoked | None:
    """Why ``name`` may not act under ``charter`` now (revoked, or charter replaced), or None.

    The one revocation check: the gate runs it before a tool, and every append for an agent
    runs it again inside the write transaction, so a revocation wins every race.
    """
    row = conn.execute("SELECT status, charter_hash FROM agents WHERE name = ?", (name,)).fetchone()
    if row is None or row[0] != "active":
        return AgentRevoked(f"agent {name!r} has been revoked")
    if row[1] != charter:
        return AgentRevoked(
            "the agent's charter was replaced; reconnect (stdio: restart the server) to use it"
        )
    return None


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
    ) -> None:
        self.conn = conn
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
                        entry = sign_entry(_fields(draft, seq, ts, prev), draft.signer)
                    except ValueError as exc:
                        results.append(LedgerUnavailable(f"entry cannot be recorded: {exc}"))
                        continue
                    if draft.effects:
                        failure = self._insert_with_effects(entry, draft.effects)
                        if failure is not None:
                            results.append(failure)
                            continue
                    else:
                        self._insert(entry)
                    results.append(refusal if refusal is not None else entry)
                    seq, prev, last_ts = seq + 1, entry.hash, ts
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

    def _insert_with_effects(
        self, entry: Entry, effects: tuple[Effect, ...]
    ) -> CharterError | None:
        """Apply ``effects`` and insert ``entry`` under a savepoint: all of them or none.

        An effect that raises a :class:`CharterError` (a refusal it checks under the write
        lock) fails the draft with that error; anything else with ``LedgerUnavailable``.
        """
        try:
            with transaction(self.conn):  # nested: a savepoint, so the batch goes on
                for effect in effects:
                    effect(self.conn)
                self._insert(entry)
        except CharterError as exc:
            return exc
        except Exception:
            log.exception("a state change recorded with seq %s failed", entry.seq)
            return LedgerUnavailable("the call's result could not be recorded")
        return None

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


class _RunHooks:
    """Queue marker: an inline commit happened; run the after-commit hooks."""


_Pending = tuple[Draft, "asyncio.Future[Entry]", asyncio.AbstractEventLoop]


class LedgerWriter:
    """Group commit for a server: callers await durable appends, one transaction per batch.

    Each batch is one ``BEGIN IMMEDIATE … COMMIT`` (one fsync); a caller's future resolves
    only after the commit, so an acknowledged entry is on disk.

    Two ways to run a batch, same guarantees:

    - ``inline=False``: a writer thread takes batches from a queue; each costs two thread
      hops (to the thread and back to the event loop).
    - ``inline=True`` (the servers): the first caller of a loop turn leads. It yields once,
      so every caller ready in that turn joins its batch, then commits the batch on the
      event loop's thread and resolves the others. A lone caller pays one loop turn instead
      of two thread hops; concurrent callers still share one fsync. The loop is held for
      the commit, which its callers are waiting for anyway. When the writer thread holds
      the connection (running after-commit hooks), or another process holds the database's
      write lock, the batch is handed to the thread instead: the loop never waits for a lock.

    After-commit hooks always run on the writer thread; after inline commits,
    :attr:`HOOK_DELAY` later. The thread first grows the database's write-ahead log to its
    working size (:func:`~charter.storage.db.preallocate_wal`), so that even a new
    server's first commits overwrite blocks instead of appending to the file.
    """

    _MAX_BATCH = 256
    #: Seconds after an inline commit before the writer thread runs the after-commit hooks,
    #: for every inline commit since: waking the thread for each commit costs a thread hop.
    HOOK_DELAY = 0.05
    #: Busy timeout of the writer's connection in inline mode: an inline commit waits this
    #: long for another process's write lock before handing its batch to the writer thread
    #: (which retries for up to ``db.LOCK_WAIT_SECONDS``).
    INLINE_BUSY_TIMEOUT_MS = 20

    def __init__(
        self, ledger: Ledger, after_commit: Sequence[AfterCommit] = (), *, inline: bool = True
    ) -> None:
        self.ledger = ledger
        self.after_commit = list(after_commit)
        self.inline = inline
        #: Held while the ledger's connection is in use, by the thread or an inline append.
        self._lock = threading.Lock()
        #: Inline commits happened whose after-commit hooks have not run yet.
        self._hooks_due = False
        #: Inline batches being gathered, one per event loop (its callers of this turn).
        self._gathering: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        if inline:  # each inline try for the write lock waits this long (see _commit_inline)
            ledger.conn.execute(f"PRAGMA busy_timeout={self.INLINE_BUSY_TIMEOUT_MS:d}")
        self._queue: queue.SimpleQueue[_Pending | _RunHooks | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="charter-ledger", daemon=True)
        self._thread.start()

    async def append(self, draft: Draft) -> Entry:
        """Append one draft; return once it is committed.

        Raises:
            CharterError: the refusal for this draft, or ``LedgerUnavailable``.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Entry] = loop.create_future()
        if not self.inline:
            self._queue.put((draft, future, loop))
            return await future
        batch = self._gathering.setdefault(loop, [])
        batch.append((draft, future, loop))
        if len(batch) == 1:  # the first caller of this loop turn leads the batch
            try:
                await asyncio.sleep(0)  # callers ready in this turn join the batch
            finally:  # even when the leader is cancelled: the others are waiting on it
                self._commit_inline(self._gathering.pop(loop))
        return await future

    def _commit_inline(self, batch: list[_Pending]) -> None:
        if not self._lock.acquire(blocking=False):
            self._hand_over(batch)  # the writer thread has the connection
            return
        try:
            # One short try for the write lock: the event loop must not wait out another
            # process's transaction; if the lock is taken, the writer thread waits instead.
            results = self._append([d for d, _, _ in batch], lock_wait=0.0)
            wake = bool(self.after_commit) and not self._hooks_due
            self._hooks_due = self._hooks_due or wake
        except WriteLockBusy:
            self._hand_over(batch)
            return
        finally:
            self._lock.release()
        if wake:  # start the hooks' timer on the writer thread (once per HOOK_DELAY)
            self._queue.put(_RunHooks())
        _resolve([(future, result) for (_, future, _), result in zip(batch, results, strict=True)])

    def _hand_over(self, batch: list[_Pending]) -> None:
        for pending in batch:
            self._queue.put(pending)

    def close(self) -> None:
        """Finish pending appends and stop the writer thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        with self._lock:
            try:
                preallocate_wal(self.ledger.conn)
            except Exception:  # only an optimization: the thread must live to commit
                log.exception("write-ahead log preallocation failed")
        stop = False
        while not stop:
            try:
                item = self._queue.get(timeout=self.HOOK_DELAY if self._hooks_due else None)
            except queue.Empty:  # inline commits happened a while ago: their hooks, now
                with self._lock:
                    self._run_hooks()
                continue
            if item is None:
                break
            batch: list[_Pending] = []
            while True:
                if not isinstance(item, _RunHooks):  # a marker only starts the timer
                    batch.append(item)
                if len(batch) >= self._MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
            if batch:
                with self._lock:
                    self._commit(batch)
                    self._run_hooks()
        if self._hooks_due:
            with self._lock:
                self._run_hooks()

    def _append(
        self, drafts: list[Draft], lock_wait: float | None = None
    ) -> list[Entry | CharterError]:
        """``Ledger.append``, with any failure turned into each draft's error (except a busy
        write lock on an inline attempt, ``lock_wait=0``: the caller hands the batch over)."""
        try:
            return self.ledger.append(drafts, lock_wait=lock_wait)
        except WriteLockBusy as exc:
            if lock_wait == 0.0:
                raise
            return [exc] * len(drafts)
        except CharterError as exc:
            return [exc] * len(drafts)
        except Exception as exc:  # never leave a caller waiting forever
            log.exception("ledger writer failed")
            error = LedgerUnavailable(f"the ledger cannot be written: {type(exc).__name__}")
            return [error] * len(drafts)

    def _commit(self, batch: list[_Pending]) -> None:
        results = self._append([d for d, _, _ in batch])
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Entry], Any]]] = {}
        for (_, future, loop), result in zip(batch, results, strict=True):
            by_loop.setdefault(loop, []).append((future, result))
        for loop, pairs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, pairs)
            except RuntimeError:  # the loop has closed; its callers are gone
                continue

    def _run_hooks(self) -> None:
        self._hooks_due = False
        for hook in self.after_commit:  # callers already have their results
            try:
                hook(self.ledger.conn)
            except Exception:
                log.exception("after-commit hook failed")


def _resolve(pairs: list[tuple[asyncio.Future[Entry], Any]]) -> None:
    for future, result in pairs:
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
