"""The DPoP replay cache (``dpop_jtis``): each accepted proof's ``(jkt, jti)`` until it expires.

Every server of a deployment shares the home's store, so a proof accepted by one is refused
by all of them the second time. Times are RFC 3339 strings (UTC), which compare in time
order as text. ``INSERT ... ON CONFLICT DO NOTHING`` is atomic in SQLite and PostgreSQL
alike: of two servers racing to accept the same proof, exactly one succeeds.
"""

from __future__ import annotations

from charter.storage.db import Connection


class DpopReplayRepo:
    """The ``dpop_jtis`` table."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def remember(self, jkt: str, jti: str, *, expires_at: str, now: str) -> bool:
        """Record proof ``jti`` of key ``jkt`` until ``expires_at``; False if it is already
        recorded (a replay). Entries expired at ``now`` are pruned first."""
        self.conn.execute("DELETE FROM dpop_jtis WHERE expires_at <= ?", (now,))
        cursor = self.conn.execute(
            "INSERT INTO dpop_jtis(jkt, jti, expires_at) VALUES (?,?,?)"
            " ON CONFLICT (jkt, jti) DO NOTHING",
            (jkt, jti, expires_at),
        )
        return cursor.rowcount > 0

    def count(self) -> int:
        """How many proofs are remembered (expired ones not yet pruned included)."""
        return int(self.conn.execute("SELECT COUNT(*) FROM dpop_jtis").fetchone()[0])
