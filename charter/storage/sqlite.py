"""The SQLite backend of the storage ports (:mod:`charter.storage.ports`), on aiosqlite.

One :class:`SqliteStore` is one aiosqlite connection: its own thread and one ``sqlite3``
connection (WAL, ``synchronous=FULL``, :func:`~charter.storage.db.connect`). Each unit of work
runs whole on that thread, inside ``BEGIN IMMEDIATE … COMMIT`` (writes) or one read
transaction (reads), so the event loop never waits for a lock, a page or an fsync, and units of
work of one store never interleave (the thread runs them one after the other).

aiosqlite runs every call it makes through ``Connection._execute(fn)`` on its thread; a unit of
work is handed to it the same way (one hop per unit of work instead of one per statement; see
docs/ARCHITECTURE.md for the figures). :func:`_run_on_thread` is the one place that relies on
it, and tests/storage/test_store_contract.py fails if aiosqlite changes it.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from charter.clock import Clock
from charter.errors import AgentRevoked, CharterError, ConfigError, LedgerUnavailable
from charter.evidence.entries import Entry, LedgerIdentity
from charter.evidence.jwk import Ed25519Signer
from charter.storage import ledger_hooks, tlog
from charter.storage.agents import AgentRepo
from charter.storage.db import connect, migrate, preallocate_wal, read_snapshot, transaction
from charter.storage.ledger import Draft, Ledger, agent_refusal
from charter.storage.meta import MetaRepo, close_quietly

if TYPE_CHECKING:  # imported when used: aiosqlite (asyncio), repositories (start-up time)
    import aiosqlite

    from charter.storage.approvals import ApprovalRepo
    from charter.storage.dpop import DpopReplayRepo
    from charter.storage.health import HealthRepo
    from charter.storage.lockdown import LockdownRepo
    from charter.storage.mail import MailRepo
    from charter.storage.owners import OwnerRepo
    from charter.storage.ports import Tx
    from charter.storage.queries import LedgerQueries
    from charter.storage.tokens import TokenRepo
    from charter.storage.vault import VaultRepo
    from charter.storage.wal import Checkpointer
    from charter.storage.witnesses import WitnessRepo

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LedgerBinding:
    """What the ledger of a home needs beyond its rows: identity, clock and log key."""

    identity: LedgerIdentity
    clock: Clock
    log_key: Ed25519Signer | None


class SqliteTx:
    """The repositories of one SQLite transaction (see :class:`charter.storage.ports.Tx`)."""

    def __init__(self, conn: sqlite3.Connection, binding: LedgerBinding | None) -> None:
        self.conn = conn
        self._binding = binding

    @functools.cached_property
    def agents(self) -> AgentRepo:
        return AgentRepo(self.conn)

    @functools.cached_property
    def approvals(self) -> ApprovalRepo:
        from charter.storage.approvals import ApprovalRepo

        return ApprovalRepo(self.conn)

    @functools.cached_property
    def lockdown(self) -> LockdownRepo:
        from charter.storage.lockdown import LockdownRepo

        return LockdownRepo(self.conn)

    @functools.cached_property
    def mail(self) -> MailRepo:
        from charter.storage.mail import MailRepo

        return MailRepo(self.conn)

    @functools.cached_property
    def meta(self) -> MetaRepo:
        return MetaRepo(self.conn)

    @functools.cached_property
    def owners(self) -> OwnerRepo:
        from charter.storage.owners import OwnerRepo

        return OwnerRepo(self.conn)

    @functools.cached_property
    def tokens(self) -> TokenRepo:
        from charter.storage.tokens import TokenRepo

        return TokenRepo(self.conn)

    @functools.cached_property
    def vault(self) -> VaultRepo:
        from charter.storage.vault import VaultRepo

        return VaultRepo(self.conn)

    @functools.cached_property
    def witnesses(self) -> WitnessRepo:
        from charter.storage.witnesses import WitnessRepo

        return WitnessRepo(self.conn)

    @functools.cached_property
    def dpop(self) -> DpopReplayRepo:
        from charter.storage.dpop import DpopReplayRepo

        return DpopReplayRepo(self.conn)

    @functools.cached_property
    def health(self) -> HealthRepo:
        from charter.storage.health import HealthRepo

        return HealthRepo(self.conn)

    @functools.cached_property
    def queries(self) -> LedgerQueries:
        from charter.storage.queries import LedgerQueries

        return LedgerQueries(self.conn)

    @functools.cached_property
    def tree(self) -> tlog.TreeStore:
        return tlog.TreeStore(self.conn)

    @functools.cached_property
    def ledger(self) -> Ledger:
        binding = self._bound()
        return Ledger(
            self.conn,
            binding.identity,
            binding.clock,
            log_key=binding.log_key,
            hooks=ledger_hooks(),
            tx=self,
        )

    @functools.cached_property
    def checkpoints(self) -> tlog.CheckpointLog:
        binding = self._bound()
        if binding.log_key is None:
            raise ConfigError("no log key loaded to sign checkpoints")
        return tlog.CheckpointLog(
            self.conn, binding.identity.origin, binding.log_key, binding.clock
        )

    def agent_refusal(self, name: str, charter: str | None) -> AgentRevoked | None:
        return agent_refusal(self.conn, name, charter)

    def sync_tree(self, upto: int | None = None) -> int:
        return tlog.sync_tree(self.conn, upto)

    def _bound(self) -> LedgerBinding:
        if self._binding is None:
            raise ConfigError("this database is not bound to a ledger identity yet")
        return self._binding


async def _run_on_thread(db: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn`` with the raw connection on aiosqlite's thread (see the module docstring)."""
    raw = db._conn
    result: T = await db._execute(fn, raw)  # type: ignore[no-untyped-call]
    return result


class SqliteStore:
    """A home's SQLite database behind the storage ports (:class:`~charter.storage.ports.Store`)."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        #: Checkpoints the log off this connection's commits (started by :meth:`warm`).
        self._checkpointer: Checkpointer | None = None
        self.binding: LedgerBinding | None = None
        self._closed = False

    @classmethod
    async def open(cls, path: Path, *, create: bool = False) -> SqliteStore:
        """Open (``create``: make, owner-only) the database at ``path`` and migrate it.

        Raises:
            ConfigError: the file cannot be opened, is corrupt, or (without ``create``) is
                missing.
        """
        if not create and not path.exists():
            raise ConfigError(f"no database at {path}")
        # Opened, checked and migrated first on a short-lived connection of a worker thread:
        # a file that cannot be opened fails here, with its reason, before aiosqlite's thread
        # exists (its connection then opens a file known to be good).
        import asyncio

        import aiosqlite

        await asyncio.to_thread(_prepare, path, create=create)
        db = aiosqlite.Connection(lambda: connect(path), iter_chunk_size=64)
        # NOTE: a daemon thread, like the ledger writer's thread before it: a process that
        # exits on an error without closing its home must not hang on it. SQLite keeps the
        # file safe either way (WAL, synchronous=FULL: an unfinished transaction rolls back).
        db._thread.daemon = True
        await db
        return cls(db, path)

    def bind(self, identity: LedgerIdentity, clock: Clock, log_key: Ed25519Signer | None) -> None:
        """Give the ledger its identity, clock and log key (read from ``meta`` by the home)."""
        self.binding = LedgerBinding(identity, clock, log_key)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the connection's thread (storage-internal: no transaction).

        Raises:
            LedgerUnavailable: the store was closed.
        """
        if self._closed:
            raise LedgerUnavailable("the database connection is closed")
        return await _run_on_thread(self._db, fn)

    async def read(self, work: Callable[[Tx], T]) -> T:
        binding = self.binding
        return await self.run(lambda conn: read_unit(conn, binding, work))

    async def write(self, work: Callable[[Tx], T], *, lock_wait: float | None = None) -> T:
        binding = self.binding
        return await self.run(lambda conn: write_unit(conn, binding, work, lock_wait=lock_wait))

    async def autocommit(self, work: Callable[[Tx], T]) -> T:
        binding = self.binding
        return await self.run(lambda conn: work(SqliteTx(conn, binding)))

    async def append(
        self, drafts: Sequence[Draft], *, lock_wait: float | None = None
    ) -> list[Entry | CharterError]:
        binding = self.binding

        def unit(conn: sqlite3.Connection) -> list[Entry | CharterError]:
            results = SqliteTx(conn, binding).ledger.append(drafts, lock_wait=lock_wait)
            if self._checkpointer is not None:
                self._checkpointer.committed()
            return results

        return await self.run(unit)

    async def warm(self) -> None:
        """Grow the write-ahead log to its working size, and copy it back to the database on
        a thread of its own as it fills (:mod:`charter.storage.wal`): a server's writer store
        appends a stream of entries."""
        try:
            await self.run(preallocate_wal)
            if self._checkpointer is None:
                from charter.storage.wal import Checkpointer

                self._checkpointer = Checkpointer(self.path)
        except Exception:  # only an optimization: the store must still serve
            log.exception("write-ahead log preallocation failed")

    def worker(self) -> SqliteWorker:
        return SqliteWorker(connect(self.path), self.binding)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._db.close()
            if self._checkpointer is not None:
                import asyncio

                await asyncio.to_thread(self._checkpointer.close)
                self._checkpointer = None


def read_unit(
    conn: sqlite3.Connection, binding: LedgerBinding | None, work: Callable[[Tx], T]
) -> T:
    """Run the unit of work ``work`` on ``conn`` in one read transaction (one snapshot)."""
    with read_snapshot(conn):
        return work(SqliteTx(conn, binding))


def write_unit(
    conn: sqlite3.Connection,
    binding: LedgerBinding | None,
    work: Callable[[Tx], T],
    *,
    lock_wait: float | None = None,
) -> T:
    """Run the unit of work ``work`` on ``conn`` under ``BEGIN IMMEDIATE … COMMIT``: all of
    it or none (``lock_wait``: as for :func:`~charter.storage.db.transaction`)."""
    with transaction(conn, lock_wait=lock_wait):
        return work(SqliteTx(conn, binding))


class SqliteWorker:
    """A private blocking connection for a thread without an event loop."""

    def __init__(self, conn: sqlite3.Connection, binding: LedgerBinding | None) -> None:
        self.conn = conn
        self._binding = binding

    def read(self, work: Callable[[Tx], T]) -> T:
        return read_unit(self.conn, self._binding, work)

    def write(self, work: Callable[[Tx], T]) -> T:
        return write_unit(self.conn, self._binding, work)

    def close(self) -> None:
        close_quietly(self.conn)


def _prepare(path: Path, *, create: bool) -> None:
    """Open the file (making it owner-only when new), apply the migrations, close it.

    Raises:
        ConfigError: the file cannot be opened or is corrupt.
    """
    conn = connect(path)
    try:
        if create:
            path.chmod(0o600)
        migrate(conn)
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"database {path.name} is corrupt: {exc}") from exc
    finally:
        close_quietly(conn)
