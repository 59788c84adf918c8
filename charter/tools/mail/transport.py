"""Handing a finished message over: SMTP (``aiosmtplib``) or the local transport.

A transport gets the message's final bytes exactly once (``charter.tools.mail.sending`` sees
to that) and either returns the server's reply or raises a :class:`ServiceError` saying
what went wrong and whether anything may have been delivered. It never retries: a retry is a new
tool call with a new Message-ID.
"""

from __future__ import annotations

import json
import ssl
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from charter.clock import rfc3339
from charter.errors import CharterError, ServiceError

if TYPE_CHECKING:
    from charter.home import Home
    from charter.storage.ports import Tx


class MailDenied(CharterError):
    """Policy refuses the message (rate limit, no address, recipient out of reach)."""

    exit_code = 4
    outcome = "denied"


SETUP_HINT = (
    "The owner can configure a mail server with `charter mail setup --smtp-host HOST "
    "--username USER` (see docs/EMAIL.md)."
)


@dataclass(frozen=True, slots=True)
class Envelope:
    """Who a message is from and to, as the transport needs it."""

    message_id: str
    sender: str
    recipients: tuple[str, ...]
    agent: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the receiving side said."""

    reply: str
    #: Recipients the server refused (address -> reply) while accepting others.
    refused: dict[str, str] = field(default_factory=dict)


class Transport(Protocol):
    """Where messages go."""

    @property
    def name(self) -> str:
        """``smtp`` or ``local``."""

    async def check(self, recipients: tuple[str, ...]) -> None:
        """Refuse (before anything is recorded as sent) recipients it can never reach."""

    async def deliver(self, envelope: Envelope, raw: bytes) -> Delivery:
        """Hand the message over once."""


def tls_context(ca_pem: str | None) -> ssl.SSLContext:
    """A verifying client context: the system's CAs plus ``ca_pem`` if given."""
    ctx = ssl.create_default_context()
    if ca_pem:
        ctx.load_verify_locations(cadata=ca_pem)
    return ctx


def tls_failure(kind: str, where: str, exc: BaseException, sent: str = "") -> ServiceError:
    """The error for a failed TLS handshake (an untrusted certificate, most often)."""
    verify = getattr(exc, "verify_message", None)
    if verify or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        why = f"the server's certificate is not trusted ({clean_reply(str(verify or exc), 100)})"
    else:
        why = clean_reply(str(getattr(exc, "reason", None) or exc), 120)
    return ServiceError(
        f"TLS failure with the {kind} server {where}: {why}; {sent}If the server uses a private "
        "CA, the owner can pass `--ca-file` to `charter mail setup`."
    )


def clean_reply(text: str, limit: int = 300) -> str:
    """A server's reply text, safe to show and record: one line, printable, bounded."""
    flat = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in text)
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


# -- SMTP -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerLogin:
    """Where a mail server (SMTP or IMAP) is and how to log in to it."""

    host: str
    port: int
    security: str
    username: str
    password: str = field(repr=False)
    ca_pem: str | None = None
    timeout: float = 30.0

    @property
    def where(self) -> str:
        """``host:port`` for messages."""
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SmtpTransport(ServerLogin):
    """Submission to the owner's SMTP server with ``aiosmtplib``."""

    name: str = "smtp"

    async def check(self, recipients: tuple[str, ...]) -> None:
        """Any address is reachable through a mail server."""

    async def deliver(self, envelope: Envelope, raw: bytes) -> Delivery:
        """Connect, authenticate, send once; map every failure to a clear :class:`ServiceError`."""
        import aiosmtplib

        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.security == "tls",
            start_tls=self.security == "starttls",
            tls_context=tls_context(self.ca_pem) if self.security != "none" else None,
            username=self.username,
            password=self.password,
            timeout=self.timeout,
        )
        try:
            async with client:
                refused, message = await client.sendmail(
                    envelope.sender, list(envelope.recipients), raw
                )
        except aiosmtplib.SMTPException as exc:
            raise self._error(exc) from None
        except ssl.SSLError as exc:
            raise self._tls_error(exc) from None
        except OSError as exc:
            raise ServiceError(
                f"cannot connect to the SMTP server {self.where}: "
                f"{exc.strerror or type(exc).__name__}; nothing was sent"
            ) from None
        return Delivery(
            reply=clean_reply(f"250 {message}"),
            refused={a: clean_reply(str(r)) for a, r in refused.items()},
        )

    def _tls_error(self, exc: BaseException) -> ServiceError:
        return tls_failure("SMTP", self.where, exc, "nothing was sent. ")

    def _error(self, exc: Exception) -> ServiceError:
        import aiosmtplib

        where = self.where
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            return ServiceError(
                f"the SMTP server {where} rejected the credentials ({exc.code} "
                f"{clean_reply(exc.message, 120)}); nothing was sent. The owner can set them "
                "again with `charter mail setup`."
            )
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            detail = "; ".join(
                f"{r.recipient}: {r.code} {clean_reply(r.message, 100)}" for r in exc.recipients
            )
            return ServiceError(
                f"the SMTP server {where} refused every recipient ({detail}); nothing was sent"
            )
        if isinstance(exc, aiosmtplib.SMTPSenderRefused):
            return ServiceError(
                f"the SMTP server {where} refused the sender {exc.sender} ({exc.code} "
                f"{clean_reply(exc.message, 120)}); nothing was sent"
            )
        if isinstance(exc, aiosmtplib.SMTPDataError):
            return ServiceError(
                f"the SMTP server {where} refused the message ({exc.code} "
                f"{clean_reply(exc.message, 120)}); nothing was sent"
            )
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return self._tls_error(cause or exc)
        if isinstance(exc, aiosmtplib.SMTPConnectError):
            return ServiceError(
                f"cannot connect to the SMTP server {where}: {clean_reply(str(exc), 160)}; "
                "nothing was sent"
            )
        if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPReadTimeoutError):
            # NOTE: a break during DATA is ambiguous; never claim either way.
            return ServiceError(
                f"the SMTP server {where} dropped the connection or timed out "
                f"({clean_reply(str(exc), 120)}); the message may or may not have been "
                "delivered. It is not retried automatically: check before sending again."
            )
        return ServiceError(
            f"SMTP error with {where}: {clean_reply(str(exc), 160)}; nothing was sent"
        )


# -- the local transport ----------------------------------------------------------------------


class LocalTransport:
    """The embedded default: deliver to other agents of this home, refuse everyone else."""

    name = "local"

    def __init__(
        self, home: Home, directory: Callable[[Tx], Mapping[str, tuple[str, ...]]]
    ) -> None:
        """``directory(tx)`` maps each active agent's lowercased address to agent names."""
        self.home = home
        self.directory = directory

    async def check(self, recipients: tuple[str, ...]) -> None:
        """Refuse any recipient that is not an active agent's address.

        Raises:
            MailDenied: naming the unknown recipients and how to configure SMTP.
        """
        await self.home.read(lambda tx: self.check_in(tx, recipients))

    def check_in(self, tx: Tx, recipients: tuple[str, ...]) -> Mapping[str, tuple[str, ...]]:
        """:meth:`check` inside a unit of work (a local send checks in its own transaction);
        returns the directory it read, for :meth:`deliver_in` in the same transaction."""
        known = self.directory(tx)
        unknown = [r for r in recipients if r.lower() not in known]
        if unknown:
            raise MailDenied(
                "no mail server is configured, so mail can only go to agents of this Charter "
                f"home, and {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not one. "
                + SETUP_HINT
            )
        return known

    async def deliver(self, envelope: Envelope, raw: bytes) -> Delivery:
        """Put one copy in each recipient agent's mailbox (one transaction)."""
        return await self.home.write(lambda tx: self.deliver_in(tx, envelope, raw))

    def deliver_in(
        self,
        tx: Tx,
        envelope: Envelope,
        raw: bytes,
        known: Mapping[str, tuple[str, ...]] | None = None,
    ) -> Delivery:
        """:meth:`deliver` inside a unit of work (a local send's own transaction); ``known`` is
        the directory :meth:`check_in` read in this same transaction (else it is read here).

        Raises:
            ServiceError: no recipient is an active agent any more.
        """
        if known is None:
            known = self.directory(tx)
        now = rfc3339(self.home.clock.now())
        refused: dict[str, str] = {}
        boxes: list[str] = []
        for address in envelope.recipients:
            names = known.get(address.lower())
            if not names:
                refused[address] = "550 no such agent (revoked since the check)"
            boxes.extend(n for n in names or () if n not in boxes)
        if not boxes:
            raise ServiceError(
                f"no recipient is an agent of this home any more ({json.dumps(refused)})"
            )
        delivered = tx.mail.deliver_local(
            boxes,
            message_id=envelope.message_id,
            sender_agent=envelope.agent,
            raw=raw,
            received_at=now,
        )
        if not delivered:
            raise RuntimeError(f"a mailbox already holds {envelope.message_id}")
        return Delivery(reply=f"250 delivered locally to {len(boxes)} mailbox(es)", refused=refused)
