"""``charter owner keygen|add|list|remove``: the owners of an organization home (issue 28)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from charter.cli._common import (
    common_options,
    console,
    emit_json,
    emit_result,
    open_home,
    owner_passphrase,
    reason_option,
    run_async,
    yes_option,
)
from charter.evidence.jwk import public_jwk, thumbprint
from charter.home import resolve_passphrase
from charter.keys.owner_files import make_owner_key_file, parse_owner_public_key
from charter.tools import owners

#: ``--owner-key FILE`` / ``--as-org`` (agent add|update|revoke, approve, deny).
owner_key_option = click.option(
    "--owner-key",
    "owner_key",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Organization homes: act as the owner whose key file this is (default: the home's "
    "default owner). Its passphrase, if any, comes from --passphrase-file.",
)
as_org_option = click.option(
    "--as-org",
    is_flag=True,
    help="Organization homes: act with the organization key (it may revoke any agent).",
)


def register(cli: click.Group) -> None:
    """Add the command group."""

    @cli.group("owner")
    def owner() -> None:
        """The owners of an organization home (`charter init --org`)."""

    @owner.command("keygen")
    @click.option(
        "--out",
        "out",
        required=True,
        type=click.Path(path_type=Path, dir_okay=False),
        help="Where to write the new owner key (0600; never over an existing file).",
    )
    @click.option(
        "--passphrase-file",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help="Seal the key with the passphrase in this file.",
    )
    def keygen(out: Path, passphrase_file: Path | None) -> None:
        """Make your own owner key on your machine and print its public key (a JWK) for the
        administrator's `charter owner add EMAIL --public-key ...`."""
        public = make_owner_key_file(out, resolve_passphrase(passphrase_file))
        click.echo(json.dumps(public_jwk(public) | {"kid": thumbprint(public)}))

    @owner.command("add")
    @click.argument("email")
    @click.option(
        "--public-key",
        "public_key",
        required=True,
        metavar="FILE_OR_JWK",
        help="The owner's public key: what `charter owner keygen` printed, or a file of it.",
    )
    @common_options(passphrase=True, as_json=True)
    @run_async
    async def add(
        email: str, public_key: str, home: Path | None, passphrase_file: Path | None, as_json: bool
    ) -> None:
        """Certify EMAIL's key with the organization key (an owner.certify ledger entry)."""
        key = parse_owner_public_key(public_key)
        async with await open_home(home) as h:
            owners.require_org(h)
            info = await owners.add_owner(
                h, email, key, passphrase=owner_passphrase(h, passphrase_file)
            )
        emit_result(info, as_json, f"Certified {email} (key {info.kid}) until {info.valid_until}")

    @owner.command("list")
    @common_options(as_json=True)
    @run_async
    async def list_(home: Path | None, as_json: bool) -> None:
        """List the organization's owners."""
        async with await open_home(home) as h:
            found = await owners.list_owners(h)
        if as_json:
            emit_json([o.model_dump() for o in found])
            return
        table = Table("owner", "status", "key id", "valid until", "added")
        for o in found:
            name = o.owner + (" (default)" if o.default else "")
            table.add_row(escape(name), o.status, o.kid, o.valid_until, o.added_at)
        console().print(table)

    @owner.command("remove")
    @click.argument("email")
    @reason_option
    @yes_option
    @common_options(passphrase=True, as_json=True)
    @run_async
    async def remove(
        email: str,
        reason: str,
        yes: bool,
        home: Path | None,
        passphrase_file: Path | None,
        as_json: bool,
    ) -> None:
        """Remove EMAIL for good: their key signs nothing more and their agents are revoked
        (each is refused at its next call)."""
        if not yes and not click.confirm(
            f"Remove owner {email} and revoke their agents? This cannot be undone",
            default=False,
            err=True,
        ):
            raise click.Abort
        async with await open_home(home) as h:
            info, revoked = await owners.remove_owner(
                h, email, reason=reason, passphrase=owner_passphrase(h, passphrase_file)
            )
        if as_json:
            emit_json(info.model_dump() | {"agents_revoked": revoked})
            return
        click.echo(f"Removed {email}; agents revoked: {' '.join(revoked) or '(none)'}")
