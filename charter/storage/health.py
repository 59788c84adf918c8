"""What ``charter doctor`` asks the database: its integrity, and a few facts across domains."""

from __future__ import annotations

from dataclasses import dataclass

from charter.storage.db import Connection


@dataclass(frozen=True, slots=True)
class MailSummary:
    """The configured mail server, as doctor shows it (no password, no CA)."""

    smtp_host: str
    smtp_port: int
    smtp_security: str
    imap_host: str | None
    username: str


class HealthRepo:
    """Read-only checks of one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def integrity_check(self) -> str:
        """The database's own integrity check: ``"ok"``, or the first problem it found."""
        return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])

    def active_agent_kids(self) -> list[tuple[str, str]]:
        """``(name, key id)`` of every active agent, as its charter certifies it."""
        rows = self.conn.execute("SELECT name, kid FROM agents WHERE status='active'")
        return [(str(name), str(kid)) for name, kid in rows]

    def mail_summary(self) -> MailSummary | None:
        """The configured mail server, or None (the local transport)."""
        row = self.conn.execute(
            "SELECT smtp_host, smtp_port, smtp_security, imap_host, username FROM mail_settings"
        ).fetchone()
        return None if row is None else MailSummary(*row)
