"""The PostgreSQL backend of the storage ports (:mod:`charter.storage.ports`), on psycopg 3.

psycopg's **synchronous** API on worker threads, the same model as the SQLite backend: a unit
of work is a plain function of a :class:`~charter.storage.ports.Tx` run whole on a thread of
the store's own small pool (:data:`POOL_SIZE` threads, each with its own connection, opened on
first use and reopened when PostgreSQL dropped it), in one transaction, so the event loop
never waits for the network, a lock or a commit. The repositories are the SQLite ones, over
:class:`~charter.storage.pg_conn.PgConnection` (it translates the few SQLite idioms).

Transactions, and why they give the SQLite guarantees:

- **Writes** run in ``READ COMMITTED`` after ``SELECT id FROM ledger_head WHERE id = 1 FOR
  UPDATE`` (migration 0012): every writer of every process holds that one row's lock until
  it commits, so writers run one at a time, as under SQLite's ``BEGIN IMMEDIATE``, and each
  statement after the lock sees every earlier writer's commit. The ledger append reads its
  head (``max(seq)``) under that lock: one total order, never a fork (``UNIQUE(prev)`` in the
  schema refuses one anyway). A row lock rather than ``pg_advisory_xact_lock``: the
  measurements do not separate them (docs/POSTGRES-NOTES.md), and the row lock shows in
  ``pg_locks`` against a Charter table and needs no database-wide key another application
  could take too. Appends of a server are batched by its ``LedgerWriter`` (group commit), the
  scheme the notes measured to recover the baseline.
- **Reads** run in ``REPEATABLE READ``: one consistent snapshot, like a SQLite read
  transaction.
- ``lock_timeout`` is SQLite's busy timeout (10 s); ``transaction`` retries up to its
  ``lock_wait`` and then raises ``WriteLockBusy``.
- ``synchronous_commit`` must be ``on``: an acknowledged entry must survive a crash of the
  server. The store refuses to open otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from charter.clock import Clock
from charter.errors import CharterError, ConfigError, LedgerUnavailable
from charter.evidence.entries import Entry, LedgerIdentity
from charter.evidence.jwk import Ed25519Signer
from charter.storage.db import BUSY_TIMEOUT_MS, transaction
from charter.storage.pg_conn import PgConnection, StaleConnection
from charter.storage.sqlite import LedgerBinding, SqliteTx

if TYPE_CHECKING:
    from charter.storage.ledger import Draft
    from charter.storage.ports import Tx

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Threads (each with its own connection) of one store.
POOL_SIZE = 4
CONNECT_TIMEOUT = 10
#: An advisory lock key held while migrating, so two processes never migrate at once.
_MIGRATE_LOCK = 0x43484152  # "CHAR"


def redact(url: str) -> str:
    """``url`` without its password (for messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def is_postgres_url(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database."""
    return url.startswith(("postgresql://", "postgres://"))


def connect_pg(url: str) -> PgConnection:
    """Open a connection with Charter's session settings.

    Raises:
        ConfigError: PostgreSQL cannot be reached, refuses the login, or runs with
            ``synchronous_commit`` off.
    """
    try:
        raw = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or ["unknown error"])[0]
        raise ConfigError(f"cannot connect to PostgreSQL at {redact(url)}: {first}") from exc
    try:
        raw.execute(f"SET lock_timeout = {BUSY_TIMEOUT_MS:d}")
        raw.execute("SET TIME ZONE 'UTC'")
        row = raw.execute("SHOW synchronous_commit").fetchone()
    except psycopg.Error as exc:
        raw.close()
        raise ConfigError(f"PostgreSQL at {redact(url)} refused the session: {exc}") from exc
    if row is None or str(row[0]) not in ("on", "remote_write", "remote_apply"):
        raw.close()
        raise ConfigError(
            f"PostgreSQL at {redact(url)} runs with synchronous_commit={row and row[0]}: "
            "an acknowledged entry could be lost in a crash; set it to on"
        )
    return PgConnection(raw)


def migrate_pg(conn: PgConnection) -> list[str]:
    """Apply every file of ``migrations_pg/`` not yet recorded, each in its own transaction."""
    raw = conn.raw
    applied = []
    raw.execute("SELECT pg_advisory_lock(%s)", (_MIGRATE_LOCK,))
    try:
        raw.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at"
            " TEXT NOT NULL DEFAULT (to_char(now() AT TIME ZONE 'UTC',"
            ' \'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\')))'
        )
        done = {r[0] for r in raw.execute("SELECT name FROM schema_migrations").fetchall()}
        folder = resources.files("charter.storage") / "migrations_pg"
        for item in sorted(folder.iterdir(), key=lambda p: p.name):
            if not item.name.endswith(".sql") or item.name in done:
                continue
            with raw.transaction():
                raw.execute(cast(Any, item.read_text(encoding="utf-8")))
                raw.execute("INSERT INTO schema_migrations(name) VALUES (%s)", (item.name,))
            applied.append(item.name)
    finally:
        raw.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATE_LOCK,))
    return applied


def _tx(conn: PgConnection, binding: LedgerBinding | None) -> SqliteTx:
    return SqliteTx(cast(sqlite3.Connection, conn), binding)


def _read(conn: PgConnection, binding: LedgerBinding | None, work: Callable[[Tx], T]) -> T:
    if conn.in_transaction:
        return work(_tx(conn, binding))
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    try:
        result = work(_tx(conn, binding))
    except BaseException:
        if not conn.broken:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _write(
    conn: PgConnection,
    binding: LedgerBinding | None,
    work: Callable[[Tx], T],
    lock_wait: float | None = None,
) -> T:
    with transaction(cast(sqlite3.Connection, conn), lock_wait=lock_wait):
        return work(_tx(conn, binding))


class PgStore:
    """A PostgreSQL database behind the storage ports (:class:`~charter.storage.ports.Store`)."""

    def __init__(self, url: str, pool_size: int = POOL_SIZE) -> None:
        self.url = url
        self.binding: LedgerBinding | None = None
        self._pool = ThreadPoolExecutor(pool_size, thread_name_prefix="charter-pg")
        self._local = threading.local()
        self._conns: list[PgConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    async def open(cls, url: str, *, create: bool = False) -> PgStore:
        """Connect, check the server's settings and migrate the schema.

        ``create``: the database must not hold a Charter ledger yet (``charter init``).

        Raises:
            ConfigError: PostgreSQL cannot be reached or used, or (``create``) the database
                already holds a ledger.
        """
        store = cls(url)
        try:
            await store.run(lambda conn: _prepare(conn, url, create=create))
        except BaseException:
            await store.close()
            raise
        return store

    def bind(self, identity: LedgerIdentity, clock: Clock, log_key: Ed25519Signer | None) -> None:
        """Give the ledger its identity, clock and log key (read from ``meta`` by the home)."""
        self.binding = LedgerBinding(identity, clock, log_key)

    def _conn(self) -> PgConnection:
        conn: PgConnection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.broken:  # PostgreSQL restarted or dropped us: reconnect
            conn.close()
            conn = None
        if conn is None:
            try:
                conn = connect_pg(self.url)
            except ConfigError as exc:
                raise LedgerUnavailable(str(exc)) from exc
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    async def run(self, fn: Callable[[PgConnection], T]) -> T:
        """Run ``fn`` with this thread's connection on the store's pool.

        Raises:
            LedgerUnavailable: the store was closed, or PostgreSQL is unreachable.
        """
        if self._closed:
            raise LedgerUnavailable("the database connection is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self._guarded(fn))

    def _guarded(self, fn: Callable[[PgConnection], T]) -> T:
        try:
            try:
                return fn(self._conn())
            except Exception as exc:
                if not _stale(exc):
                    raise
                # PostgreSQL restarted since this connection's last use: its BEGIN failed,
                # nothing ran. Once more on a new connection (which fails if it is still down).
                log.info("PostgreSQL connection lost since its last use; reconnecting")
                return fn(self._conn())
        except sqlite3.Error as exc:  # outside a transaction helper: say it plainly
            raise LedgerUnavailable(f"the database cannot be used: {exc}") from exc

    async def read(self, work: Callable[[Tx], T]) -> T:
        binding = self.binding
        return await self.run(lambda conn: _read(conn, binding, work))

    async def write(self, work: Callable[[Tx], T], *, lock_wait: float | None = None) -> T:
        binding = self.binding
        return await self.run(lambda conn: _write(conn, binding, work, lock_wait))

    async def autocommit(self, work: Callable[[Tx], T]) -> T:
        binding = self.binding
        return await self.run(lambda conn: work(_tx(conn, binding)))

    async def append(
        self, drafts: Sequence[Draft], *, lock_wait: float | None = None
    ) -> list[Entry | CharterError]:
        binding = self.binding

        def unit(conn: PgConnection) -> list[Entry | CharterError]:
            return _tx(conn, binding).ledger.append(drafts, lock_wait=lock_wait)

        return await self.run(unit)

    async def warm(self) -> None:
        """Open the pool's connections up front (the first call does not pay for them)."""
        try:
            await asyncio.gather(*(self.run(lambda conn: None) for _ in range(2)))
        except CharterError:
            log.warning("PostgreSQL connections not opened ahead of time")

    async def contains_bytes(self, needle: bytes) -> bool:
        """Whether ``needle`` is in any text or bytea column of the schema's tables."""

        def scan(conn: PgConnection) -> bool:
            cols = conn.raw.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND data_type IN ('text', 'bytea')"
            ).fetchall()
            for table, column, kind in cols:
                value: sql.Composable = sql.Identifier(column)
                if kind == "text":
                    value = sql.SQL("convert_to({}, 'UTF8')").format(value)
                query = sql.SQL("SELECT 1 FROM {} WHERE position(%s IN {}) > 0 LIMIT 1").format(
                    sql.Identifier(table), value
                )
                if conn.raw.execute(query, (needle,)).fetchone() is not None:
                    return True
            return False

        return await self.run(scan)

    def worker(self) -> PgWorker:
        try:
            return PgWorker(connect_pg(self.url), self.binding)
        except ConfigError as exc:
            raise LedgerUnavailable(str(exc)) from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._pool.shutdown, wait=True)
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()


def _stale(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a :class:`StaleConnection`."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, StaleConnection):
            return True
        seen = seen.__cause__
    return False


class PgWorker:
    """A private blocking connection for a thread without an event loop."""

    def __init__(self, conn: PgConnection, binding: LedgerBinding | None) -> None:
        self.conn = conn
        self._binding = binding

    def read(self, work: Callable[[Tx], T]) -> T:
        return _read(self.conn, self._binding, work)

    def write(self, work: Callable[[Tx], T]) -> T:
        return _write(self.conn, self._binding, work)

    def close(self) -> None:
        self.conn.close()


def _prepare(conn: PgConnection, url: str, *, create: bool) -> None:
    migrate_pg(conn)
    if create:
        row = conn.raw.execute("SELECT value FROM meta WHERE key = 'origin'").fetchone()
        if row is not None:
            raise ConfigError(
                f"the database at {redact(url)} already holds a Charter ledger ({row[0]});"
                " refusing to overwrite it"
            )
