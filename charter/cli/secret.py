"""``charter secret set|list|rm|unblock|rotate-master-key``: the owner's side of the vault.

Values are read from stdin or a file, never from the command line (argv is visible to
other users in ``ps`` and lands in shell history), and never printed.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

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
from charter.home import resolve_passphrase
from charter.storage.vault import MAX_VALUE_BYTES, SecretInfo
from charter.tools import vault as vault_tools


def _read_value(from_file: Path | None) -> bytes:
    """The secret value from ``--from-file`` or stdin (hidden prompt on a terminal).

    One trailing newline is dropped (``echo VALUE |`` and most editors add one).
    """
    if from_file is not None:
        try:
            data = from_file.read_bytes()[: MAX_VALUE_BYTES + 2]
        except OSError as exc:
            raise InvalidInput(f"cannot read {from_file}: {exc.strerror}") from None
    elif sys.stdin.isatty():
        data = click.prompt(
            "Secret value", hide_input=True, confirmation_prompt=True, err=True
        ).encode()
    else:
        data = sys.stdin.buffer.read(MAX_VALUE_BYTES + 2)
    data = data.removesuffix(b"\n").removesuffix(b"\r")
    if not data:
        raise InvalidInput("the secret value is empty: pipe it on stdin or use --from-file")
    return data


def _describe(info: SecretInfo) -> str:
    hosts = ", ".join(info.allowed_hosts) or "(none: agents cannot send it anywhere)"
    return f"{info.name} version {info.version}; allowed hosts: {hosts}"


def register(cli: click.Group) -> None:
    """Add the command group."""

    @cli.group("secret")
    def secret() -> None:
        """Store secrets agents can use without seeing them (encrypted at rest).

        Grant an agent a secret with `charter agent update NAME --scope secret:use:SECRET`
        (use through secret_http_request) or `--scope secret:read:SECRET` (read its value).
        """

    @secret.command("set")
    @click.argument("name")
    @click.argument("stray", nargs=-1, metavar="", expose_value=True)
    @click.option("--description", default=None, help="What it is for (shown to agents).")
    @click.option(
        "--allow-host",
        "allow_hosts",
        multiple=True,
        help="Where the secret may be sent: https://HOST:PORT, HOST:PORT or HOST (https, "
        "port 443); repeatable; replaces the current list.",
    )
    @click.option(
        "--rate-per-minute",
        type=int,
        default=None,
        help="Uses per agent per minute through secret_http_request (default 60).",
    )
    @file_option("--from-file", "Read the value from this file (default: stdin).")
    @vault_passphrase_option
    @common_options(passphrase=True, as_json=True)
    @run_async
    async def set_(
        name: str,
        stray: tuple[str, ...],
        description: str | None,
        allow_hosts: tuple[str, ...],
        rate_per_minute: int | None,
        from_file: Path | None,
        vault_passphrase_file: Path | None,
        home: Path | None,
        passphrase_file: Path | None,
        as_json: bool,
    ) -> None:
        """Store a new version of secret NAME, read from stdin or --from-file."""
        if stray:
            # NOTE: never echo `stray`: it is probably the value itself.
            raise InvalidInput(
                "the value is read from stdin or --from-file, never from the command line "
                "(arguments show in `ps` and shell history)"
            )
        value = _read_value(from_file)
        async with await open_home(home) as h:
            info = await vault_tools.set_secret(
                h,
                name,
                value,
                description=description,
                allowed_hosts=list(allow_hosts) or None,
                passphrase=owner_passphrase(h, passphrase_file),
                vault_passphrase=resolve_passphrase(vault_passphrase_file),
                rate_per_minute=rate_per_minute,
            )
        if as_json:
            emit_json(dataclasses.asdict(info))
        else:
            click.echo(f"Stored {_describe(info)}")

    @secret.command("list")
    @common_options(as_json=True)
    @run_async
    async def list_(home: Path | None, as_json: bool) -> None:
        """List secrets: names, versions, allowed hosts (never values)."""
        async with await open_home(home) as h:
            infos = await vault_tools.list_secrets(h)
        if as_json:
            emit_json([dataclasses.asdict(i) for i in infos])
            return
        table = Table("name", "version", "allowed hosts", "description", "updated")
        for i in infos:
            description = "(Charter's own)" if i.system else i.description
            table.add_row(
                i.name, str(i.version), " ".join(i.allowed_hosts), description, i.updated_at
            )
        console().print(table)

    @secret.command("rm")
    @click.argument("name")
    @common_options(passphrase=True)
    @run_async
    async def rm(name: str, home: Path | None, passphrase_file: Path | None) -> None:
        """Delete secret NAME and all its versions."""
        async with await open_home(home) as h:
            info = await vault_tools.remove_secret(
                h, name, passphrase=owner_passphrase(h, passphrase_file)
            )
        versions = ", ".join(str(v) for v in info.versions)
        click.echo(f"Removed {name} (versions {versions})")

    @secret.command("unblock")
    @click.argument("name")
    @click.option("--agent", "agent", required=True, help="The agent to let use NAME again.")
    @common_options(passphrase=True)
    @run_async
    async def unblock(
        name: str, agent: str, home: Path | None, passphrase_file: Path | None
    ) -> None:
        """Let AGENT use secret NAME again after it was blocked for writing the value itself.

        An agent that may only use a secret has never seen its value: writing it in a
        request is a guess, so the request was refused and the agent blocked. Find out why
        (charter audit tail) before lifting the block.
        """
        async with await open_home(home) as h:
            await vault_tools.unblock_secret(
                h, name, agent, passphrase=owner_passphrase(h, passphrase_file)
            )
        click.echo(f"Agent {agent} may use {name} again")

    @secret.command("rotate-master-key")
    @file_option(
        "--new-vault-passphrase-file",
        "Derive the new master key from this passphrase (default: a random key file).",
    )
    @vault_passphrase_option
    @common_options(passphrase=True)
    @run_async
    async def rotate(
        new_vault_passphrase_file: Path | None,
        vault_passphrase_file: Path | None,
        home: Path | None,
        passphrase_file: Path | None,
    ) -> None:
        """Re-encrypt every secret version under a new master key (one transaction)."""
        async with await open_home(home) as h:
            key_version, rows = await vault_tools.rotate_master_key(
                h,
                passphrase=owner_passphrase(h, passphrase_file),
                vault_passphrase=resolve_passphrase(vault_passphrase_file),
                new_vault_passphrase=resolve_passphrase(new_vault_passphrase_file),
            )
        click.echo(
            f"Master key rotated to version {key_version}; {rows} secret versions re-encrypted"
        )
