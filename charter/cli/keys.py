"""``charter keys ...``: the home's public keys and their rotation."""

from __future__ import annotations

from pathlib import Path

import click

from charter.cli._common import (
    common_options,
    emit_json,
    emit_result,
    open_home,
    owner_passphrase,
)
from charter.tools import tokens


@click.group("keys")
def keys() -> None:
    """Publish and rotate the home's keys."""


@keys.command("jwks")
@common_options()
def jwks(home: Path | None) -> None:
    """Print the issuer's JWKS (RFC 8037 OKP keys): what relying parties verify tokens with."""
    with open_home(home) as h:
        emit_json(tokens.jwks(h))


@keys.command("rotate")
@common_options(passphrase=True, as_json=True)
def rotate(home: Path | None, passphrase_file: Path | None, as_json: bool) -> None:
    """Make a new token-signing key; the old one stays in the JWKS until its tokens expire."""
    with open_home(home) as h:
        result = tokens.rotate(h, passphrase=owner_passphrase(h, passphrase_file))
    emit_result(
        result,
        as_json,
        f"New issuer key {result.kid}\n"
        f"Retired {result.retired_kid}; published until {result.retired_published_until}",
    )


def register(cli: click.Group) -> None:
    """Add the command group (other modules may add commands to ``keys``)."""
    cli.add_command(keys)
