"""A witness's own state, in its own SQLite file (``witness.db`` in the witness folder).

For each log it witnesses (by origin): the log's verifier keys, and the latest checkpoint it
cosigned (size, root, note). :meth:`WitnessStateRepo.advance` checks the caller's old size
against the stored one and stores the new checkpoint in one ``BEGIN IMMEDIATE`` transaction
(``synchronous=FULL``), so two racing submissions can never both pass the check, the state
never goes back, and a cosignature is made only for what is durably stored: a witness killed
at any point never cosigns two roots of one size.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from charter.storage.db import connect, transaction

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS witness_meta ( key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS witness_logs ("
    " origin TEXT NOT NULL, vkey TEXT NOT NULL, PRIMARY KEY (origin, vkey))",
    "CREATE TABLE IF NOT EXISTS witness_state ("
    " origin TEXT PRIMARY KEY,"
    " size INTEGER NOT NULL CHECK (size >= 0),"
    " root BLOB NOT NULL CHECK (length(root) = 32),"
    " note TEXT NOT NULL,"
    " updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ')))",
    # The state only moves forward: a smaller size, or another root at the same size, aborts.
    "CREATE TRIGGER IF NOT EXISTS witness_state_forward BEFORE UPDATE ON witness_state"
    " WHEN NEW.size < OLD.size OR (NEW.size = OLD.size AND NEW.root != OLD.root)"
    " BEGIN SELECT RAISE(ABORT, 'a witness never goes back'); END",
    "CREATE TRIGGER IF NOT EXISTS witness_state_kept BEFORE DELETE ON witness_state"
    " BEGIN SELECT RAISE(ABORT, 'a witness never forgets a log'); END",
)


@dataclass(frozen=True, slots=True)
class LogState:
    """The latest checkpoint a witness cosigned for one log."""

    origin: str
    size: int
    root: bytes
    note: str


def open_state(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) a witness state file."""
    conn = connect(path)
    with transaction(conn):
        for statement in _SCHEMA:
            conn.execute(statement)
    return conn


class WitnessStateRepo:
    """The witness's name, the logs it witnesses and its per-log state.

    Args:
        conn: A connection from :func:`open_state`.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def name(self) -> str | None:
        """The witness's key name, if initialised."""
        row = self.conn.execute("SELECT value FROM witness_meta WHERE key = 'name'").fetchone()
        return None if row is None else str(row[0])

    def set_name(self, name: str) -> None:
        """Record the witness's key name (once)."""
        with transaction(self.conn):
            self.conn.execute("INSERT INTO witness_meta(key, value) VALUES ('name', ?)", (name,))

    def add_log(self, origin: str, vkey: str) -> bool:
        """Witness the log ``origin`` signed by ``vkey``; False if it was already listed."""
        with transaction(self.conn):
            cursor = self.conn.execute(
                "INSERT OR IGNORE INTO witness_logs(origin, vkey) VALUES (?, ?)", (origin, vkey)
            )
        return cursor.rowcount == 1

    def log_keys(self, origin: str) -> list[str]:
        """The verifier keys trusted for ``origin`` (empty: not witnessed)."""
        rows = self.conn.execute(
            "SELECT vkey FROM witness_logs WHERE origin = ? ORDER BY vkey", (origin,)
        )
        return [str(row[0]) for row in rows]

    def logs(self) -> list[tuple[str, str]]:
        """Every (origin, vkey) witnessed."""
        rows = self.conn.execute("SELECT origin, vkey FROM witness_logs ORDER BY origin, vkey")
        return [(str(o), str(v)) for o, v in rows]

    def latest(self, origin: str) -> LogState | None:
        """The latest checkpoint cosigned for ``origin``."""
        row = self.conn.execute(
            "SELECT size, root, note FROM witness_state WHERE origin = ?", (origin,)
        ).fetchone()
        if row is None:
            return None
        return LogState(origin, int(row[0]), bytes(row[1]), str(row[2]))

    def advance(
        self,
        origin: str,
        check: Callable[[LogState | None], None],
        new: LogState,
    ) -> None:
        """Store ``new`` as the latest checkpoint of ``origin`` if ``check`` passes.

        ``check`` is given the stored state inside the write transaction and raises to refuse
        (the transaction rolls back); nothing can change the state between the check and the
        write, and the write is durable when this returns.
        """
        with transaction(self.conn):
            check(self.latest(origin))
            self.conn.execute(
                "INSERT INTO witness_state(origin, size, root, note) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(origin) DO UPDATE SET size = excluded.size, root = excluded.root,"
                " note = excluded.note,"
                " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ')",
                (origin, new.size, new.root, new.note),
            )
