"""The private PostgreSQL cluster the PostgreSQL tests run on (tests/support/pg.py, issue 18).

Real server, real driver (asyncpg, the ``postgres`` extra): a database per test, durable
settings, loopback only, not run as root, and restart/crash with the data kept.
"""

from __future__ import annotations

import os
import pwd
import socket
from pathlib import Path

import asyncpg
import pg
import pgfixtures
import pytest
from pg import PgCluster

# Until tests/conftest.py registers pgfixtures (see its docstring), this module does.
pg_cluster = pgfixtures.pg_cluster
pg_database = pgfixtures.pg_database
pg_own_cluster = pgfixtures.pg_own_cluster


async def _count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM t"))
    finally:
        await conn.close()


async def test_connect_write_read(pg_database: str) -> None:
    conn = await asyncpg.connect(pg_database)
    try:
        await conn.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, body BYTEA NOT NULL)")
        async with conn.transaction():
            await conn.execute("INSERT INTO t VALUES ($1, $2)", 1, b"\x00entry")
        row = await conn.fetchrow("SELECT id, body FROM t")
        assert row is not None
        assert tuple(row) == (1, b"\x00entry")
    finally:
        await conn.close()
    assert await _count(pg_database) == 1  # committed: another connection sees it


async def test_settings_are_durable_and_loopback_only(pg_database: str) -> None:
    conn = await asyncpg.connect(pg_database)
    try:
        settings = {
            name: await conn.fetchval(f"SHOW {name}")
            for name in ("fsync", "synchronous_commit", "full_page_writes", "listen_addresses")
        }
    finally:
        await conn.close()
    assert settings == {
        "fsync": "on",
        "synchronous_commit": "on",
        "full_page_writes": "on",
        "listen_addresses": "127.0.0.1",
    }


async def test_each_test_gets_a_fresh_empty_database(
    pg_cluster: PgCluster, pg_database: str
) -> None:
    conn = await asyncpg.connect(pg_database)
    try:
        name = await conn.fetchval("SELECT current_database()")
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    assert name not in ("postgres", "template0", "template1")
    assert pg_database.endswith(f"/{name}")
    assert tables == []
    # A second database is another database: what one test writes, the next cannot see.
    other = pg_cluster.create_database()
    try:
        assert other != pg_database
    finally:
        pg_cluster.drop_database(other.rsplit("/", 1)[1])


def test_the_server_does_not_run_as_root(pg_cluster: PgCluster) -> None:
    pid = int((pg_cluster.data / "postmaster.pid").read_text().splitlines()[0])
    uid = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("Uid:")
    )
    if os.geteuid() == 0:
        assert uid == pwd.getpwnam("nobody").pw_uid
    else:
        assert uid == os.geteuid()
    assert uid != 0


async def test_restart_breaks_connections_and_keeps_data(pg_own_cluster: PgCluster) -> None:
    dsn = pg_own_cluster.create_database("faults")
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE TABLE t (id BIGINT PRIMARY KEY)")
    await conn.execute("INSERT INTO t VALUES (1)")
    port = pg_own_cluster.port

    pg_own_cluster.restart()

    assert pg_own_cluster.port == port  # the DSN stays valid
    with pytest.raises((asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)):
        await conn.fetchval("SELECT count(*) FROM t")
    await conn.close()
    assert await _count(dsn) == 1  # a new connection works and sees the committed row


async def test_crash_keeps_every_acknowledged_commit(pg_own_cluster: PgCluster) -> None:
    dsn = pg_own_cluster.create_database("crash")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE t (id BIGINT PRIMARY KEY)")
        for i in range(50):
            await conn.execute("INSERT INTO t VALUES ($1)", i)
    finally:
        await conn.close()

    pg_own_cluster.crash()  # immediate: no shutdown checkpoint, recovery replays the WAL
    assert not pg_own_cluster.running
    with pytest.raises(ConnectionRefusedError):
        await asyncpg.connect(dsn, timeout=2)
    pg_own_cluster.start()

    assert await _count(dsn) == 50


def test_close_stops_the_server_and_removes_its_folder() -> None:
    cluster = PgCluster(bin_dir=pg.require_pg_bin())
    cluster.start()
    root, port = cluster.root, cluster.port
    cluster.close()
    cluster.close()  # twice is fine
    assert not root.exists()
    with socket.socket() as sock:
        assert sock.connect_ex((pg.LOOPBACK, port)) != 0


def test_missing_postgres_fails_in_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pg, "find_pg_bin", lambda: None)
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="must not be skipped"):
        pg.require_pg_bin()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="install-postgres"):
        pg.require_pg_bin()


def test_database_names_are_checked(pg_cluster: PgCluster) -> None:
    with pytest.raises(ValueError, match="plain database name"):
        pg_cluster.create_database("x; DROP DATABASE postgres")
