"""The mail tables: the owner's mail server settings (``mail_settings``), the send log
(``mail_sent``) and the local transport's mailboxes (``mail_local_inbox``).

:class:`MailRepo` runs every statement on these tables; callers hold the transactions
(``charter.storage.db.transaction``) around calls that must be atomic. The send log's states
are in ``migrations/0005_mail.sql``: ``reserved -> sending -> sent | failed``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from charter.storage.db import Connection


@dataclass(frozen=True, slots=True)
class MailSettings:
    """Mail server settings (the password is in the vault, never here)."""

    smtp_host: str
    smtp_port: int
    smtp_security: str
    username: str
    imap_host: str | None = None
    imap_port: int | None = None
    imap_security: str | None = None
    ca_pem: str | None = field(default=None, repr=False)
    timeout_s: int = 30

    def public(self) -> dict[str, Any]:
        """What may be shown and recorded (the CA as a hash)."""
        out = asdict(self)
        pem = out.pop("ca_pem")
        out["ca_sha256"] = hashlib.sha256(pem.encode()).hexdigest() if pem else None
        return out


@dataclass(frozen=True, slots=True)
class NewSend:
    """A message that passed policy, to be logged as ``reserved`` with its intent."""

    message_id: str
    agent: str
    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    subject: str
    digest: str
    size: int
    transport: str
    created_at: str


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One row of the send log (never a body: its digest)."""

    message_id: str
    agent: str
    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    subject: str
    size: int
    digest: str
    transport: str
    status: str
    reply: str | None
    intent_seq: int | None
    created_at: str


@dataclass(frozen=True, slots=True)
class LocalMessage:
    """One message in an agent's local mailbox."""

    id: int
    raw: bytes
    seen: bool
    sender_agent: str


class MailRepo:
    """The mail tables over one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- the owner's settings (one row; absent: the local transport) -------------------------

    def get_settings(self) -> MailSettings | None:
        """The configured settings, or None."""
        row = self.conn.execute(
            "SELECT smtp_host, smtp_port, smtp_security, username, imap_host, imap_port,"
            " imap_security, ca_pem, timeout_s FROM mail_settings WHERE id = 1"
        ).fetchone()
        return None if row is None else MailSettings(*row)

    def save_settings(self, settings: MailSettings, *, updated_at: str) -> None:
        """Store ``settings``, replacing any earlier ones."""
        s = settings
        self.conn.execute(
            "INSERT OR REPLACE INTO mail_settings(id, smtp_host, smtp_port, smtp_security,"
            " imap_host, imap_port, imap_security, username, ca_pem, timeout_s, updated_at)"
            " VALUES (1,?,?,?,?,?,?,?,?,?,?)",
            (
                s.smtp_host,
                s.smtp_port,
                s.smtp_security,
                s.imap_host,
                s.imap_port,
                s.imap_security,
                s.username,
                s.ca_pem,
                s.timeout_s,
                updated_at,
            ),
        )

    def clear_settings(self) -> None:
        """Forget the settings."""
        self.conn.execute("DELETE FROM mail_settings")

    # -- the send log -------------------------------------------------------------------------

    def count_sent_since(self, agent: str, since: str, *, limit: int) -> int:
        """How many messages ``agent`` logged after ``since`` (``aborted`` rows excepted),
        counting no further than ``limit`` (a rate check needs no more)."""
        (count,) = self.conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM mail_sent WHERE agent = ? AND created_at > ?"
            " AND status != 'aborted'"  # rows of earlier versions: their intent never committed
            " LIMIT ?) AS recent",
            (agent, since, limit),
        ).fetchone()
        return int(count)

    def reserve(self, send: NewSend) -> bool:
        """Log ``send`` as ``reserved``; False (nothing written) when the row breaks a
        constraint. Its Message-ID is not checked for uniqueness here (migration 0016): Charter
        makes each one from 128 random bits, and :meth:`change_status` moves a row only when
        exactly one matches."""
        recipients = json.dumps({"to": send.to, "cc": send.cc, "bcc": send.bcc})
        try:
            self.conn.execute(
                "INSERT INTO mail_sent(message_id, agent, sender, recipients, subject, digest,"
                " size, transport, status, created_at) VALUES (?,?,?,?,?,?,?,?, 'reserved', ?)",
                (
                    send.message_id,
                    send.agent,
                    send.sender,
                    recipients,
                    send.subject,
                    send.digest,
                    send.size,
                    send.transport,
                    send.created_at,
                ),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def change_status(
        self,
        message_id: str,
        status: str,
        *,
        agent: str,
        created_at: str,
        expect: str,
        finished_at: str,
        reply: str | None = None,
        intent_seq: int | None = None,
    ) -> bool:
        """Move the row of ``message_id`` (sent by ``agent``, logged at ``created_at``) from
        ``expect`` to ``status``, keeping its reply and intent seq unless given; False (and
        nothing changed) unless exactly one such row is in ``expect``."""
        cur = self.conn.execute(
            "UPDATE mail_sent SET status = ?, reply = coalesce(?, reply),"
            " intent_seq = coalesce(?, intent_seq), finished_at = ?"
            " WHERE agent = ? AND created_at = ? AND message_id = ? AND status = ?",
            (status, reply, intent_seq, finished_at, agent, created_at, message_id, expect),
        )
        if cur.rowcount > 1:
            raise sqlite3.IntegrityError(f"{cur.rowcount} send-log rows hold {message_id}")
        return cur.rowcount == 1

    def list_sent(self, *, agent: str | None = None, limit: int = 50) -> list[SentMessage]:
        """The latest rows, newest first (optionally one agent's)."""
        rows = self.conn.execute(
            "SELECT message_id, agent, sender, recipients, subject, size, digest, transport,"
            " status, reply, intent_seq, created_at FROM mail_sent"
            " WHERE (CAST(? AS TEXT) IS NULL OR agent = ?) ORDER BY id DESC LIMIT ?",
            (agent, agent, limit),
        ).fetchall()
        out = []
        for r in rows:
            rcpt = json.loads(r[3])
            out.append(
                SentMessage(
                    message_id=r[0],
                    agent=r[1],
                    sender=r[2],
                    to=tuple(rcpt["to"]),
                    cc=tuple(rcpt["cc"]),
                    bcc=tuple(rcpt["bcc"]),
                    subject=r[4],
                    size=r[5],
                    digest=r[6],
                    transport=r[7],
                    status=r[8],
                    reply=r[9],
                    intent_seq=r[10],
                    created_at=r[11],
                )
            )
        return out

    # -- the local mailboxes ------------------------------------------------------------------

    def deliver_local(
        self,
        agents: Sequence[str],
        *,
        message_id: str,
        sender_agent: str,
        raw: bytes,
        received_at: str,
    ) -> bool:
        """Put one copy of the message in each agent's mailbox; False when a mailbox already
        holds that Message-ID (the caller rolls its transaction back)."""
        try:
            self.conn.executemany(
                "INSERT INTO mail_local_inbox(agent, message_id, sender_agent, raw, received_at)"
                " VALUES (?,?,?,?,?)",
                [(name, message_id, sender_agent, raw, received_at) for name in agents],
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def list_local(self, agent: str, *, unread_only: bool, limit: int) -> list[LocalMessage]:
        """The newest messages in ``agent``'s mailbox, newest first."""
        rows = self.conn.execute(
            "SELECT id, raw, seen, sender_agent FROM mail_local_inbox WHERE agent = ?"
            " AND (? = 0 OR seen = 0) ORDER BY id DESC LIMIT ?",
            (agent, int(unread_only), limit),
        ).fetchall()
        return [_local(r) for r in rows]

    def find_local(
        self, agent: str, *, local_id: int | None = None, message_id: str | None = None
    ) -> LocalMessage | None:
        """The message in ``agent``'s mailbox with this local id (else this Message-ID)."""
        if local_id is not None:
            row = self.conn.execute(
                "SELECT id, raw, seen, sender_agent FROM mail_local_inbox"
                " WHERE agent = ? AND id = ?",
                (agent, local_id),
            ).fetchone()
        else:
            row = self.conn.execute(
                "SELECT id, raw, seen, sender_agent FROM mail_local_inbox"
                " WHERE agent = ? AND message_id = ?",
                (agent, message_id),
            ).fetchone()
        return None if row is None else _local(row)

    def mark_seen(self, local_id: int) -> None:
        """Mark a local message read."""
        self.conn.execute("UPDATE mail_local_inbox SET seen = 1 WHERE id = ?", (local_id,))


def _local(row: tuple[Any, ...]) -> LocalMessage:
    return LocalMessage(
        id=int(row[0]), raw=bytes(row[1]), seen=bool(row[2]), sender_agent=str(row[3])
    )
