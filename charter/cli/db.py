"""``charter db migrate --to URL``: move a SQLite home's rows into PostgreSQL (issue 18)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import click

from charter.cli._common import common_options, emit_json, run_async, settings
from charter.config import check_database_url, write_database_url
from charter.errors import ConfigError
from charter.home import Home
from charter.tools import audit


def register(cli: click.Group) -> None:
    """Add the command group."""

    @cli.group("db")
    def db() -> None:
        """The home's database: move a SQLite home to a PostgreSQL database."""

    @db.command("migrate")
    @click.option(
        "--to",
        "to",
        required=True,
        metavar="URL",
        help="The PostgreSQL database (postgresql://...) to copy the home into; it must "
        "hold no Charter ledger yet.",
    )
    @common_options(as_json=True)
    @run_async
    async def migrate(to: str, home: Path | None, as_json: bool) -> None:
        """Copy this home's SQLite database into PostgreSQL, check the copy, switch to it.

        The SQLite file is read only (left exactly as it was: keep it as a backup). The
        copy must show the same tree size, root, ledger head and latest signed checkpoint,
        and verify; only then does the home's config.json name the database. A second run
        refuses: the home already uses PostgreSQL (and the database holds its ledger).
        """
        url = check_database_url(to)
        s = settings(home)
        if s.database_url is not None:
            raise ConfigError(
                "this home already keeps its rows in PostgreSQL (config.json or "
                "CHARTER_DATABASE_URL); there is nothing to migrate"
            )
        s.layout.check()
        try:
            from charter.storage.pg_copy import copy_sqlite_to_pg
        except ImportError as exc:
            raise ConfigError(
                "a PostgreSQL database needs the postgres extra: pip install 'charter[postgres]'"
            ) from exc
        copied = await asyncio.to_thread(copy_sqlite_to_pg, s.layout.db, url)
        if copied.source != copied.target:
            raise ConfigError(
                "the copy in PostgreSQL does not match the SQLite file (tree, head or "
                "checkpoint differ); the home still uses its SQLite file"
            )
        async with await Home.open(replace(s, database_url=url)) as h:
            report = await audit.verify_home(h)
        write_database_url(s.home, url)
        state = copied.source
        if as_json:
            emit_json(
                {
                    "rows": copied.rows,
                    "size": state.size,
                    "root": state.root,
                    "head": state.head,
                    "checkpoint": state.checkpoint,
                    "verified": report.size,
                    "sqlite_file_kept": str(s.layout.db),
                }
            )
            return
        click.echo(f"Copied {sum(copied.rows.values())} rows into PostgreSQL.")
        click.echo(f"  tree size {state.size}, root {state.root}")
        click.echo(f"  ledger verified: {report.size} entries; latest checkpoint identical")
        click.echo(f"  the home now uses PostgreSQL (config.json); {s.layout.db} is unchanged")
