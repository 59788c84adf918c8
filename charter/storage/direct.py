"""Blocking connections of their own to a home's database, beside its store: what tests use
to read, tamper with or inspect rows directly (``charter.testing``: ``raw_db``, ``admin_db``,
``other_db``). The SQL and the drivers stay here, in storage.

On PostgreSQL the connection is a :class:`~charter.storage.pg_conn.PgConnection` (autocommit,
the ``sqlite3`` surface the repositories use), so the same raw reads run on both backends.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from charter.storage.db import Connection, connect


def open_direct(db_file: Path, database_url: str | None) -> Connection:
    """A connection of its own: the SQLite file, or the PostgreSQL database at the URL."""
    if database_url is None:
        return connect(db_file)
    from charter.storage.pg import connect_pg

    return cast(Connection, connect_pg(database_url))


def open_admin(db_file: Path, database_url: str | None) -> Connection:
    """A connection with the append-only triggers off, as someone who owns the database has:
    the SQLite file with its triggers dropped, or a PostgreSQL session with
    ``session_replication_role = replica`` (triggers do not fire). The caller closes it."""
    if database_url is None:
        conn = connect(db_file)
        conn.execute("DROP TRIGGER IF EXISTS ledger_no_update")
        conn.execute("DROP TRIGGER IF EXISTS ledger_no_delete")
        conn.execute("DROP TRIGGER IF EXISTS ledger_links")  # may insert rows a fork makes
        return conn
    from charter.storage.pg import connect_pg

    pg = connect_pg(database_url)
    pg.raw.execute("SET session_replication_role = replica")
    return cast(Connection, pg)
