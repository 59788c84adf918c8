"""Migrations upgrade a home written by an earlier Charter without losing or changing data.

The old home is made for real: a current home's rows are copied into a database built from
the earlier migrations only, which then takes the place of the home's database.
"""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path
from typing import cast

import pytest

from charter.config import Settings
from charter.home import Home
from charter.storage.db import _split_sql, connect
from charter.testing import call_draft, raw_db, raw_tx
from charter.tools import audit, identity

#: The ledger's table was rebuilt without two unread indexes by this migration.
LEAN = "0007_ledger_lean.sql"


def _old_database(path: Path, source: Path, upto: str) -> None:
    """A database with the migrations before ``upto`` applied, holding ``source``'s rows."""
    folder = resources.files("charter.storage") / "migrations"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL"
        " DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ')))"
    )
    for name in names:
        if name >= upto:
            break
        for statement in _split_sql((folder / name).read_text(encoding="utf-8")):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations(name) VALUES (?)", (name,))
    conn.execute("ATTACH DATABASE ? AS src", (str(source),))
    tables = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM main.sqlite_master WHERE type = 'table'"
            " AND name NOT IN ('schema_migrations', 'sqlite_sequence')"
        )
    ]
    for table in tables:
        if table == "ledger_head":  # its one row is seeded by its migration (0012)
            continue
        columns = ", ".join(row[1] for row in conn.execute(f"PRAGMA main.table_info({table})"))
        conn.execute(f"INSERT INTO main.{table}({columns}) SELECT {columns} FROM src.{table}")
    conn.execute("DETACH DATABASE src")
    conn.close()


def _ledger_rows(db: Path) -> list[tuple[object, ...]]:
    conn = connect(db, readonly=True)
    try:
        return conn.execute("SELECT * FROM ledger ORDER BY seq").fetchall()
    finally:
        conn.close()


@pytest.mark.sqlite_only("SQLite migrations (sqlite_master)")
async def test_lean_ledger_migration_keeps_every_entry_and_the_guards(home: Home) -> None:
    agent = await identity.load_agent(home, "alpha")
    root = home.settings.layout.root
    db = home.layout.db
    for i in range(25):
        raw_tx(home).ledger.append_one(call_draft(agent, "s", i))
    before = _ledger_rows(db)
    await home.close()

    old = root / "old.db"
    _old_database(old, db, upto=LEAN)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    old.rename(db)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'ledger_call'").fetchone()
    conn.close()

    upgraded = await Home.open(Settings(home=root), clock=home.clock)
    try:
        conn = raw_db(upgraded)
        assert _ledger_rows(db) == before
        indexes = {r[1] for r in conn.execute("PRAGMA index_list(ledger)")}
        assert "ledger_call" not in indexes
        assert {"ledger_actor_seq", "ledger_action_seq"} <= indexes
        # 0015: no unique index on a random key; the ledger_links trigger refuses a fork
        assert not [r[1] for r in conn.execute("PRAGMA index_list(ledger)") if r[2]]
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE ledger SET actor = 'x' WHERE seq = 1")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM ledger WHERE seq = 1")
        with pytest.raises(sqlite3.IntegrityError, match="must link"):  # a fork
            conn.execute(
                "INSERT INTO ledger(seq, prev, hash, ts, actor, action, phase, body)"
                " SELECT 10000, prev, hash, ts, actor, action, phase, body FROM ledger"
                " WHERE seq = 3"
            )
        raw_tx(upgraded).ledger.append_one(
            call_draft(await identity.load_agent(upgraded, "alpha"), "s", 99)
        )
        assert (await audit.verify_home(upgraded)).size == len(before) + 1
    finally:
        await upgraded.close()


#: The Merkle tree was keyed by position, the ledger's fork guard became a trigger and the
#: tokens table was clustered on its id by this migration.
PAGES = "0015_pages_per_commit.sql"


@pytest.mark.sqlite_only("SQLite migrations (sqlite_master)")
async def test_pages_migration_keeps_the_tree_the_entries_and_the_tokens(home: Home) -> None:
    from charter.evidence import merkle
    from charter.storage import tlog
    from charter.tools import tokens

    agent = await identity.load_agent(home, "alpha")
    root = home.settings.layout.root
    db = home.layout.db
    for i in range(37):
        raw_tx(home).ledger.append_one(call_draft(agent, "s", i))
    issued = await tokens.issue_for_owner(home, "alpha", audience="https://api.example.com")
    signed = await home.write(lambda tx: tx.checkpoints.sign())
    before = _ledger_rows(db)
    token_rows = raw_db(home).execute("SELECT * FROM tokens ORDER BY jti").fetchall()
    await home.close()

    old = root / "old.db"
    _old_database(old, db, upto=PAGES)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    old.rename(db)
    conn = sqlite3.connect(db)
    assert "pos" not in {r[1] for r in conn.execute("PRAGMA table_info(merkle_nodes)")}
    nodes = conn.execute("SELECT count(*) FROM merkle_nodes").fetchone()[0]
    conn.close()

    upgraded = await Home.open(Settings(home=root), clock=home.clock)
    try:
        conn = raw_db(upgraded)
        assert _ledger_rows(db) == before
        assert conn.execute("SELECT * FROM tokens ORDER BY jti").fetchall() == token_rows
        assert conn.execute("SELECT count(*) FROM merkle_nodes").fetchone()[0] == nodes
        store = tlog.TreeStore(conn)
        assert store.size() == signed.size
        assert store.root(signed.size) == signed.root
        leaves = [merkle.leaf_hash(cast(bytes, r[-1])) for r in before]
        for index in (0, 17, signed.size - 1):
            proof = store.inclusion_proof(index, signed.size)
            merkle.verify_inclusion(leaves[index], index, signed.size, proof, signed.root)
        await tokens.verify(upgraded, issued.token, audience="https://api.example.com")
        raw_tx(upgraded).ledger.append_one(call_draft(agent, "s", 99))
        assert (await audit.verify_home(upgraded)).size == len(before) + 1
    finally:
        await upgraded.close()
