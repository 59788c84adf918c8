"""The log side of witnessing: the witnesses a home submits its checkpoints to, and the
cosignatures they returned (migration ``0010_witnesses.sql``)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from charter.storage.db import transaction


@dataclass(frozen=True, slots=True)
class WitnessRow:
    """A configured witness and how far it has cosigned."""

    name: str
    vkey: str
    url: str
    size: int
    added_at: str
    last_ok: str | None
    last_error: str | None
    last_try: str | None


_COLUMNS = "name, vkey, url, size, added_at, last_ok, last_error, last_try"


def _row(row: tuple[object, ...]) -> WitnessRow:
    name, vkey, url, size, added, ok, error, tried = row
    return WitnessRow(
        str(name),
        str(vkey),
        str(url),
        int(size),  # type: ignore[call-overload]
        str(added),
        None if ok is None else str(ok),
        None if error is None else str(error),
        None if tried is None else str(tried),
    )


class WitnessRepo:
    """Witnesses and cosignatures of one home.

    Args:
        conn: A connection to the home's database.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def add(self, name: str, vkey: str, url: str, now: str) -> bool:
        """Configure a witness; False if one of that name is configured already."""
        cursor = self.conn.execute(
            "INSERT OR IGNORE INTO witnesses(name, vkey, url, added_at) VALUES (?, ?, ?, ?)",
            (name, vkey, url, now),
        )
        return cursor.rowcount == 1

    def remove(self, name: str) -> bool:
        """Stop submitting to a witness (its cosignatures stay); False if unknown."""
        return self.conn.execute("DELETE FROM witnesses WHERE name = ?", (name,)).rowcount == 1

    def all(self) -> list[WitnessRow]:
        """Every configured witness, by name."""
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM witnesses ORDER BY name")  # noqa: S608
        return [_row(tuple(r)) for r in rows]

    def any(self) -> bool:
        """Whether any witness is configured (one probe)."""
        return self.conn.execute("SELECT 1 FROM witnesses LIMIT 1").fetchone() is not None

    def record_cosignature(self, name: str, size: int, line: str, now: str) -> None:
        """Store a verified cosignature and move the witness to ``size``, atomically."""
        with transaction(self.conn):
            self.conn.execute(
                "INSERT OR IGNORE INTO cosignatures(size, witness, line, created_at)"
                " VALUES (?, ?, ?, ?)",
                (size, name, line, now),
            )
            self.conn.execute(
                "UPDATE witnesses SET size = ?, last_ok = ?, last_error = NULL, last_try = ?"
                " WHERE name = ?",
                (size, now, now, name),
            )

    def record_size(self, name: str, size: int) -> None:
        """The witness says it last cosigned ``size`` (a 409 answer)."""
        self.conn.execute("UPDATE witnesses SET size = ? WHERE name = ?", (size, name))

    def record_failure(self, name: str, error: str, now: str) -> None:
        """Why the last submission to a witness failed."""
        self.conn.execute(
            "UPDATE witnesses SET last_error = ?, last_try = ? WHERE name = ?",
            (error[:500], now, name),
        )

    def lines(self, size: int) -> list[str]:
        """The cosignature lines stored for the checkpoint of ``size``, by witness name."""
        rows = self.conn.execute(
            "SELECT line FROM cosignatures WHERE size = ? ORDER BY witness", (size,)
        )
        return [str(r[0]) for r in rows]

    def has(self, size: int, name: str) -> bool:
        """Whether ``name`` cosigned the checkpoint of ``size``."""
        row = self.conn.execute(
            "SELECT 1 FROM cosignatures WHERE size = ? AND witness = ?", (size, name)
        ).fetchone()
        return row is not None
