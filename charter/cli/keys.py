"""``charter keys ...``: the home's public keys and their rotation."""

from __future__ import annotations

from pathlib import Path

import click

from charter.cli._common import (
    common_options,
    emit_json,
    emit_result,
    file_option,
    open_home,
    owner_passphrase,
    run_async,
    settings,
)
from charter.errors import ConfigError
from charter.home import Home, resolve_passphrase
from charter.keys.reseal import change_passphrase
from charter.tools import tokens


@click.group("keys")
def keys() -> None:
    """Publish and rotate the home's keys."""


@keys.command("jwks")
@common_options()
@run_async
async def jwks(home: Path | None) -> None:
    """Print the issuer's JWKS (RFC 8037 OKP keys): what relying parties verify tokens with."""
    async with await open_home(home) as h:
        emit_json(await tokens.jwks(h))


@keys.command("rotate")
@common_options(passphrase=True, as_json=True)
@run_async
async def rotate(home: Path | None, passphrase_file: Path | None, as_json: bool) -> None:
    """Make a new token-signing key; the old one stays in the JWKS until its tokens expire."""
    async with await open_home(home) as h:
        result = await tokens.rotate(h, passphrase=owner_passphrase(h, passphrase_file))
    emit_result(
        result,
        as_json,
        f"New issuer key {result.kid}\n"
        f"Retired {result.retired_kid}; published until {result.retired_published_until}",
    )


@keys.command("passphrase")
@file_option(
    "--new-passphrase-file",
    "File holding the new passphrase (required; its first line).",
)
@common_options(passphrase=True, as_json=True)
@run_async
async def passphrase(
    new_passphrase_file: Path | None,
    home: Path | None,
    passphrase_file: Path | None,
    as_json: bool,
) -> None:
    """Seal every private key and the vault master key under a new passphrase (atomically:
    an interrupted change leaves a home that opens with the old or the new one). On a clear
    home this seals it; on an old home (only the owner key sealed) it seals every key."""
    if new_passphrase_file is None:
        raise ConfigError("name the new passphrase: --new-passphrase-file FILE")
    new = resolve_passphrase(new_passphrase_file)
    if not new:
        raise ConfigError("the new passphrase file is empty")
    s = settings(home, passphrase_file=passphrase_file)
    async with await open_home(home, passphrase_file) as h:
        old = resolve_passphrase(s.passphrase_file)
        count = change_passphrase(h.layout.keys, old, new)
    s = settings(home, passphrase_file=new_passphrase_file)
    async with await Home.open(s) as h:  # the new seal opens, and the owner records the change
        h.use_passphrase(new)
        entry = await h.record_owner_event("keys.passphrase", {"files": count})
    result = {"resealed": count, "seq": entry.seq}
    if as_json:
        emit_json(result)
    else:
        click.echo(f"Re-sealed {count} key files under the new passphrase")


def register(cli: click.Group) -> None:
    """Add the command group (other modules may add commands to ``keys``)."""
    cli.add_command(keys)
