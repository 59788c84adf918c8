"""The owner's mail server settings (SMTP, optionally IMAP), the password in the vault, the
transport they select, and the owner's checks (``charter mail test``)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import TYPE_CHECKING

from charter.clock import rfc3339
from charter.errors import ConfigError, InvalidInput, NotFound, ServiceError
from charter.storage.mail import MailSettings as MailSettings  # defined with its table
from charter.tools.mail import message as mm
from charter.tools.mail.imap import ImapConfig, check_login
from charter.tools.mail.policy import addresses_in
from charter.tools.mail.transport import (
    SETUP_HINT,
    Envelope,
    LocalTransport,
    SmtpTransport,
    Transport,
    tls_context,
)

if TYPE_CHECKING:
    from charter.home import Home
    from charter.storage.ports import Tx

PASSWORD_SECRET = "charter:mail-password"  # noqa: S105 - the vault name, not a password
SECURITY = ("starttls", "tls", "none")
DEFAULT_PORTS = {
    "smtp": {"starttls": 587, "tls": 465, "none": 25},
    "imap": {"tls": 993, "starttls": 143, "none": 143},
}
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,251}[A-Za-z0-9])?$")


# -- the owner's settings ---------------------------------------------------------------------


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


async def load_settings(home: Home) -> MailSettings | None:
    """The configured settings, or None (the local transport)."""
    return await home.read(lambda tx: tx.mail.get_settings())


async def save_settings(
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
    event = home.owner_event("mail.setup", settings.public(), passphrase=passphrase)
    vault = Vault(home.signer, home.clock, passphrase=vault_passphrase)
    now = rfc3339(home.clock.now())

    def work(tx: Tx) -> None:
        vault.put(
            tx,
            PASSWORD_SECRET,
            password.encode("utf-8"),
            description="SMTP/IMAP password of charter mail",
            system=True,
        )
        tx.mail.save_settings(settings, updated_at=now)
        tx.ledger.append_one(event)

    await home.write(work)
    _LOCAL_HOMES.discard(home.origin)  # other processes find out in their next send


async def clear_settings(home: Home, *, passphrase: bytes | None = None) -> None:
    """Forget the mail server (back to the local transport) and delete the password."""
    from charter.storage.vault import Vault

    event = home.owner_event("mail.clear", {}, passphrase=passphrase)
    vault = Vault(home.signer, home.clock)

    def work(tx: Tx) -> None:
        tx.mail.clear_settings()
        with contextlib.suppress(NotFound):
            vault.delete(tx, PASSWORD_SECRET)
        tx.ledger.append_one(event)

    await home.write(work)


async def mail_password(home: Home) -> str:
    """The mail password from the vault.

    Raises:
        ConfigError: it is missing or the vault cannot be opened.
    """
    from charter.storage.vault import Vault

    vault = Vault(home.signer, home.clock)
    try:
        value = await home.read(lambda tx: vault.get(tx, PASSWORD_SECRET))
        return value.reveal_text()
    except NotFound:
        raise ConfigError(
            "the mail password is missing from the vault: run `charter mail setup` again"
        ) from None


#: Homes (by ledger origin) whose mail settings this process last found absent: a send
#: there takes the local transport without reading them again (one trip to the store's
#: thread less per send), and the local send's own transaction checks that they are still
#: absent (:func:`settings_changed`).
_LOCAL_HOMES: set[str] = set()


async def transport_for(home: Home) -> Transport:
    """SMTP when configured, else the local transport."""
    if home.origin in _LOCAL_HOMES:
        return LocalTransport(home, lambda tx: addresses_in(home, tx))
    settings = await load_settings(home)
    if settings is None:
        _LOCAL_HOMES.add(home.origin)
        return LocalTransport(home, lambda tx: addresses_in(home, tx))
    return SmtpTransport(
        host=settings.smtp_host,
        port=settings.smtp_port,
        security=settings.smtp_security,
        username=settings.username,
        password=await mail_password(home),
        ca_pem=settings.ca_pem,
        timeout=float(settings.timeout_s),
    )


def settings_changed(home: Home, tx: Tx) -> ServiceError | None:
    """Inside a local send's transaction: the error that refuses it when the owner configured
    a mail server since :func:`transport_for` chose the local transport (which it then no
    longer chooses), else None."""
    if tx.mail.get_settings() is None:
        return None
    _LOCAL_HOMES.discard(home.origin)
    return ServiceError(
        "the owner configured a mail server while this message was being sent; nothing was "
        "sent: send it again"
    )


async def imap_config(home: Home) -> ImapConfig | None:
    """How to log in to IMAP, or None when no IMAP server is configured."""
    settings = await load_settings(home)
    if settings is None or settings.imap_host is None or settings.imap_port is None:
        return None
    return ImapConfig(
        host=settings.imap_host,
        port=settings.imap_port,
        security=settings.imap_security or "tls",
        username=settings.username,
        password=await mail_password(home),
        ca_pem=settings.ca_pem,
        timeout=float(settings.timeout_s),
    )


async def check_imap(home: Home) -> int | None:
    """Log in to IMAP and count INBOX (None when no IMAP server is configured).

    Raises:
        ServiceError: the server is down, refuses TLS or the credentials.
    """
    cfg = await imap_config(home)
    return None if cfg is None else await asyncio.to_thread(check_login, cfg)


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
    transport = await transport_for(home)
    settings = await load_settings(home)
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
    await home.record_owner_event("mail.test", facts, passphrase=passphrase)
    envelope = Envelope(message_id, mail.sender, mail.recipients, home.owner_id)
    try:
        delivery = await transport.deliver(envelope, raw)
    except ServiceError as exc:
        await home.record_owner_event(
            "mail.test.result", facts | {"error": exc.public_message}, outcome="error"
        )
        raise
    await home.record_owner_event("mail.test.result", facts | {"reply": delivery.reply})
    return delivery.reply
