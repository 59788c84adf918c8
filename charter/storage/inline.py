"""A SQLite store whose units of work run on the caller's thread (no event loop, no thread).

For a one-shot process that does a few units of work and exits: ``charter hook claude-code``,
which Claude Code starts before every tool call. The units of work, transactions, pragmas,
migrations and ledger appends are exactly :class:`~charter.storage.sqlite.SqliteStore`'s (the
same :class:`~charter.storage.sqlite.SqliteTx`, ``BEGIN IMMEDIATE … COMMIT``, ``synchronous=
FULL``); only where they run differs: here the ``async`` methods block and never suspend, so
a coroutine using this store completes in one step and needs neither asyncio nor aiosqlite
(about a fifth of the hook's start-up). A server must not use it: its event loop would wait
for every lock, page and fsync.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from charter.errors import CharterError, ConfigError, LedgerUnavailable
from charter.storage.db import connect, preallocate_wal
from charter.storage.meta import close_quietly
from charter.storage.sqlite import (
    LedgerBinding,
    SqliteTx,
    SqliteWorker,
    _prepare,
    read_unit,
    write_unit,
)

if TYPE_CHECKING:
    from charter.clock import Clock
    from charter.evidence.entries import Entry, LedgerIdentity
    from charter.evidence.jwk import Ed25519Signer
    from charter.storage.ports import Draft, Tx

T = TypeVar("T")
log = logging.getLogger(__name__)


class InlineSqliteStore:
    """The :class:`~charter.storage.ports.Store` port on one blocking SQLite connection."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn: sqlite3.Connection | None = conn
        self.path = path
        self.binding: LedgerBinding | None = None

    @classmethod
    def open(cls, path: Path) -> InlineSqliteStore:
        """Open and migrate the existing database at ``path`` (as ``SqliteStore.open``).

        Raises:
            ConfigError: the file is missing, cannot be opened, or is corrupt.
        """
        if not path.exists():
            raise ConfigError(f"no database at {path}")
        _prepare(path, create=False)
        return cls(connect(path), path)

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerUnavailable("the database connection is closed")
        return self._conn

    def bind(self, identity: LedgerIdentity, clock: Clock, log_key: Ed25519Signer | None) -> None:
        self.binding = LedgerBinding(identity, clock, log_key)

    async def read(self, work: Callable[[Tx], T]) -> T:
        return read_unit(self._live(), self.binding, work)

    async def write(self, work: Callable[[Tx], T], *, lock_wait: float | None = None) -> T:
        return write_unit(self._live(), self.binding, work, lock_wait=lock_wait)

    async def append(
        self, drafts: Sequence[Draft], *, lock_wait: float | None = None
    ) -> list[Entry | CharterError]:
        return SqliteTx(self._live(), self.binding).ledger.append(drafts, lock_wait=lock_wait)

    async def autocommit(self, work: Callable[[Tx], T]) -> T:
        return work(SqliteTx(self._live(), self.binding))

    async def warm(self) -> None:
        try:
            preallocate_wal(self._live())
        except Exception:  # only an optimization, as in SqliteStore.warm
            log.exception("write-ahead log preallocation failed")

    def worker(self) -> SqliteWorker:
        return SqliteWorker(connect(self.path), self.binding)

    async def close(self) -> None:
        if self._conn is not None:
            close_quietly(self._conn)
            self._conn = None
