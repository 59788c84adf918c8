"""The ``meta`` table (the ledger identity and single settings), and opening a home's database.

``meta`` holds one text value per key: the ledger identity written by ``charter init``
(``origin``, ``owner_key``, ``log_key``…) and a few settings kept as single values.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from charter.errors import ConfigError
from charter.storage.db import Connection, connect, migrate


class MetaRepo:
    """The ``meta`` table of one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def all(self) -> dict[str, str]:
        """Every key and its value."""
        return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())

    def insert_identity(self, values: Mapping[str, str]) -> None:
        """Write the ledger identity of a new home (once; the caller holds the transaction)."""
        self.conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", values.items())

    def get(self, key: str) -> str | None:
        """One value, or None when the key is not set."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set(self, key: str, value: str) -> None:
        """Set one value, replacing any earlier one."""
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def set_default(self, key: str, value: str) -> str:
        """The value of ``key``, setting it to ``value`` first when it is not set (once, even
        when several servers try at the same time: the first committed value wins)."""
        self.conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", (key, value))
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0])

    def update(self, key: str, value: str) -> bool:
        """Change the value of a key that is set; False (nothing written) when it is not."""
        cur = self.conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
        return cur.rowcount > 0


def open_database(path: Path) -> tuple[Connection, dict[str, str]]:
    """Open (and migrate) a home's database; return the connection and its ``meta`` values.

    Raises:
        ConfigError: the file cannot be opened or is corrupt (the connection is closed).
    """
    conn = connect(path)
    try:
        migrate(conn)
        meta = MetaRepo(conn).all()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise ConfigError(f"database {path.name} is corrupt: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn, meta


def create_database(path: Path) -> Connection:
    """Create a new home's database (owner-only, 0600) and apply every migration.

    Raises:
        ConfigError: the file cannot be created or opened.
    """
    conn = connect(path)
    try:
        path.chmod(0o600)
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def close_quietly(conn: Connection) -> None:
    """Close a connection, ignoring a driver error (closing is best effort)."""
    with contextlib.suppress(sqlite3.Error):
        conn.close()
