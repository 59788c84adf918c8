"""``charter console``: the owner's console in the browser, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import click

from charter.cli._common import common_options, open_home, owner_passphrase, run_async
from charter.errors import ConfigError


def register(cli: click.Group) -> None:
    """Add the command."""

    @cli.command("console")
    @click.option(
        "--port",
        default=8766,
        show_default=True,
        type=click.IntRange(0, 65535),
        help="Loopback port (0: any free one).",
    )
    @click.option("--no-browser", is_flag=True, help="Print the login URL; do not open it.")
    @common_options(passphrase=True)
    @run_async
    async def console_(
        port: int, no_browser: bool, home: Path | None, passphrase_file: Path | None
    ) -> None:
        """Serve the owner's console on 127.0.0.1 (agents, ledger, approvals, lockdown).

        It prints a login URL with a one-time token; the browser that opens it gets the
        session. The owner key is unlocked now: Approve, Deny and Lockdown sign with it.
        """
        from charter.console.run import running_console

        async with await open_home(home) as h:
            passphrase = owner_passphrase(h, passphrase_file)
            h.owner_key(passphrase)  # a wrong passphrase fails now, not at the first click
            try:
                ctx = running_console(h, port=port, passphrase=passphrase)
                running = await ctx.__aenter__()
            except OSError as exc:
                raise ConfigError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from exc
            try:
                click.echo(f"Charter console: {running.login_url}")
                click.echo("(the link works once; keep it private. Ctrl-C stops the console.)")
                if not no_browser:
                    import webbrowser

                    webbrowser.open(running.login_url)
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.Event().wait()
            finally:
                await ctx.__aexit__(None, None, None)
