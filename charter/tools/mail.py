"""Email for agents: the owner's settings, each agent's mail policy, sending, the outbox.

Sending (:func:`send`) runs in a fixed order, and nothing reaches a mail server before the
ledger holds a signed intent naming the message:

1. validate every argument (:mod:`charter.tools.mail_message`): header injection, addresses,
   sizes — :class:`InvalidInput`;
2. policy: the agent needs an address in its charter, ``email:send:<recipient>`` for each
   recipient and each ``reply_to`` address, a transport that can reach the recipients and
   room under its hourly rate — refusals are recorded as denied calls;
3. render the message (fresh Message-ID and Date) and compute its canonical digest;
4. commit the intent (recipients, subject, digests, Message-ID) and, in the same
   transaction, the message's ``mail_sent`` row after checking the hourly rate again: the
   row exists exactly when the intent does (a full disk or a crash cannot leave one without
   the other);
5. sign ``Charter-Signature`` over the digest and the intent's seq, then hand the message to
   the transport exactly once; its reply goes into the outcome entry.

A transport failure after step 4 is an ``error`` outcome and is never retried: an agent's
retry is a new call with a new Message-ID. Bodies are never stored, only digests.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import hashlib
import json
import re
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from charter.clock import rfc3339
from charter.errors import ConfigError, InvalidInput, NotFound, ServiceError
from charter.storage.db import transaction
from charter.tools import mail_message as mm
from charter.tools.mail_imap import ImapConfig, check_login
from charter.tools.mail_models import SendResult
from charter.tools.mail_transport import (
    SETUP_HINT,
    Envelope,
    LocalTransport,
    SmtpTransport,
    Transport,
    tls_context,
)
from charter.tools.mail_transport import MailDenied as MailDenied  # callers catch it from here

if TYPE_CHECKING:
    from charter.evidence.entries import Entry
    from charter.home import Home
    from charter.storage.ledger import Effect
    from charter.tools.identity import AgentContext

PASSWORD_SECRET = "charter:mail-password"  # noqa: S105 - the vault name, not a password
SECURITY = ("starttls", "tls", "none")
DEFAULT_PORTS = {
    "smtp": {"starttls": 587, "tls": 465, "none": 25},
    "imap": {"tls": 993, "starttls": 143, "none": 143},
}
DEFAULT_RATE_PER_HOUR = 50
MAX_RATE_PER_HOUR = 10_000
MAX_ALLOW_SENDERS = 100
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,251}[A-Za-z0-9])?$")


# -- the owner's settings ---------------------------------------------------------------------


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


def make_settings(
    *,
    smtp_host: str,
    username: str,
    smtp_port: int | None = None,
    smtp_security: str = "starttls",
    imap_host: str | None = None,
    imap_port: int | None = None,
    imap_security: str = "tls",
    ca_pem: str | None = None,
    timeout_s: int = 30,
) -> MailSettings:
    """Validate settings, filling in the usual ports.

    Raises:
        InvalidInput: bad host, port, security mode, username, CA file or timeout.
    """
    for host in (smtp_host, imap_host):
        if host is not None and not _HOST.match(host):
            raise InvalidInput(f"invalid host {host!r}: give a host name or IP address")
    if smtp_security not in SECURITY or imap_security not in SECURITY:
        raise InvalidInput(f"security must be one of {', '.join(SECURITY)}")
    smtp_port = smtp_port or DEFAULT_PORTS["smtp"][smtp_security]
    if imap_host is not None:
        imap_port = imap_port or DEFAULT_PORTS["imap"][imap_security]
    for port in (smtp_port, imap_port):
        if port is not None and not 0 < port < 65536:
            raise InvalidInput(f"invalid port {port}")
    username = mm.check_header_text(username, "username").strip()
    if not 0 < len(username) <= 254:
        raise InvalidInput("username must be 1-254 characters")
    if not 0 < timeout_s <= 600:
        raise InvalidInput("timeout must be between 1 and 600 seconds")
    if ca_pem is not None:
        try:
            tls_context(ca_pem)
        except (ValueError, OSError) as exc:  # ssl.SSLError is an OSError
            raise InvalidInput(f"the CA file is not PEM certificates: {exc}") from None
    return MailSettings(
        smtp_host=smtp_host,
        smtp_port=smtp_port,
        smtp_security=smtp_security,
        username=username,
        imap_host=imap_host,
        imap_port=imap_port if imap_host else None,
        imap_security=imap_security if imap_host else None,
        ca_pem=ca_pem,
        timeout_s=timeout_s,
    )


def load_settings(conn: sqlite3.Connection) -> MailSettings | None:
    """The configured settings, or None (the local transport)."""
    row = conn.execute(
        "SELECT smtp_host, smtp_port, smtp_security, username, imap_host, imap_port,"
        " imap_security, ca_pem, timeout_s FROM mail_settings WHERE id = 1"
    ).fetchone()
    return None if row is None else MailSettings(*row)


def save_settings(
    home: Home,
    settings: MailSettings,
    password: str,
    *,
    passphrase: bytes | None = None,
    vault_passphrase: bytes | None = None,
) -> None:
    """Store the settings, the password (vault) and an owner-signed ``mail.setup`` event.

    Raises:
        InvalidInput: empty password.  ConfigError: the owner key or vault is unavailable.
    """
    from charter.storage.vault import Vault

    if not password:
        raise InvalidInput("the mail password must not be empty")
    s = settings
    home.owner_key(passphrase)  # fail before writing anything if the passphrase is wrong
    with transaction(home.conn):
        Vault(home, passphrase=vault_passphrase).put(
            PASSWORD_SECRET,
            password.encode("utf-8"),
            description="SMTP/IMAP password of charter mail",
            system=True,
        )
        home.conn.execute(
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
                rfc3339(home.clock.now()),
            ),
        )
        home.record_owner_event("mail.setup", settings.public(), passphrase=passphrase)


def clear_settings(home: Home, *, passphrase: bytes | None = None) -> None:
    """Forget the mail server (back to the local transport) and delete the password."""
    from charter.storage.vault import Vault

    with transaction(home.conn):
        home.conn.execute("DELETE FROM mail_settings")
        with contextlib.suppress(NotFound):
            Vault(home).delete(PASSWORD_SECRET)
        home.record_owner_event("mail.clear", {}, passphrase=passphrase)


def mail_password(home: Home) -> str:
    """The mail password from the vault.

    Raises:
        ConfigError: it is missing or the vault cannot be opened.
    """
    from charter.storage.vault import Vault

    try:
        return Vault(home).get(PASSWORD_SECRET).reveal_text()
    except NotFound:
        raise ConfigError(
            "the mail password is missing from the vault: run `charter mail setup` again"
        ) from None


def transport_for(home: Home) -> Transport:
    """SMTP when configured, else the local transport."""
    settings = load_settings(home.conn)
    if settings is None:
        return LocalTransport(home, lambda: agent_addresses(home))
    return SmtpTransport(
        host=settings.smtp_host,
        port=settings.smtp_port,
        security=settings.smtp_security,
        username=settings.username,
        password=mail_password(home),
        ca_pem=settings.ca_pem,
        timeout=float(settings.timeout_s),
    )


def imap_config(home: Home) -> ImapConfig | None:
    """How to log in to IMAP, or None when no IMAP server is configured."""
    settings = load_settings(home.conn)
    if settings is None or settings.imap_host is None or settings.imap_port is None:
        return None
    return ImapConfig(
        host=settings.imap_host,
        port=settings.imap_port,
        security=settings.imap_security or "tls",
        username=settings.username,
        password=mail_password(home),
        ca_pem=settings.ca_pem,
        timeout=float(settings.timeout_s),
    )


def check_imap(home: Home) -> int | None:
    """Log in to IMAP and count INBOX (None when no IMAP server is configured).

    Raises:
        ServiceError: the server is down, refuses TLS or the credentials.
    """
    cfg = imap_config(home)
    return None if cfg is None else check_login(cfg)


# -- each agent's policy (in its owner-signed charter) ----------------------------------------


@dataclass(frozen=True, slots=True)
class EmailPolicy:
    """``policy["email"]`` of a charter."""

    address: str
    rate_per_hour: int = DEFAULT_RATE_PER_HOUR
    max_bytes: int = mm.DEFAULT_MAX_BYTES
    allow_senders: tuple[str, ...] = ()

    def allows_sender(self, sender: str) -> bool:
        """True when no allowlist is set or ``sender`` matches one of its patterns."""
        if not self.allow_senders:
            return True
        return any(fnmatch.fnmatchcase(sender.lower(), p) for p in self.allow_senders)


def email_policy(policy: dict[str, Any]) -> EmailPolicy | None:
    """Read ``policy["email"]`` (None when the agent has no address)."""
    doc = policy.get("email")
    if not isinstance(doc, dict) or not doc.get("address"):
        return None
    try:
        return EmailPolicy(
            address=mm.parse_address(str(doc["address"]), "the charter's email address"),
            rate_per_hour=int(doc.get("rate_per_hour", DEFAULT_RATE_PER_HOUR)),
            max_bytes=int(doc.get("max_bytes", mm.DEFAULT_MAX_BYTES)),
            allow_senders=tuple(str(p).lower() for p in doc.get("allow_senders") or ()),
        )
    except (InvalidInput, TypeError, ValueError):
        # NOTE: fail closed: a policy we cannot read grants no mail at all.
        raise ConfigError(
            "the agent's email policy is malformed; the owner can fix it with "
            "`charter agent update NAME --email ADDRESS`"
        ) from None


def require_policy(agent: AgentContext) -> EmailPolicy:
    """The agent's email policy.

    Raises:
        MailDenied: it has no address.
    """
    policy = email_policy(agent.charter.policy)
    if policy is None:
        raise MailDenied(
            "this agent has no email address; the owner can give it one with "
            f"`charter agent update {agent.name} --email ADDRESS`"
        )
    return policy


def merge_email_policy(
    policy: dict[str, Any],
    *,
    address: str | None = None,
    rate_per_hour: int | None = None,
    max_bytes: int | None = None,
    allow_senders: list[str] | None = None,
) -> dict[str, Any]:
    """Return ``policy`` with its ``email`` entry updated by the given fields (for the CLI).

    Raises:
        InvalidInput: a bad address, limit or pattern, or limits without an address.
    """
    current = dict(policy.get("email") or {})
    if address is not None:
        current["address"] = mm.parse_address(address, "--email")
    if rate_per_hour is not None:
        if not 0 < rate_per_hour <= MAX_RATE_PER_HOUR:
            raise InvalidInput(f"the send rate must be 1-{MAX_RATE_PER_HOUR} per hour")
        current["rate_per_hour"] = rate_per_hour
    if max_bytes is not None:
        if not 0 < max_bytes <= mm.MAX_BYTES_CEILING:
            raise InvalidInput(f"the maximum message size must be 1-{mm.MAX_BYTES_CEILING} bytes")
        current["max_bytes"] = max_bytes
    if allow_senders is not None:
        patterns = sorted({_sender_pattern(p) for p in allow_senders})
        if len(patterns) > MAX_ALLOW_SENDERS:
            raise InvalidInput(f"at most {MAX_ALLOW_SENDERS} sender patterns")
        if patterns:
            current["allow_senders"] = patterns
        else:
            current.pop("allow_senders", None)
    if not current:
        return policy
    if "address" not in current:
        raise InvalidInput("give the agent an address with --email before setting mail limits")
    return policy | {"email": current}


def _sender_pattern(pattern: str) -> str:
    text = mm.check_header_text(pattern, "sender pattern").strip().lower()
    if not 0 < len(text) <= 254 or " " in text:
        raise InvalidInput(f"invalid sender pattern {pattern!r}: use e.g. *@example.com")
    return text


def agent_addresses(home: Home) -> dict[str, tuple[str, ...]]:
    """Lowercased address -> names of the active agents that have it."""
    from charter.tools.identity import list_agents

    out: dict[str, tuple[str, ...]] = {}
    for info in list_agents(home):
        if info.status != "active":
            continue
        try:
            policy = email_policy(info.policy)
        except ConfigError:
            continue  # a malformed policy makes that agent unreachable, not everyone
        if policy is not None:
            key = policy.address.lower()
            out[key] = (*out.get(key, ()), info.name)
    return out


def check_address_free(home: Home, address: str, agent: str) -> None:
    """Refuse giving ``agent`` an address another active agent already has.

    Raises:
        InvalidInput: naming the other agent.
    """
    others = [n for n in agent_addresses(home).get(address.lower(), ()) if n != agent]
    if others:
        raise InvalidInput(f"{address} is already the address of agent {others[0]!r}")


# -- sending ----------------------------------------------------------------------------------


class IntentFn(Protocol):
    """Commits the call's signed intent with ``details``, and ``effects`` in its transaction."""

    def __call__(
        self, details: dict[str, Any], *, effects: tuple[Effect, ...] = ()
    ) -> Awaitable[Entry]: ...


async def send(
    home: Home,
    agent: AgentContext,
    *,
    to: str | list[str] | None,
    subject: str,
    text: str,
    cc: str | list[str] | None = None,
    bcc: str | list[str] | None = None,
    reply_to: str | list[str] | None = None,
    in_reply_to: str | None = None,
    attachments: list[mm.AttachmentIn] | None = None,
    require: Callable[[str], None],
    intent: IntentFn,
    outcome: dict[str, Any],
) -> SendResult:
    """Send one message as ``agent`` (the order of checks is in the module docstring).

    ``require`` checks a scope, ``intent`` commits the signed intent entry, and ``outcome``
    collects the facts for the outcome entry (the server's reply).

    Raises:
        InvalidInput: bad arguments.  ScopeDenied / MailDenied: refused by policy.
        ServiceError: the transport failed after the intent (never retried).
    """
    policy = require_policy(agent)
    mail = mm.validate(
        sender=policy.address,
        to=to,
        cc=cc,
        bcc=bcc,
        reply_to=reply_to,
        in_reply_to=in_reply_to,
        subject=subject,
        text=text,
        attachments=attachments,
        max_bytes=policy.max_bytes,
    )
    # Reply-To is where the answers go: an address outside the recipient policy there would
    # route the conversation to someone the owner never allowed, so it is held to it too.
    for address in (*mail.recipients, *mail.reply_to):
        require(f"email:send:{address.lower()}")
    transport = transport_for(home)
    transport.check(mail.recipients)
    now = home.clock.now()
    message_id = mm.new_message_id(mail.sender)
    unsigned = mm.render(
        mail, message_id=message_id, date=mm.format_date(now), agent_id=agent.agent_id
    )
    digest = mm.message_digest(mm.parse(unsigned))
    _check_rate(home.conn, agent.name, policy, now)  # refuse early; checked again at the intent
    details = {
        "message_id": message_id,
        "from": mail.sender,
        "to": list(mail.to),
        "cc": list(mail.cc),
        "bcc": list(mail.bcc),
        "subject": mail.subject[:200],
        "text_sha256": hashlib.sha256(mm.canonical_text(mail.text).encode()).hexdigest(),
        "attachments": [
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "size": len(a.data),
                "sha256": hashlib.sha256(a.data).hexdigest(),
            }
            for a in mail.attachments
        ],
        "size": mail.size,
        "digest": digest,
        "transport": transport.name,
    }
    row = _Reservation(agent.name, mail, message_id, digest, transport.name, policy, now)
    entry = await intent(details, effects=(row.insert,))
    jws = mm.sign(
        agent.key,
        digest=digest,
        seq=entry.seq,
        ledger=home.origin,
        agent_id=agent.agent_id,
        charter_hash=agent.charter.hash,
    )
    _finish(home, message_id, "sending", None, expect="reserved", seq=entry.seq)
    envelope = Envelope(message_id, mail.sender, mail.recipients, agent.agent_id)
    try:
        delivery = await transport.deliver(envelope, mm.add_signature(unsigned, jws))
    except BaseException as exc:
        reason = getattr(exc, "public_message", None) or "internal error"
        _finish(home, message_id, "failed", reason, expect="sending")
        raise
    _finish(home, message_id, "sent", delivery.reply, expect="sending")
    outcome["reply"] = delivery.reply
    if delivery.refused:
        outcome["refused"] = delivery.refused
    return SendResult(
        message_id=message_id,
        recipients=list(mail.recipients),
        transport="local" if transport.name == "local" else "smtp",
        reply=delivery.reply,
        refused=delivery.refused,
        ledger_seq=entry.seq,
    )


def _check_rate(
    conn: sqlite3.Connection, agent: str, policy: EmailPolicy, now: dt.datetime
) -> None:
    """Refuse a send when the agent's hourly rate is used up.

    Raises:
        MailDenied: the agent already sent ``rate_per_hour`` messages in the last hour.
    """
    since = rfc3339(now - dt.timedelta(hours=1))
    (count,) = conn.execute(
        "SELECT count(*) FROM mail_sent WHERE agent = ? AND created_at > ?"
        " AND status != 'aborted'",  # rows of earlier versions: their intent never committed
        (agent, since),
    ).fetchone()
    if count >= policy.rate_per_hour:
        raise MailDenied(
            f"rate limit: this agent may send {policy.rate_per_hour} messages per hour and "
            f"has sent {count} in the last hour; try again later"
        )


@dataclass(frozen=True)
class _Reservation:
    """The ``mail_sent`` row of a message, inserted with its intent entry (a ledger effect)."""

    agent: str
    mail: mm.OutgoingMail
    message_id: str
    digest: str
    transport: str
    policy: EmailPolicy
    now: dt.datetime

    def insert(self, conn: sqlite3.Connection) -> None:
        """Check the rate again (under the write lock) and insert the row as ``reserved``.

        Raises:
            MailDenied: the rate was reached meanwhile; the intent is not recorded.
        """
        _check_rate(conn, self.agent, self.policy, self.now)
        mail = self.mail
        conn.execute(
            "INSERT INTO mail_sent(message_id, agent, sender, recipients, subject, digest, size,"
            " transport, status, created_at) VALUES (?,?,?,?,?,?,?,?, 'reserved', ?)",
            (
                self.message_id,
                self.agent,
                mail.sender,
                json.dumps({"to": mail.to, "cc": mail.cc, "bcc": mail.bcc}),
                mail.subject,
                self.digest,
                mail.size,
                self.transport,
                rfc3339(self.now),
            ),
        )


def _finish(
    home: Home,
    message_id: str,
    status: str,
    reply: str | None,
    *,
    expect: str,
    seq: int | None = None,
) -> None:
    """Move a row from ``expect`` to ``status``; anything else is a bug (never send twice)."""
    with transaction(home.conn):
        cur = home.conn.execute(
            "UPDATE mail_sent SET status = ?, reply = coalesce(?, reply),"
            " intent_seq = coalesce(?, intent_seq), finished_at = ?"
            " WHERE message_id = ? AND status = ?",
            (status, reply, seq, rfc3339(home.clock.now()), message_id, expect),
        )
    if cur.rowcount != 1:
        raise RuntimeError(f"mail_sent row {message_id} is not {expect!r}; refusing to go on")


# -- the owner's checks ----------------------------------------------------------------------


async def send_test(
    home: Home, *, to: str, sender: str | None = None, passphrase: bytes | None = None
) -> str:
    """Send a test message through the configured SMTP server; return its reply.

    Recorded as owner-signed ``mail.test`` (before sending) and ``mail.test.result`` events.

    Raises:
        ConfigError: no mail server is configured.  InvalidInput: bad address.
        ServiceError: the server failed (the result event says so too).
    """
    transport = transport_for(home)
    settings = load_settings(home.conn)
    if settings is None or not isinstance(transport, SmtpTransport):
        raise ConfigError(
            "no mail server is configured (the local transport is in use). " + SETUP_HINT
        )
    mail = mm.validate(
        sender=sender or settings.username,
        to=[to],
        subject="Charter mail test",
        text="This message was sent by `charter mail test` to check the mail settings.\n",
    )
    message_id = mm.new_message_id(mail.sender)
    raw = mm.render(
        mail, message_id=message_id, date=mm.format_date(home.clock.now()), agent_id=None
    )
    facts = {"to": to, "from": mail.sender, "message_id": message_id, "server": transport.where}
    home.record_owner_event("mail.test", facts, passphrase=passphrase)
    envelope = Envelope(message_id, mail.sender, mail.recipients, home.owner_id)
    try:
        delivery = await transport.deliver(envelope, raw)
    except ServiceError as exc:
        home.record_owner_event(
            "mail.test.result", facts | {"error": exc.public_message}, outcome="error"
        )
        raise
    home.record_owner_event("mail.test.result", facts | {"reply": delivery.reply})
    return delivery.reply


# -- the outbox -------------------------------------------------------------------------------


#: A send still ``reserved`` or ``sending`` this long after it began was cut off (its server
#: stopped): every step of a transport times out within ``timeout_s`` (at most 600 s).
INTERRUPTED_AFTER = dt.timedelta(hours=1)
#: What such a send's state says: the row moves to ``sending`` just before the transport
#: gets the message (its intent is committed with the row, before either).
_INTERRUPTED = {
    "reserved": "interrupted before the transport got it: not sent",
    "sending": "interrupted while the transport had it: delivery unknown",
}


class OutboxEntry(BaseModel):
    """One message an agent sent (or tried to): no body, only its digest."""

    message_id: str
    agent: str
    sender: str
    to: list[str]
    cc: list[str]
    bcc: list[str]
    subject: str
    size: int
    digest: str
    transport: str
    status: str
    reply: str | None
    ledger_seq: int | None
    created_at: str
    #: Set for a send that stopped halfway (its server was killed or lost power), saying
    #: whether the message can have gone out; see :data:`INTERRUPTED_AFTER`.
    interrupted: str | None = None


def outbox(
    conn: sqlite3.Connection,
    *,
    agent: str | None = None,
    limit: int = 50,
    now: dt.datetime | None = None,
) -> list[OutboxEntry]:
    """The latest sends, newest first (optionally one agent's).

    With ``now``, a send still unfinished :data:`INTERRUPTED_AFTER` after it began is marked
    ``interrupted``.
    """
    stale = None if now is None else rfc3339(now - INTERRUPTED_AFTER)
    rows = conn.execute(
        "SELECT message_id, agent, sender, recipients, subject, size, digest, transport, status,"
        " reply, intent_seq, created_at FROM mail_sent WHERE (? IS NULL OR agent = ?)"
        " ORDER BY id DESC LIMIT ?",
        (agent, agent, limit),
    ).fetchall()
    out = []
    for r in rows:
        rcpt = json.loads(r[3])
        out.append(
            OutboxEntry(
                message_id=r[0],
                agent=r[1],
                sender=r[2],
                to=rcpt["to"],
                cc=rcpt["cc"],
                bcc=rcpt["bcc"],
                subject=r[4],
                size=r[5],
                digest=r[6],
                transport=r[7],
                status=r[8],
                reply=r[9],
                ledger_seq=r[10],
                created_at=r[11],
                interrupted=_INTERRUPTED.get(r[8]) if stale is not None and r[11] < stale else None,
            )
        )
    return out
