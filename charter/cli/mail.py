"""``charter mail setup|show|clear|test|outbox``: the owner's side of agent email.

The password is read from a hidden prompt or stdin, never from the command line (argv is
visible in ``ps`` and shell history), and stored only in the vault.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.table import Table

from charter.cli._common import (
    common_options,
    console,
    emit_json,
    file_option,
    open_home,
    owner_passphrase,
    run_async,
    vault_passphrase_option,
)
from charter.errors import InvalidInput
from charter.home import Home, resolve_passphrase
from charter.tools import mail

_SECURITY = click.Choice(list(mail.SECURITY))
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class EmailOptions:
    """``--email*`` options of ``charter agent add|update``."""

    address: str | None = None
    rate_per_hour: int | None = None
    max_bytes: int | None = None
    allow_senders: tuple[str, ...] = ()

    async def apply(self, home: Home, agent: str, policy: dict[str, Any]) -> dict[str, Any]:
        """``policy`` with these options merged into ``policy["email"]``.

        Raises:
            InvalidInput: bad values, or an address another active agent has.
        """
        if self.address is not None:
            await mail.check_address_free(home, self.address, agent)
        return mail.merge_email_policy(
            policy,
            address=self.address,
            rate_per_hour=self.rate_per_hour,
            max_bytes=self.max_bytes,
            allow_senders=list(self.allow_senders) if self.allow_senders else None,
        )

    @property
    def given(self) -> bool:
        """True when any ``--email*`` option was passed."""
        return self != EmailOptions()


def email_options(fn: F) -> F:
    """Add ``--email``, ``--email-rate``, ``--email-max-bytes``, ``--email-allow-sender``;
    the command receives them as one ``email: EmailOptions`` argument."""

    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        email: str | None,
        email_rate: int | None,
        email_max_bytes: int | None,
        email_allow_sender: tuple[str, ...],
        **kwargs: Any,
    ) -> Any:
        opts = EmailOptions(email, email_rate, email_max_bytes, email_allow_sender)
        return fn(*args, email=opts, **kwargs)

    options = [
        click.option("--email", default=None, help="The agent's email address (its From)."),
        click.option("--email-rate", type=int, default=None, help="Messages per hour (50)."),
        click.option("--email-max-bytes", type=int, default=None, help="Size cap per message."),
        click.option(
            "--email-allow-sender",
            multiple=True,
            help="Show only mail from senders matching this pattern, e.g. '*@example.com' "
            "(repeatable; replaces the list).",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


def _read_password() -> str:
    """The password from a hidden prompt on a terminal, else the first line of stdin."""
    if sys.stdin.isatty():
        text = click.prompt("Mail password", hide_input=True, confirmation_prompt=True, err=True)
    else:
        text = sys.stdin.readline()
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise InvalidInput("the mail password is empty: type it at the prompt or pipe it on stdin")
    return text


def _read_ca(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the CA file {path}: {exc}") from None


def register(cli: click.Group) -> None:
    """Add the command group."""

    @cli.group("mail")
    def mail_group() -> None:
        """Configure the mail server agents send and read mail through."""

    @mail_group.command("setup")
    @click.option("--smtp-host", required=True, help="SMTP submission server.")
    @click.option("--smtp-port", type=int, default=None, help="Default: 587, 465 or 25.")
    @click.option("--smtp-security", type=_SECURITY, default="starttls", show_default=True)
    @click.option("--imap-host", default=None, help="IMAP server (omit: agents cannot read).")
    @click.option("--imap-port", type=int, default=None, help="Default: 993 or 143.")
    @click.option("--imap-security", type=_SECURITY, default="tls", show_default=True)
    @click.option("--username", required=True, help="Login for both servers.")
    @file_option(
        "--ca-file", "PEM CA certificate(s) to trust besides the system's (private mail server)."
    )
    @click.option("--timeout", type=int, default=30, show_default=True, help="Seconds.")
    @vault_passphrase_option
    @common_options(passphrase=True)
    @run_async
    async def setup(
        smtp_host: str,
        smtp_port: int | None,
        smtp_security: str,
        imap_host: str | None,
        imap_port: int | None,
        imap_security: str,
        username: str,
        ca_file: Path | None,
        timeout: int,
        vault_passphrase_file: Path | None,
        home: Path | None,
        passphrase_file: Path | None,
    ) -> None:
        """Use a real mail server (password prompted, or read from stdin)."""
        settings = mail.make_settings(
            smtp_host=smtp_host,
            smtp_port=smtp_port,
            smtp_security=smtp_security,
            imap_host=imap_host,
            imap_port=imap_port,
            imap_security=imap_security,
            username=username,
            ca_pem=_read_ca(ca_file),
            timeout_s=timeout,
        )
        async with await open_home(home) as h:
            passphrase = owner_passphrase(h, passphrase_file)
            await mail.save_settings(
                h,
                settings,
                _read_password(),
                passphrase=passphrase,
                vault_passphrase=resolve_passphrase(vault_passphrase_file),
            )
        click.echo(f"Mail goes through {settings.smtp_host}:{settings.smtp_port}.")
        click.echo("Check it with: charter mail test --to YOU@EXAMPLE.COM")

    @mail_group.command("show")
    @common_options(as_json=True)
    @run_async
    async def show(home: Path | None, as_json: bool) -> None:
        """Show the mail settings (never the password)."""
        async with await open_home(home) as h:
            settings = await mail.load_settings(h)
        doc = None if settings is None else settings.public()
        if as_json:
            emit_json({"transport": "local" if doc is None else "smtp", "settings": doc})
        elif doc is None:
            click.echo("No mail server: agents can mail only each other (local transport).")
        else:
            for key, value in doc.items():
                click.echo(f"{key + ':':15}{value}")
            click.echo(f"{'password:':15}in the vault ({mail.PASSWORD_SECRET})")

    @mail_group.command("clear")
    @common_options(passphrase=True)
    @run_async
    async def clear(home: Path | None, passphrase_file: Path | None) -> None:
        """Forget the mail server and its password (back to the local transport)."""
        async with await open_home(home) as h:
            await mail.clear_settings(h, passphrase=owner_passphrase(h, passphrase_file))
        click.echo("Mail settings removed: agents can mail only each other now.")

    @mail_group.command("test")
    @click.option("--to", "to", default=None, help="Send a test message to this address.")
    @click.option("--from", "sender", default=None, help="From address (default: username).")
    @common_options(passphrase=True)
    @run_async
    async def test(
        to: str | None, sender: str | None, home: Path | None, passphrase_file: Path | None
    ) -> None:
        """Check the IMAP login and, with --to, send a test message."""
        async with await open_home(home) as h:
            passphrase = owner_passphrase(h, passphrase_file) if to else None
            imap = await mail.check_imap(h)
            if imap is not None:
                click.echo(f"IMAP ok: {imap} message(s) in INBOX")
            if to:
                reply = await mail.send_test(h, to=to, sender=sender, passphrase=passphrase)
                click.echo(f"Sent to {to}: {reply}")
            elif imap is None:
                click.echo("No IMAP server configured; pass --to ADDRESS to test sending.")

    @mail_group.command("outbox")
    @click.option("--agent", default=None, help="Only this agent's messages.")
    @click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
    @common_options(as_json=True)
    @run_async
    async def outbox(agent: str | None, limit: int, home: Path | None, as_json: bool) -> None:
        """What agents sent (or tried to), newest first: never the bodies."""
        async with await open_home(home) as h:
            entries = await mail.outbox(h, agent=agent, limit=limit, now=h.clock.now())
        if as_json:
            emit_json([e.model_dump() for e in entries])
            return
        if not entries:
            click.echo(f"no messages{f' from agent {agent}' if agent else ''}")
            return
        table = Table("time", "agent", "to", "subject", "status", "via", "reply")
        for e in entries:
            table.add_row(
                e.created_at[:19],
                e.agent,
                ", ".join([*e.to, *e.cc, *e.bcc]),
                e.subject,
                e.status,
                e.transport,
                e.interrupted or e.reply or "",
            )
        console().print(table)
