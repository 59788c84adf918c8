"""The owner's kill switch: ``lockdowns`` (one row per lockdown; the one in force has no
``lifted_at``) and ``lockdown_agents`` (whom each revoked, and when each was reinstated)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from charter.storage.db import Connection


@dataclass(frozen=True, slots=True)
class LockdownRecord:
    """One row of ``lockdowns``."""

    id: int
    started_at: str
    reason: str | None
    lifted_at: str | None

    @property
    def active(self) -> bool:
        """In force (not lifted yet)."""
        return self.lifted_at is None


class LockdownRepo:
    """The ``lockdowns`` and ``lockdown_agents`` tables. Callers hold the transaction."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def latest(self) -> LockdownRecord | None:
        """The most recent lockdown (in force or lifted), or None if there never was one."""
        row = self._conn.execute(
            "SELECT id, started_at, reason, lifted_at FROM lockdowns ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else LockdownRecord(*row)

    def insert(self, *, started_at: str, reason: str | None) -> int:
        """Start a lockdown; returns its id."""
        cur = self._conn.execute(
            "INSERT INTO lockdowns(started_at, reason) VALUES (?, ?)", (started_at, reason)
        )
        assert cur.lastrowid is not None  # an INSERT into a rowid table always sets it
        return cur.lastrowid

    def mark_lifted(self, lockdown_id: int, *, at: str) -> None:
        """End lockdown ``lockdown_id`` at ``at`` (RFC 3339)."""
        self._conn.execute("UPDATE lockdowns SET lifted_at = ? WHERE id = ?", (at, lockdown_id))

    def add_agents(self, lockdown_id: int, names: Iterable[str]) -> None:
        """Record the agents lockdown ``lockdown_id`` revoked."""
        self._conn.executemany(
            "INSERT INTO lockdown_agents(lockdown_id, agent) VALUES (?, ?)",
            [(lockdown_id, name) for name in names],
        )

    def agents_of(self, lockdown_id: int) -> list[str]:
        """The agents lockdown ``lockdown_id`` revoked, sorted."""
        return [
            r[0]
            for r in self._conn.execute(
                "SELECT agent FROM lockdown_agents WHERE lockdown_id = ? ORDER BY agent",
                (lockdown_id,),
            )
        ]

    def list_awaiting_reinstatement(self) -> list[str]:
        """Agents a lockdown revoked that are still revoked and not reinstated, sorted."""
        return [
            r[0]
            for r in self._conn.execute(
                "SELECT DISTINCT la.agent FROM lockdown_agents la JOIN agents a"
                " ON a.name = la.agent WHERE la.reinstated_at IS NULL AND a.status = 'revoked'"
                " ORDER BY la.agent"
            )
        ]

    def find_unreinstated(self, agent: str) -> int | None:
        """The id of a lockdown that revoked ``agent`` and has not seen it reinstated."""
        row = self._conn.execute(
            "SELECT lockdown_id FROM lockdown_agents WHERE agent = ? AND reinstated_at IS NULL",
            (agent,),
        ).fetchone()
        return None if row is None else int(row[0])

    def mark_reinstated(self, agent: str, *, at: str) -> None:
        """Record that ``agent`` was reinstated at ``at`` (after every lockdown that revoked it)."""
        self._conn.execute(
            "UPDATE lockdown_agents SET reinstated_at = ?"
            " WHERE agent = ? AND reinstated_at IS NULL",
            (at, agent),
        )
