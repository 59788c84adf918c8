"""``charter keys ...``: the home's public keys and their rotation."""

from __future__ import annotations

from pathlib import Path

import click

from charter.cli._common import (
    emit_json,
    handle_errors,
    home_option,
    json_option,
    open_home,
    owner_passphrase,
    passphrase_option,
)
from charter.tools import tokens


@click.group("keys")
def keys() -> None:
    """Publish and rotate the home's keys."""


@keys.command("jwks")
@home_option
@handle_errors
def jwks(home: Path | None) -> None:
    """Print the issuer's JWKS (RFC 8037 OKP keys): what relying parties verify tokens with."""
    with open_home(home) as h:
        emit_json(tokens.jwks(h))


@keys.command("rotate")
@home_option
@passphrase_option
@json_option
@handle_errors
def rotate(home: Path | None, passphrase_file: Path | None, as_json: bool) -> None:
    """Make a new token-signing key; the old one stays in the JWKS until its tokens expire."""
    with open_home(home) as h:
        result = tokens.rotate(h, passphrase=owner_passphrase(h, passphrase_file))
    if as_json:
        emit_json(result.model_dump())
        return
    click.echo(f"New issuer key {result.kid}")
    click.echo(f"Retired {result.retired_kid}; published until {result.retired_published_until}")


def register(cli: click.Group) -> None:
    """Add the command group (other modules may add commands to ``keys``)."""
    cli.add_command(keys)
