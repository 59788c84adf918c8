"""``charter init``."""

from __future__ import annotations

from pathlib import Path

import click

from charter.cli._common import common_options, emit_json, file_option, run_async, settings
from charter.home import Home, resolve_passphrase
from charter.tools import tokens


def register(cli: click.Group) -> None:
    """Add the command."""

    @cli.command("init")
    @click.option(
        "--owner", default=None, help="Your email address: the responsible human (required)."
    )
    @click.option(
        "--trust-domain",
        default="charter.local",
        show_default=True,
        help="SPIFFE trust domain for your agents' ids.",
    )
    @click.option(
        "--issuer",
        default=None,
        help="The token issuer (`iss`): the http(s) origin clients reach `charter serve "
        "--http` at (default: set by the first server, http://127.0.0.1:8765).",
    )
    @file_option(
        "--passphrase-file",
        "Seal every private key and the vault master key with the passphrase in this file "
        "(default: $CHARTER_PASSPHRASE_FILE, else no passphrase, like ssh-keygen -N '').",
    )
    @click.option(
        "--key-store",
        default=None,
        metavar="URI",
        help="Make and keep the keys in a PKCS#11 token instead of files: an RFC 7512 URI, "
        "'pkcs11:token=LABEL?module-path=/path/module.so&pin-source=file:/path/pin' "
        "(or pin-value=PIN). Needs pip install 'charter[pkcs11]'.",
    )
    @click.option(
        "--database",
        default=None,
        metavar="URL",
        help="Keep the ledger, agents and vault rows in this PostgreSQL database "
        "(postgresql://...; kept in the home's config.json, which then holds no database "
        "file) instead of the home's SQLite file. Needs pip install 'charter[postgres]'.",
    )
    @click.option(
        "--org",
        "org",
        default=None,
        metavar="NAME",
        help="Make an organization home: the owner key becomes the organization key (kept by "
        "the administrator) and --owner its first owner, with a key of their own "
        "(`charter owner add` certifies more).",
    )
    @click.option(
        "--join",
        "join_from",
        default=None,
        metavar="HOME",
        type=click.Path(path_type=Path, file_okay=False),
        help="Join the team deployment whose PostgreSQL database --database names, as a "
        "second host: copy the keys its servers need (log, issuer, vault, agents; not the "
        "owner's) from HOME, the first host's home folder or a copy of it (docs/DEPLOY.md).",
    )
    @click.option(
        "--with-owner-key",
        is_flag=True,
        help="With --join: also copy the owner key (this host may then act as the owner).",
    )
    @common_options(as_json=True)
    @run_async
    async def init(
        owner: str | None,
        org: str | None,
        trust_domain: str,
        issuer: str | None,
        passphrase_file: Path | None,
        key_store: str | None,
        database: str | None,
        join_from: Path | None,
        with_owner_key: bool,
        home: Path | None,
        as_json: bool,
    ) -> None:
        """Create a Charter home: database, owner key, token-issuer key and log key.

        With --join HOME --database URL: a second host of a team deployment instead (no new
        keys, no new ledger: the first host's keys, the shared database).
        """
        if join_from is not None:
            await _join(home, database, join_from, owner=with_owner_key, as_json=as_json)
            return
        if owner is None:
            raise click.UsageError("Missing option '--owner'.")
        if with_owner_key:
            raise click.UsageError("--with-owner-key goes with --join")
        s = settings(home, passphrase_file=passphrase_file)
        passphrase = resolve_passphrase(s.passphrase_file)
        issuer_url = tokens.normalize_issuer(issuer) if issuer else None  # before anything
        async with await Home.init(
            s,
            owner=owner,
            trust_domain=trust_domain,
            passphrase=passphrase,
            key_store=key_store,
            database=database,
            organization=org,
        ) as h:
            if issuer_url is not None:
                await tokens.set_issuer(h, issuer_url)
            info = {
                "home": str(s.home),
                "owner": h.owner_id,
                "origin": h.origin,
                "owner_key_protected": passphrase is not None,
                "keys_sealed": passphrase is not None,
                "issuer": await tokens.issuer(h),
                "key_store": "pkcs11" if key_store else "file",
                "database": "postgresql" if h.settings.database_url else "sqlite",
            } | ({"organization": org, "first_owner": owner} if org else {})
        if as_json:
            emit_json(info)
            return
        click.echo(f"Created Charter home at {s.home}")
        if org is not None:
            click.echo(f"  organization: {org} (its key is the home's owner key)")
        click.echo(f"  owner:  {owner}")
        click.echo(f"  ledger: {info['origin']}")
        if issuer_url is not None:
            click.echo(f"  issuer: {issuer_url}")
        if key_store is not None:
            click.echo("  keys:   made in the PKCS#11 token; the home holds no signing key")
        elif passphrase is None:
            click.echo(
                "  the keys have no passphrase (use --passphrase-file or "
                "`charter keys passphrase` to seal them)"
            )
        else:
            click.echo("  every private key and the vault master key are sealed (passphrase)")
        click.echo("Next: charter agent add NAME --scope audit:read")


async def _join(
    home: Path | None, database: str | None, source: Path, *, owner: bool, as_json: bool
) -> None:
    """``init --join``: a home folder holding the URL and copied keys, checked against the
    database (it must hold a ledger whose log key is the copied one); undone on failure."""
    import shutil
    from dataclasses import replace

    from charter.config import check_database_url, write_database_url
    from charter.errors import ConfigError
    from charter.keys.join import copy_for_join

    s = settings(home)
    url = check_database_url(database) if database else s.database_url
    if url is None:
        raise ConfigError("--join needs the team's database: --database postgresql://...")
    layout = s.layout
    if layout.db.exists() or layout.keys.exists():
        raise ConfigError(f"a Charter home already exists at {layout.root}; refusing to join")
    made_root = not layout.root.exists()
    try:
        copied = copy_for_join(source, layout, owner=owner)
        write_database_url(layout.root, url)
        async with await Home.open(replace(s, database_url=url)) as h:
            info = {
                "home": str(s.home),
                "origin": h.origin,
                "owner": h.owner_id,
                "issuer": await tokens.recorded_issuer(h),
                "keys": copied,
                "database": "postgresql",
            }
    except BaseException:
        shutil.rmtree(layout.keys, ignore_errors=True)
        layout.config.unlink(missing_ok=True)
        if made_root:
            shutil.rmtree(layout.root, ignore_errors=True)
        raise
    if as_json:
        emit_json(info)
        return
    click.echo(f"Joined the Charter deployment {info['origin']} at {s.home}")
    click.echo(f"  keys copied: {', '.join(copied)}")
    if "keys/owner.key" not in copied:
        click.echo("  no owner key: owner actions stay on the owner's machine")
