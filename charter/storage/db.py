"""SQLite connections, transactions and migrations.

Every connection runs in WAL mode with ``synchronous=FULL`` (an acknowledged commit survives
power loss, not just a crash) and a busy timeout, so several processes can share one home.
Writes go through :func:`transaction`, which takes the write lock up front with
``BEGIN IMMEDIATE``: a read-then-insert inside it can never interleave with another writer.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import sqlite3
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from charter.errors import ConfigError, LedgerUnavailable, WriteLockBusy

log = logging.getLogger(__name__)

#: The connection type the layers above hold while they still pass one around (they never
#: run SQL on it; only charter/storage does). Named here so nothing above imports a driver.
Connection = sqlite3.Connection

BUSY_TIMEOUT_MS = 10_000
#: How long a transaction keeps trying for the write lock before it fails closed (the last
#: attempt may still wait out one busy timeout).
LOCK_WAIT_SECONDS = 30.0


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the database with Charter's pragmas.

    Raises:
        ConfigError: if the file cannot be opened or is not a Charter database.
    """
    try:
        if readonly:
            conn = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
        else:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        register_functions(conn)
        if not readonly:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ConfigError(f"database {path.name} cannot use WAL mode ({mode})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        # Rows freed by deletes and vault key rotations are zeroed: no old ciphertext lingers
        # in the file's free pages (set once per connection, for every unit of work on it).
        conn.execute("PRAGMA secure_delete=ON")
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"database {path.name} cannot be opened: {exc}") from exc
    return conn


def register_functions(conn: sqlite3.Connection) -> None:
    """Give ``conn`` the SQL functions Charter's schema calls: ``charter_sha256(blob)``, with
    which the ledger's link trigger (migration 0015) hashes the previous entry's bytes. A
    connection without it cannot append to the ledger."""
    conn.create_function("charter_sha256", 1, _sha256_hex, deterministic=True)


def _sha256_hex(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def transaction(
    conn: sqlite3.Connection, *, lock_wait: float | None = None
) -> Iterator[sqlite3.Connection]:
    """Run a write transaction under ``BEGIN IMMEDIATE``; roll back on any exception.

    Nested use becomes a savepoint. ``BEGIN`` itself is retried with jitter while another
    process holds the lock past the connection's busy timeout, for at most ``lock_wait``
    seconds (default :data:`LOCK_WAIT_SECONDS`; ``0``: one attempt).

    Raises:
        WriteLockBusy: the write lock could not be had in time; nothing was written.
        LedgerUnavailable: SQLite cannot write (disk full, read-only file, I/O error);
            nothing was written.
    """
    if conn.in_transaction:
        name = f"sp{random.randrange(1 << 30)}"  # noqa: S311 - a name, not a secret
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
            raise
        conn.execute(f"RELEASE {name}")
        return
    wait = LOCK_WAIT_SECONDS if lock_wait is None else lock_wait
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise LedgerUnavailable(f"the database cannot be written: {exc}") from exc
            if time.monotonic() - started >= wait:
                raise WriteLockBusy("the database stayed locked by another writer") from exc
            attempt += 1
            time.sleep(min(0.005 * attempt, 0.1) * (0.5 + random.random()))  # noqa: S311
    try:
        yield conn
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        # Disk full, read-only file, I/O error: say so (fail closed) instead of crashing.
        _rollback(conn)
        raise LedgerUnavailable(f"the database cannot be written: {exc}") from exc
    except BaseException:
        _rollback(conn)
        raise


@contextlib.contextmanager
def read_snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """Run reads in one read transaction (a consistent WAL snapshot), unless already in one."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


#: SQLite's WAL file layout: a 32-byte header, then frames of a 24-byte header and one page.
_WAL_HEADER, _FRAME_HEADER = 32, 24


def preallocate_wal(conn: sqlite3.Connection) -> bool:
    """Grow the database's write-ahead log file to its working size, if it is smaller.

    Until the log first fills up to the auto-checkpoint size, every commit appends to the
    file, and the fsync of an append must also make the file's new size and blocks durable:
    on ext4 here a commit costs about 1.7x as much while the log grows (about the first 200
    ledger appends of every server, since SQLite deletes the log when its last connection
    closes) as once it is recycled. Growing it up front makes every commit an overwrite of
    blocks that exist, as PostgreSQL does by zero-filling its WAL segments.

    How: one write transaction with a tiny page cache fills a scratch table; SQLite spills
    the dirty pages into the log as uncommitted frames, and the transaction is rolled back.
    The frames stay in the file but are not part of the log (recovery stops at the last
    commit frame), and nothing in the database changes. Returns whether it grew the file;
    False also when the write lock or the disk is not available (it is only an optimization).
    """
    if conn.in_transaction:  # its rollback would take the caller's transaction with it
        return False
    files = {row[1]: row[2] for row in conn.execute("PRAGMA database_list")}
    mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
    if mode != "wal" or not files.get("main"):
        return False
    wal = Path(files["main"] + "-wal")
    page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    frames = int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    try:
        if frames <= 0 or wal.stat().st_size >= _WAL_HEADER + frames * (_FRAME_HEADER + page):
            return False
    except FileNotFoundError:
        pass  # no log yet: the first frame written creates it
    cache = int(conn.execute("PRAGMA cache_size").fetchone()[0])
    try:
        conn.execute("PRAGMA cache_size=8")  # pages: spill to the log almost at once
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE charter_wal_filler (pad BLOB)")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO charter_wal_filler SELECT zeroblob(?) FROM n",
            (frames + 8, page - 256),  # a row per page (below the overflow threshold)
        )
    except sqlite3.Error as exc:
        log.debug("write-ahead log not preallocated: %s", exc)
        return False
    finally:
        _rollback(conn)
        conn.execute(f"PRAGMA cache_size={cache:d}")
    # Make the new blocks and size durable now, not in the first real commit's fsync. SQLite
    # takes no locks on the log file itself, so this second descriptor can be closed safely.
    with contextlib.suppress(OSError), wal.open("rb") as handle:
        getattr(os, "fdatasync", os.fsync)(handle.fileno())
    return True


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite may already have rolled back (e.g. after SQLITE_FULL); a second ROLLBACK would
    # raise and hide the original error.
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply every migration in ``charter/storage/migrations/*.sql`` not yet recorded.

    Each runs in its own transaction and is recorded in ``schema_migrations``. Returns the
    names applied.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " name TEXT PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ')))"
    )
    done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
    folder = resources.files("charter.storage") / "migrations"
    applied = []
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if not item.name.endswith(".sql") or item.name in done:
            continue
        with transaction(conn):
            for statement in _split_sql(item.read_text(encoding="utf-8")):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations(name) VALUES (?)", (item.name,))
        applied.append(item.name)
    return applied


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (``CREATE TRIGGER`` bodies hold semicolons)."""
    statements, buf = [], ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip())
    return statements
