"""``charter init``."""

from __future__ import annotations

from pathlib import Path

import click

from charter.cli._common import common_options, emit_json, file_option, settings
from charter.home import Home, resolve_passphrase


def register(cli: click.Group) -> None:
    """Add the command."""

    @cli.command("init")
    @click.option("--owner", required=True, help="Your email address: the responsible human.")
    @click.option(
        "--trust-domain",
        default="charter.local",
        show_default=True,
        help="SPIFFE trust domain for your agents' ids.",
    )
    @file_option(
        "--passphrase-file",
        "Protect the owner key with the passphrase in this file "
        "(default: no passphrase, like ssh-keygen -N '').",
    )
    @common_options(as_json=True)
    def init(
        owner: str,
        trust_domain: str,
        passphrase_file: Path | None,
        home: Path | None,
        as_json: bool,
    ) -> None:
        """Create a Charter home: database, owner key, token-issuer key and log key."""
        s = settings(home)
        with Home.init(
            s,
            owner=owner,
            trust_domain=trust_domain,
            passphrase=resolve_passphrase(passphrase_file),
        ) as h:
            info = {
                "home": str(s.home),
                "owner": h.owner_id,
                "origin": h.origin,
                "owner_key_protected": passphrase_file is not None,
            }
        if as_json:
            emit_json(info)
            return
        click.echo(f"Created Charter home at {s.home}")
        click.echo(f"  owner:  {owner}")
        click.echo(f"  ledger: {info['origin']}")
        if passphrase_file is None:
            click.echo("  the owner key has no passphrase (use --passphrase-file to set one)")
        click.echo("Next: charter agent add NAME --scope audit:read")
