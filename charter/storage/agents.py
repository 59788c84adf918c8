"""Agents and their charters: the ``agents`` (current state) and ``charters`` (every charter
ever issued) tables. The history of both is in the ledger; these rows are what is current."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from charter.errors import ConfigError
from charter.storage.db import Connection


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """One row of ``agents`` (without the public key, which the charter carries)."""

    name: str
    agent_id: str
    kid: str
    charter_hash: str
    status: str
    created_at: str
    revoked_at: str | None
    revoked_reason: str | None


@dataclass(frozen=True, slots=True)
class AgentId:
    """An agent's local name and its SPIFFE ID."""

    name: str
    agent_id: str


class AgentRepo:
    """The ``agents`` and ``charters`` tables. Callers hold the transaction."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    # -- agents --------------------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        """Whether an agent named ``name`` exists (active or revoked)."""
        return (
            self._conn.execute("SELECT 1 FROM agents WHERE name = ?", (name,)).fetchone()
            is not None
        )

    def insert(
        self,
        *,
        name: str,
        agent_id: str,
        public_key: str,
        kid: str,
        charter_hash: str,
        created_at: str,
    ) -> bool:
        """Add an active agent. False (nothing written) when its name, id or key is taken."""
        try:
            self._conn.execute(
                "INSERT INTO agents(name, agent_id, public_key, kid, charter_hash, status,"
                " created_at) VALUES (?,?,?,?,?, 'active', ?)",
                (name, agent_id, public_key, kid, charter_hash, created_at),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def get(self, name: str) -> AgentRecord | None:
        """One agent's current state, or None."""
        row = self._conn.execute(
            "SELECT name, agent_id, kid, charter_hash, status, created_at, revoked_at,"
            " revoked_reason FROM agents WHERE name = ?",
            (name,),
        ).fetchone()
        return None if row is None else AgentRecord(*row)

    def status(self, name: str) -> str | None:
        """``active`` or ``revoked``; None for an unknown agent."""
        row = self._conn.execute("SELECT status FROM agents WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def list_names(self) -> list[str]:
        """Every agent's name, sorted."""
        return [r[0] for r in self._conn.execute("SELECT name FROM agents ORDER BY name")]

    def list_active(self) -> list[AgentId]:
        """The active agents, by name."""
        rows = self._conn.execute(
            "SELECT name, agent_id FROM agents WHERE status = 'active' ORDER BY name"
        ).fetchall()
        return [AgentId(name, agent_id) for name, agent_id in rows]

    def set_charter(self, name: str, charter_hash: str) -> None:
        """Point agent ``name`` at a new charter."""
        self._conn.execute(
            "UPDATE agents SET charter_hash = ? WHERE name = ?", (charter_hash, name)
        )

    def mark_revoked(self, name: str, *, at: str, reason: str | None) -> None:
        """Revoke agent ``name`` at ``at`` (RFC 3339)."""
        self._conn.execute(
            "UPDATE agents SET status='revoked', revoked_at=?, revoked_reason=? WHERE name=?",
            (at, reason, name),
        )

    def mark_all_revoked(self, *, at: str, reason: str) -> None:
        """Revoke every active agent at once (the lockdown)."""
        self._conn.execute(
            "UPDATE agents SET status = 'revoked', revoked_at = ?, revoked_reason = ?"
            " WHERE status = 'active'",
            (at, reason),
        )

    def mark_active(self, name: str, charter_hash: str) -> None:
        """Make a revoked agent active again under a new charter (reinstatement)."""
        self._conn.execute(
            "UPDATE agents SET status = 'active', charter_hash = ?, revoked_at = NULL,"
            " revoked_reason = NULL WHERE name = ?",
            (charter_hash, name),
        )

    # -- sub-agents (issue 21) ------------------------------------------------------------------

    def set_parent(self, name: str, *, parent: str, parent_charter: str, depth: int) -> None:
        """Record that ``name`` was delegated by agent ``parent`` under its charter
        ``parent_charter`` (a hash), at ``depth``."""
        self._conn.execute(
            "UPDATE agents SET parent = ?, parent_charter = ?, depth = ? WHERE name = ?",
            (parent, parent_charter, depth, name),
        )

    def parents(self) -> dict[str, str]:
        """Every sub-agent's parent, by the sub-agent's name."""
        rows = self._conn.execute("SELECT name, parent FROM agents WHERE parent IS NOT NULL")
        return {str(name): str(parent) for name, parent in rows}

    def descendants(self, name: str) -> list[str]:
        """The names of every agent delegated, directly or not, by ``name``."""
        rows = self._conn.execute(
            "WITH RECURSIVE d(name) AS (SELECT name FROM agents WHERE parent = ?"
            " UNION SELECT a.name FROM agents a JOIN d ON a.parent = d.name)"
            " SELECT name FROM d ORDER BY name",
            (name,),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def insert_charter(
        self, charter_hash: str, *, agent_name: str, body: bytes, issued_at: str
    ) -> None:
        """Store a charter (its canonical JSON bytes) under its hash.

        Raises:
            ConfigError: a charter with that hash is already stored.
        """
        try:
            self._conn.execute(
                "INSERT INTO charters(hash, agent_name, body, issued_at) VALUES (?,?,?,?)",
                (charter_hash, agent_name, body, issued_at),
            )
        except sqlite3.IntegrityError as exc:
            raise ConfigError(f"charter {charter_hash[:12]}… is already stored") from exc

    def charter_body(self, charter_hash: str) -> bytes | None:
        """A stored charter's canonical JSON bytes, or None."""
        row = self._conn.execute(
            "SELECT body FROM charters WHERE hash = ?", (charter_hash,)
        ).fetchone()
        return None if row is None else bytes(row[0])
