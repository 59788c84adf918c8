"""The PostgreSQL migrations (charter/storage/migrations_pg) build the SQLite schema (issue 18).

The SQLite schema is read from a real database: the SQLite migrations applied to a temporary
file by ``charter.storage.db.migrate``. The PostgreSQL one is read from a fresh database on a
real server with every PostgreSQL migration applied. Every table, column (with a compatible
type and the same nullability), primary key, unique constraint, foreign key, named index and
trigger of the first must be in the second; the append-only triggers and the checks that keep
the log sound must refuse what they refuse in SQLite.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg
import pgfixtures
import pytest

from charter.storage.db import connect, migrate

#: SQLite declared type -> the PostgreSQL types that hold the same values.
COMPATIBLE = {"INTEGER": {"bigint"}, "TEXT": {"text"}, "BLOB": {"bytea"}}

FOLDER = resources.files("charter.storage")

# Until tests/conftest.py registers pgfixtures (see its docstring), this module does.
pg_cluster = pgfixtures.pg_cluster
pg_database = pgfixtures.pg_database


def _names(folder: str) -> list[str]:
    return sorted(p.name for p in (FOLDER / folder).iterdir() if p.name.endswith(".sql"))


async def apply_pg_migrations(conn: asyncpg.Connection) -> list[str]:
    """What the PostgreSQL backend will do (as ``db.migrate`` does for SQLite): each
    migration in its own transaction, recorded in ``schema_migrations``."""
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT"
        " NOT NULL DEFAULT (to_char(now() AT TIME ZONE 'UTC',"
        ' \'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\')))'
    )
    done = {r[0] for r in await conn.fetch("SELECT name FROM schema_migrations")}
    applied = []
    for name in _names("migrations_pg"):
        if name in done:
            continue
        async with conn.transaction():
            await conn.execute((FOLDER / "migrations_pg" / name).read_text(encoding="utf-8"))
            await conn.execute("INSERT INTO schema_migrations(name) VALUES ($1)", name)
        applied.append(name)
    return applied


@pytest.fixture
async def pgconn(pg_database: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg_database)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def migrated(pgconn: asyncpg.Connection) -> asyncpg.Connection:
    assert await apply_pg_migrations(pgconn) == _names("migrations_pg")
    return pgconn


@pytest.fixture(scope="module")
def sqlite_schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Tables -> columns, keys, unique sets, foreign keys; index and trigger names."""
    conn = connect(tmp_path_factory.mktemp("sqlite") / "charter.db")
    try:
        migrate(conn)
        return _read_sqlite(conn)
    finally:
        conn.close()


def _read_sqlite(conn: sqlite3.Connection) -> dict[str, Any]:
    tables: dict[str, Any] = {}
    names = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    for table in names:
        info = conn.execute(f"PRAGMA table_info({table})").fetchall()
        columns = {r[1]: (r[2].upper(), bool(r[3]) or r[5] > 0) for r in info}
        pk = tuple(r[1] for r in sorted((r for r in info if r[5] > 0), key=lambda r: r[5]))
        unique = set()
        for _, index, is_unique, origin, _partial in conn.execute(f"PRAGMA index_list({table})"):
            if is_unique and origin == "u":
                cols = conn.execute(f"PRAGMA index_info({index})").fetchall()
                unique.add(tuple(r[2] for r in sorted(cols)))
        fks = {(r[3], r[2], r[4]) for r in conn.execute(f"PRAGMA foreign_key_list({table})")}
        tables[table] = {"columns": columns, "pk": pk, "unique": unique, "fks": fks}
    indexes = {
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql NOT NULL"
        )
    }
    triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    return {"tables": tables, "indexes": indexes, "triggers": triggers}


async def _read_pg(conn: asyncpg.Connection) -> dict[str, Any]:
    tables: dict[str, Any] = {}
    for r in await conn.fetch(
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_schema = 'public'"
    ):
        entry = tables.setdefault(
            r["table_name"], {"columns": {}, "pk": (), "unique": set(), "fks": set()}
        )
        entry["columns"][r["column_name"]] = (r["data_type"], r["is_nullable"] == "NO")
    for r in await conn.fetch(
        "SELECT t.relname AS tbl, i.relname AS idx, x.indisunique AS uniq,"
        " x.indisprimary AS pk, x.indpred IS NOT NULL AS partial,"
        " array(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(n, o)"
        "       JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.n ORDER BY k.o) AS cols"
        " FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid"
        " JOIN pg_class i ON i.oid = x.indexrelid"
        " JOIN pg_namespace s ON s.oid = t.relnamespace WHERE s.nspname = 'public'"
    ):
        entry = tables[r["tbl"]]
        if r["pk"]:
            entry["pk"] = tuple(r["cols"])
        elif r["uniq"] and not r["partial"]:
            entry["unique"].add(tuple(sorted(r["cols"])))
        entry.setdefault("indexes", set()).add(r["idx"])
    for r in await conn.fetch(
        "SELECT tc.table_name AS tbl, kcu.column_name AS col, ccu.table_name AS ref,"
        " ccu.column_name AS refcol FROM information_schema.table_constraints tc"
        " JOIN information_schema.key_column_usage kcu USING (constraint_schema, constraint_name)"
        " JOIN information_schema.constraint_column_usage ccu"
        "   USING (constraint_schema, constraint_name)"
        " WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = 'public'"
    ):
        tables[r["tbl"]]["fks"].add((r["col"], r["ref"], r["refcol"]))
    indexes = {i for t in tables.values() for i in t.pop("indexes", set())}
    triggers = {
        r[0]
        for r in await conn.fetch(
            "SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " JOIN pg_namespace s ON s.oid = c.relnamespace"
            " WHERE s.nspname = 'public' AND NOT t.tgisinternal"
        )
    }
    return {"tables": tables, "indexes": indexes, "triggers": triggers}


def test_every_sqlite_migration_has_its_translation() -> None:
    assert _names("migrations_pg") == _names("migrations")


async def test_the_pg_schema_holds_the_sqlite_schema(
    sqlite_schema: dict[str, Any], migrated: asyncpg.Connection
) -> None:
    pg = await _read_pg(migrated)
    lite = sqlite_schema
    assert set(pg["tables"]) == set(lite["tables"])
    for table, want in lite["tables"].items():
        got = pg["tables"][table]
        assert set(got["columns"]) == set(want["columns"]), table
        for column, (decl, not_null) in want["columns"].items():
            pg_type, pg_not_null = got["columns"][column]
            assert pg_type in COMPATIBLE[decl], (table, column, decl, pg_type)
            assert pg_not_null == not_null, (table, column)
        assert got["pk"] == want["pk"], table
        assert got["unique"] == {tuple(sorted(u)) for u in want["unique"]}, table
        assert got["fks"] == want["fks"], table
    assert lite["indexes"] <= pg["indexes"]
    assert lite["triggers"] <= pg["triggers"]
    # The SQLite checks that are not a plain column list, spot-checked by name and shape.
    assert "issuer_keys_one_current" in pg["indexes"]


async def test_migrations_are_recorded_and_not_applied_twice(
    migrated: asyncpg.Connection,
) -> None:
    assert await apply_pg_migrations(migrated) == []
    rows = await migrated.fetch("SELECT name FROM schema_migrations ORDER BY name")
    assert [r[0] for r in rows] == _names("migrations_pg")


async def _refused(conn: asyncpg.Connection, sql: str, *args: object) -> str:
    with pytest.raises(asyncpg.PostgresError) as caught:
        await conn.execute(sql, *args)
    return str(caught.value)


LEDGER_ROW = (
    "INSERT INTO ledger(seq, prev, hash, ts, actor, action, phase, body)"
    " VALUES ($1, $2, $3, 't', 'a', 'x', 'done', '\\x7b7d')"
)


ZERO32 = "decode(repeat('00', 32), 'hex')"


@pytest.mark.parametrize(
    ("table", "message", "row"),
    [
        ("ledger", "the ledger is append-only", None),
        (
            "merkle_nodes",
            "the Merkle tree is append-only",
            f"INSERT INTO merkle_nodes(pos, level, idx, hash) VALUES (0, 0, 0, {ZERO32})",
        ),
        (
            "checkpoints",
            "signed checkpoints are append-only",
            f"INSERT INTO checkpoints VALUES (1, {ZERO32}, 'n', 't')",
        ),
    ],
)
async def test_append_only_tables_refuse_update_delete_and_truncate(
    migrated: asyncpg.Connection, table: str, message: str, row: str | None
) -> None:
    if row is None:
        await migrated.execute(LEDGER_ROW, 0, "p0", "h0")
    else:
        await migrated.execute(row)
    column = "note" if table == "checkpoints" else "hash"
    assert message in await _refused(migrated, f"UPDATE {table} SET {column} = {column}")
    assert message in await _refused(migrated, f"DELETE FROM {table}")
    # PostgreSQL has TRUNCATE (SQLite has not), which skips row triggers: refused as well.
    assert message in await _refused(migrated, f"TRUNCATE {table} CASCADE")
    assert await migrated.fetchval(f"SELECT count(*) FROM {table}") == 1


async def test_cosignatures_refuse_update(migrated: asyncpg.Connection) -> None:
    await migrated.execute(f"INSERT INTO checkpoints VALUES (1, {ZERO32}, 'n', 't')")
    await migrated.execute("INSERT INTO cosignatures VALUES (1, 'w', 'line', 't')")
    message = await _refused(migrated, "UPDATE cosignatures SET line = 'forged'")
    assert "cosignatures are append-only" in message
    assert await migrated.fetchval("SELECT line FROM cosignatures") == "line"


async def test_the_ledger_refuses_a_fork(migrated: asyncpg.Connection) -> None:
    row = (
        "INSERT INTO ledger(seq, prev, hash, ts, actor, action, phase, body)"
        " VALUES ($1, $2, 'h', 't', 'a', 'x', 'done', $3)"
    )
    bodies = [b"{}", b'{"n":1}', b'{"n":2}']
    links = [hashlib.sha256(body).hexdigest() for body in bodies]
    await migrated.execute(row, 0, "genesis", bodies[0])
    await migrated.execute(row, 1, links[0], bodies[1])
    # a second entry on the same predecessor: a fork (0015: refused by its links)
    assert "must link" in await _refused(migrated, row, 2, links[0], bodies[2])
    # a gap: an entry whose predecessor is missing
    assert "must link" in await _refused(migrated, row, 3, links[1], bodies[2])
    assert "seq" in await _refused(migrated, row, -1, "x", bodies[2])
    await migrated.execute(row, 2, links[1], bodies[2])  # the next link is accepted


async def test_checks_that_keep_the_tree_and_keys_sound(migrated: asyncpg.Connection) -> None:
    node = "INSERT INTO merkle_nodes(pos, level, idx, hash) VALUES ($1, $2, $3, {})"
    short = node.format("decode(repeat('00', 31), 'hex')")
    assert "merkle_nodes_hash_check" in await _refused(migrated, short, 0, 0, 0)
    assert "merkle_nodes_level_check" in await _refused(migrated, node.format(ZERO32), 64, 64, 0)
    # the key must be the node's position (0015): (level 1, idx 2) covers leaves 4..5
    assert "merkle_nodes_pos_check" in await _refused(migrated, node.format(ZERO32), 5, 1, 2)
    await migrated.execute(node.format(ZERO32), 5 * 64 + 1, 1, 2)
    await migrated.execute("INSERT INTO issuer_keys VALUES ('k1', 'p1', 't', NULL)")
    second = "INSERT INTO issuer_keys VALUES ('k2', 'p2', 't', NULL)"
    assert "issuer_keys_one_current" in await _refused(migrated, second)
    await migrated.execute("INSERT INTO issuer_keys VALUES ('k3', 'p3', 't', 't2')")


async def test_generated_ids_replace_sqlite_rowids(migrated: asyncpg.Connection) -> None:
    first = await migrated.fetchval("INSERT INTO lockdowns(started_at) VALUES ('t') RETURNING id")
    second = await migrated.fetchval("INSERT INTO lockdowns(started_at) VALUES ('t') RETURNING id")
    assert (first, second) == (1, 2)
    inbox = await migrated.fetchval(
        "INSERT INTO mail_local_inbox(agent, message_id, sender_agent, raw, received_at)"
        " VALUES ('a', 'm', 'b', '\\x00', 't') RETURNING id"
    )
    assert inbox == 1
    assert (
        "check"
        in (await _refused(migrated, "INSERT INTO vault_state VALUES (2, 'v', 1, '\\x00')")).lower()
    )


def test_the_migrations_ship_with_the_package() -> None:
    """Found through importlib.resources (as the SQLite ones are), so a wheel holds them."""
    folder = FOLDER / "migrations_pg"
    assert all((folder / name).is_file() for name in _names("migrations"))
    assert Path(str(folder)).is_dir()
