"""Owners of an organization home (issue 28): the ``owners`` table and ``agents.owner_id``.

Certificates and removals are in the ledger (``owner.certify``, ``owner.remove``); these rows
are what is current. A home without an organization has no owner rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from charter.errors import InvalidInput
from charter.storage.db import Connection


@dataclass(frozen=True, slots=True)
class OwnerRecord:
    """One row of ``owners``."""

    kid: str
    owner_id: str
    public_key: str
    cert_hash: str
    certificate: str
    not_after: str
    status: str
    added_at: str
    removed_at: str | None


_SELECT = (
    "SELECT kid, owner_id, public_key, cert_hash, certificate, not_after, status, added_at,"
    " removed_at FROM owners"
)


class OwnerRepo:
    """The ``owners`` table and the owner of each agent. Callers hold the transaction."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def insert(
        self,
        *,
        kid: str,
        owner_id: str,
        public_key: str,
        cert_hash: str,
        certificate: str,
        not_after: str,
        added_at: str,
    ) -> None:
        """Add a current owner.

        Raises:
            InvalidInput: the email is a current owner's, or the key was ever certified.
        """
        if self.active(owner_id) is not None:
            raise InvalidInput(f"{owner_id} is already an owner (see `charter owner list`)")
        if self.by_kid(kid) is not None:
            raise InvalidInput("that public key already belongs to an owner (current or removed)")
        self._conn.execute(
            "INSERT INTO owners(kid, owner_id, public_key, cert_hash, certificate, not_after,"
            " status, added_at, removed_at) VALUES (?,?,?,?,?,?, 'active', ?, NULL)",
            (kid, owner_id, public_key, cert_hash, certificate, not_after, added_at),
        )

    def active(self, owner_id: str) -> OwnerRecord | None:
        """The current owner with this email, or None."""
        row = self._conn.execute(
            _SELECT + " WHERE owner_id = ? AND status = 'active'",
            (owner_id,),
        ).fetchone()
        return None if row is None else OwnerRecord(*row)

    def by_kid(self, kid: str) -> OwnerRecord | None:
        """The owner (current or removed) whose key has id ``kid``, or None."""
        row = self._conn.execute(_SELECT + " WHERE kid = ?", (kid,)).fetchone()
        return None if row is None else OwnerRecord(*row)

    def all_owners(self) -> list[OwnerRecord]:
        """Every owner, current first, by email."""
        rows = self._conn.execute(_SELECT + " ORDER BY status, owner_id, added_at").fetchall()
        return [OwnerRecord(*r) for r in rows]

    def mark_removed(self, kid: str, *, at: str) -> None:
        """Remove owner ``kid`` for good."""
        self._conn.execute(
            "UPDATE owners SET status = 'removed', removed_at = ? WHERE kid = ?", (at, kid)
        )

    # -- the owner of each agent ---------------------------------------------------------------

    def set_agent_owner(self, name: str, owner_id: str) -> None:
        """Record that agent ``name`` belongs to ``owner_id``."""
        self._conn.execute("UPDATE agents SET owner_id = ? WHERE name = ?", (owner_id, name))

    def agent_owner(self, name: str) -> str | None:
        """The owner of agent ``name`` (None: the home's single owner, or no such agent)."""
        row = self._conn.execute("SELECT owner_id FROM agents WHERE name = ?", (name,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def active_agents_of(self, owner_id: str) -> list[tuple[str, str]]:
        """``(name, agent_id)`` of the owner's active agents."""
        rows = self._conn.execute(
            "SELECT name, agent_id FROM agents WHERE owner_id = ? AND status = 'active'"
            " ORDER BY name",
            (owner_id,),
        ).fetchall()
        return [(str(n), str(i)) for n, i in rows]

    def revoke_agents_of(self, owner_id: str, *, at: str, reason: str) -> None:
        """Revoke every active agent of ``owner_id`` (the cascade of an owner's removal)."""
        self._conn.execute(
            "UPDATE agents SET status = 'revoked', revoked_at = ?, revoked_reason = ?"
            " WHERE owner_id = ? AND status = 'active'",
            (at, reason, owner_id),
        )
