"""Copy a home's SQLite database into PostgreSQL (``charter db migrate --to URL``).

The SQLite file is opened **read-only** (``mode=ro``) and read in one transaction: a
consistent snapshot, and the file is never written. The PostgreSQL side is migrated, must hold
no ledger yet (a second copy refuses rather than duplicating), and is filled in one
transaction under the writers' lock (``ledger_head``): every table of Charter's schema,
parents before children (foreign keys), rows exactly as stored (the ledger's bodies, the
Merkle tree's nodes, the signed checkpoints, ciphertexts), then each generated key's sequence
moved past the copied ids. Either everything is copied or nothing is.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import psycopg
from psycopg import sql

from charter.errors import ConfigError
from charter.storage.pg import connect_pg, migrate_pg, redact
from charter.storage.pg_conn import LOCK_HEAD
from charter.storage.tlog import TreeStore

#: Tables that are each backend's own bookkeeping, never copied.
_SKIP = frozenset({"schema_migrations", "sqlite_sequence"})
#: Tables whose one fixed row the migrations insert on both backends.
_SEEDED = frozenset({"ledger_head"})


@dataclass(frozen=True, slots=True)
class LogState:
    """What must be identical on both sides: the tree's size and root, the ledger's head, and
    the latest signed checkpoint's note (``None``: none signed yet)."""

    size: int
    root: str
    head: str
    checkpoint: str | None


@dataclass(frozen=True, slots=True)
class Copied:
    """What was copied (rows per table) and the log's state before and after."""

    rows: dict[str, int]
    source: LogState
    target: LogState


def log_state(conn: sqlite3.Connection) -> LogState:
    """The log's state as ``conn`` (SQLite, or a PostgreSQL ``PgConnection``) sees it."""
    tree = TreeStore(conn)
    size = tree.size()
    head = conn.execute("SELECT hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
    note = conn.execute("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
    return LogState(
        size=size,
        root=tree.root(size).hex() if size else "",
        head=str(head[0]) if head else "",
        checkpoint=str(note[0]) if note else None,
    )


def _tables_in_order(raw: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """The schema's tables, each after every table its foreign keys reference."""
    names = [
        str(r[0])
        for r in raw.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema ="
            " current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name"
        ).fetchall()
    ]
    parents: dict[str, set[str]] = {n: set() for n in names}
    for child, parent in raw.execute(
        "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c"
        " WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace"
    ).fetchall():
        if str(child) in parents and str(parent) != str(child):
            parents[str(child)].add(str(parent))
    ordered: list[str] = []
    while parents:
        ready = sorted(n for n, deps in parents.items() if not deps - set(ordered))
        if not ready:
            raise ConfigError("the PostgreSQL schema has a foreign-key cycle; cannot copy")
        ordered += ready
        for n in ready:
            del parents[n]
    return [n for n in ordered if n not in _SKIP]


def _columns(raw: psycopg.Connection[tuple[object, ...]], table: str) -> list[str]:
    return [
        str(r[0])
        for r in raw.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema ="
            " current_schema() AND table_name = %s ORDER BY ordinal_position",
            (table,),
        ).fetchall()
    ]


def _sqlite_tables(src: sqlite3.Connection) -> dict[str, list[str]]:
    tables = [
        str(r[0])
        for r in src.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return {t: [str(c[1]) for c in src.execute(f'PRAGMA table_info("{t}")')] for t in tables}


def copy_sqlite_to_pg(db: Path, url: str) -> Copied:
    """Copy every row of the SQLite database ``db`` into the PostgreSQL database ``url``.

    Raises:
        ConfigError: the target already holds a ledger, a table or column has no place in
            the PostgreSQL schema, or either database cannot be used.
    """
    try:
        src = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot open {db} read-only: {exc}") from exc
    conn = connect_pg(url)
    try:
        migrate_pg(conn)
        raw = conn.raw
        if raw.execute("SELECT 1 FROM ledger LIMIT 1").fetchone() is not None:
            raise ConfigError(
                f"the database at {redact(url)} already holds a Charter ledger; refusing to"
                " copy over it (a second migration would duplicate the home)"
            )
        src.execute("BEGIN")  # one consistent snapshot of the file
        before = log_state(src)
        source = _sqlite_tables(src)
        order = _tables_in_order(raw)
        stray = sorted(set(source) - set(order) - _SKIP)
        if stray:
            raise ConfigError(f"tables with no place in the PostgreSQL schema: {stray}")
        rows: dict[str, int] = {}
        with raw.transaction():
            raw.execute(LOCK_HEAD)
            for table in order:
                if table in _SEEDED or table not in source:
                    continue
                query = sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(table))
                if raw.execute(query).fetchone() is not None:
                    raise ConfigError(
                        f"the database at {redact(url)} is not empty (table {table} has rows);"
                        " copy into a new, empty database"
                    )
                target = _columns(raw, table)
                missing = sorted(set(source[table]) - set(target))
                if missing:
                    raise ConfigError(f"{table}: columns with no place in PostgreSQL: {missing}")
                cols = [c for c in target if c in source[table]]
                listed = ", ".join(f'"{c}"' for c in cols)
                copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
                    sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, cols))
                )
                count = 0
                with raw.cursor().copy(copy) as out:
                    # Names from both schemas' catalogues (the table is one of PostgreSQL's).
                    select = f'SELECT {listed} FROM "{table}"'  # noqa: S608
                    for row in src.execute(select):
                        out.write_row(row)
                        count += 1
                rows[table] = count
            for table, column in raw.execute(
                "SELECT table_name, column_name FROM information_schema.columns WHERE"
                " table_schema = current_schema() AND is_identity = 'YES'"
            ).fetchall():
                raw.execute(
                    sql.SQL(
                        "SELECT setval(pg_get_serial_sequence(%s, %s), coalesce(max({}), 0) + 1,"
                        " false) FROM {}"
                    ).format(sql.Identifier(str(column)), sql.Identifier(str(table))),
                    (str(table), str(column)),
                )
        with raw.transaction():
            after = log_state(cast(sqlite3.Connection, conn))
        return Copied(rows, before, after)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot read {db}: {exc}") from exc
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"copying into PostgreSQL at {redact(url)} failed: {first}") from exc
    finally:
        src.close()
        conn.close()
