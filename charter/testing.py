"""Helpers for tests (ours and yours): a frozen clock, throwaway homes, in-process servers."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from charter.config import Settings
from charter.home import Home
from charter.server.app import CharterServer
from charter.server.deps import Deps
from charter.server.wiring import build_server
from charter.storage.db import Connection, read_snapshot, transaction
from charter.storage.direct import open_admin, open_direct
from charter.storage.ledger import Draft
from charter.storage.meta import close_quietly
from charter.storage.ports import Tx
from charter.storage.sqlite import SqliteTx
from charter.storage.vault import SecretInfo, SecretValue, Vault
from charter.tools.identity import AgentContext, load_agent


class FrozenClock:
    """A clock that only moves when told to."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.current = start or dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)

    def now(self) -> dt.datetime:
        """The frozen time."""
        return self.current

    def advance(self, **delta: float) -> None:
        """Move forward by ``timedelta(**delta)``."""
        self.current += dt.timedelta(**delta)


T = TypeVar("T")

_RAW: dict[tuple[Path, int], Connection] = {}
_ADMIN: list[Connection] = []

#: When set (``use_postgresql``), :func:`make_home` puts each home on a database of its own.
_SCRATCH: Any = None


def use_postgresql(admin_url: str | None) -> None:
    """Make :func:`make_home` create every home on a new PostgreSQL database of the cluster
    ``admin_url`` reaches (``None``: back to SQLite files). The test suite's PostgreSQL run
    (``CHARTER_TEST_DATABASE=postgresql``) calls it once per session."""
    global _SCRATCH
    if admin_url is None:
        _SCRATCH = None
        return
    from charter.storage.pg_scratch import ScratchDatabases

    _SCRATCH = ScratchDatabases(admin_url)


def drop_scratch_databases() -> None:
    """Drop the databases :func:`make_home` created on PostgreSQL (after each test)."""
    if _SCRATCH is not None:
        _SCRATCH.drop_all()


def on_postgresql() -> bool:
    """Whether :func:`make_home` creates homes on PostgreSQL (see :func:`use_postgresql`)."""
    return _SCRATCH is not None


def raw_db(home: Home) -> Connection:
    """A blocking connection of its own to ``home``'s database, for tests that read, tamper
    with or inspect rows directly (one per database, kept until :func:`close_raw_dbs`).

    On PostgreSQL: a :class:`~charter.storage.pg_conn.PgConnection` (autocommit, the
    ``sqlite3`` surface the repositories use: ``?`` placeholders, ``execute``/``fetchone``,
    ``charter.storage.db.transaction``), so the same raw reads and tampering run there."""
    key = (home.layout.db, id(home.store))  # a home reopened on a replaced file: a new one
    if key not in _RAW:
        _RAW[key] = open_direct(home.layout.db, home.settings.database_url)
    return _RAW[key]


def admin_db(home: Home) -> Connection:
    """A connection of its own with the append-only triggers off, as someone who owns the
    database has (the tampering tests): the SQLite file with its triggers dropped, or a
    PostgreSQL session with ``session_replication_role = replica`` (triggers do not fire).
    The caller closes it."""
    conn = open_admin(home.layout.db, home.settings.database_url)
    if home.settings.database_url is not None:
        _ADMIN.append(conn)  # closed with the raw connections after the test
    return conn


def other_db(home: Home) -> Connection:
    """A new connection to a PostgreSQL home's database, as another process would open it
    (autocommit; the caller closes it). SQLite tests open the file with ``sqlite3``."""
    url = home.settings.database_url
    assert url is not None, "a PostgreSQL home"
    return open_direct(home.layout.db, url)


def raw_tx(home: Home) -> Tx:
    """The repositories (and ledger) over :func:`raw_db`, outside the home's store: a
    blocking unit of work for tests (each statement commits on its own unless wrapped in
    ``charter.storage.db.transaction(raw_db(home))``)."""
    binding = getattr(home.store, "binding", None)
    return SqliteTx(raw_db(home), binding)


def conn_of(tx: Tx) -> Connection:
    """The SQLite connection under a unit of work (tests that write rows by hand)."""
    assert isinstance(tx, SqliteTx), "a SQLite unit of work"
    return tx.conn


def close_raw_dbs() -> None:
    """Close every :func:`raw_db` connection."""
    while _RAW:
        _, conn = _RAW.popitem()
        close_quietly(conn)
    while _ADMIN:
        close_quietly(_ADMIN.pop())


class BlockingVault:
    """A home's vault driven the blocking way, for tests: each call is one unit of work on
    :func:`raw_db` (what the services do through the store, without an event loop)."""

    def __init__(self, home: Home, *, passphrase: bytes | None = None) -> None:
        self.home = home
        self.vault = Vault(home.signer, home.clock, passphrase=passphrase)

    def _write(self, work: Callable[[Tx], T]) -> T:
        with transaction(raw_db(self.home)):
            return work(raw_tx(self.home))

    def _read(self, work: Callable[[Tx], T]) -> T:
        with read_snapshot(raw_db(self.home)):
            return work(raw_tx(self.home))

    def put(self, name: str, value: bytes, **options: Any) -> int:
        """:meth:`Vault.put` in a unit of work of its own."""
        return self._write(lambda tx: self.vault.put(tx, name, value, **options))

    def get(self, name: str, version: int | None = None) -> SecretValue:
        """:meth:`Vault.get` in a unit of work of its own."""
        return self._read(lambda tx: self.vault.get(tx, name, version))

    def info(self, name: str) -> SecretInfo:
        """:meth:`Vault.info`."""
        return self._read(lambda tx: self.vault.info(tx, name))

    def list(self, *, include_system: bool = False) -> list[SecretInfo]:
        """:meth:`Vault.list`."""
        return self._read(lambda tx: self.vault.list(tx, include_system=include_system))

    def delete(self, name: str) -> SecretInfo:
        """:meth:`Vault.delete` in a unit of work of its own."""
        return self._write(lambda tx: self.vault.delete(tx, name))

    def rotate_master_key(self, *, new_passphrase: bytes | None = None) -> tuple[int, int]:
        """Re-encrypt everything in one transaction, then swap the key file (as the owner
        service does)."""
        try:
            result = self._write(lambda tx: self.vault.reencrypt_all(tx, new_passphrase))
        except BaseException:
            self.vault.abandon_rotation()
            raise
        self.vault.finish_rotation()
        return result


async def make_home(
    root: Path,
    *,
    owner: str = "owner@example.com",
    clock: FrozenClock | None = None,
    passphrase: bytes | None = None,
    organization: str | None = None,
) -> Home:
    """Create a new home at ``root`` (cheap key derivation, for speed); ``organization``:
    an organization home whose first owner is ``owner``."""
    database = _SCRATCH.create() if _SCRATCH is not None else None
    return await Home.init(
        Settings(home=root),
        owner=owner,
        clock=clock,
        passphrase=passphrase,
        cheap_kdf=True,
        organization=organization,
        database=database,
    )


async def server_for(home: Home, agent: str) -> CharterServer:
    """An in-process server acting as ``agent`` (what ``charter serve --agent`` builds)."""
    ctx = await load_agent(home, agent)

    async def resolve() -> AgentContext:
        return ctx

    return build_server(Deps(home=home, resolve_agent=resolve))


def agent_draft(agent: AgentContext, *, action: str, phase: str = "call", **fields: Any) -> Draft:
    """A draft signed by ``agent`` under its current charter, as the gate builds them; any
    other :class:`~charter.storage.ledger.Draft` field can be given."""
    return Draft(
        actor=agent.agent_id,
        owner=agent.owner_id,
        action=action,
        phase=phase,
        signer=agent.key,
        charter=agent.charter.hash,
        **fields,
    )


def call_draft(agent: AgentContext, session: str, i: int) -> Draft:
    """An entry like the one an ``audit_query`` call writes (about 900 bytes)."""
    args = {"action": "email.send", "limit": 50, "cursor": i}
    return agent_draft(
        agent,
        action="audit.query",
        session=session,
        call=secrets.token_hex(8),
        args=args,
        args_hash=hashlib.sha256(repr(args).encode()).hexdigest(),
        outcome="ok",
        result_hash=hashlib.sha256(str(i).encode()).hexdigest(),
        require_agent=agent.name,
    )
