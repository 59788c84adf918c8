"""A psycopg 3 connection dressed as the ``sqlite3`` surface the repositories use.

The repositories (charter/storage/*.py) run their SQL through ``conn.execute(sql, params)``
and read ``fetchone``/``fetchall``/``rowcount``/``lastrowid`` or iterate the cursor; they catch
``sqlite3.IntegrityError``, and :func:`charter.storage.db.transaction` drives transactions
with ``BEGIN IMMEDIATE``, savepoints and ``in_transaction``. :class:`PgConnection` gives them
that surface over a synchronous psycopg connection, so one set of repositories serves both
backends. What it translates (once per statement text, cached):

- ``?`` placeholders to ``%s`` (and a literal ``%`` to ``%%``), outside string literals;
- ``INSERT OR IGNORE`` to ``INSERT … ON CONFLICT DO NOTHING``; ``INSERT OR REPLACE`` to
  ``INSERT … ON CONFLICT (primary key) DO UPDATE`` (the tables that use it are listed);
- ``lastrowid``: an INSERT into a table with a generated key gets ``RETURNING id``;
- ``rowid`` (an insertion-order tie-break) to ``ctid``;
- ``instr(column, ?)`` to ``position(? IN column)`` (the same 1-based index, 0 when absent);
- ``BEGIN IMMEDIATE`` (a writer) to ``BEGIN`` + ``SELECT … FROM ledger_head … FOR UPDATE``:
  every write transaction holds the one-row head's lock until it commits, so writers run one
  at a time exactly as under SQLite's database write lock (see charter/storage/pg.py);
- ``DROP TRIGGER [IF EXISTS] name`` (tests dropping a guard) to ``DROP TRIGGER name ON table``;
- ``PRAGMA``: ``integrity_check`` answers ``ok`` (PostgreSQL checks its own pages; what a
  Charter check means is the ledger's verification), the others are SQLite tuning: no-ops.

Errors come back as the ``sqlite3`` exception the repositories expect: integrity violations
as ``IntegrityError`` (an INSERT that may collide runs under a savepoint, so the transaction
goes on after it), a lock wait past ``lock_timeout`` as ``OperationalError("database is
locked")`` (``transaction`` then retries or raises ``WriteLockBusy``), a lost connection as
``OperationalError`` (``LedgerUnavailable`` above), anything else as ``DatabaseError``.
Messages never carry the connection's URL.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

#: Tables whose INSERT leaves the key to the database (``lastrowid`` → ``RETURNING id``).
_GENERATED_KEY = frozenset({"lockdowns", "mail_sent", "mail_local_inbox"})
#: Primary keys of the tables written with ``INSERT OR REPLACE``.
_REPLACE_KEYS = {"meta": "key", "mail_settings": "id"}
#: Tables whose repositories catch an INSERT's IntegrityError and go on: under a savepoint.
_MAY_COLLIDE = frozenset({"agents", "charters", "mail_sent", "mail_local_inbox"})
#: What a writer's ``BEGIN IMMEDIATE`` becomes (see the module docstring).
LOCK_HEAD = "SELECT id FROM ledger_head WHERE id = 1 FOR UPDATE"

_DROP_TRIGGER = re.compile(r"^\s*DROP\s+TRIGGER\s+(IF\s+EXISTS\s+)?(\w+)\s*;?\s*$", re.I)
_INSTR = re.compile(r"\binstr\((\w+),\s*%s\)", re.I)
_INSERT = re.compile(r"^\s*INSERT\s+(OR\s+(IGNORE|REPLACE)\s+)?INTO\s+(\w+)\s*", re.I)


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> tuple[str, str | None, bool]:
    """``(postgres_sql, table_inserted_into, returns_id)`` for one SQLite statement."""
    out = _placeholders(sql)
    table = None
    returns_id = False
    match = _INSERT.match(out)
    if match:
        table = match.group(3).lower()
        mode = (match.group(2) or "").upper()
        out = f"INSERT INTO {match.group(3)}" + out[match.end(3) :]
        if mode == "IGNORE":
            out = f"{out.rstrip().rstrip(';')} ON CONFLICT DO NOTHING"
        elif mode == "REPLACE":
            out = _upsert(out, table)
        elif table in _GENERATED_KEY:
            out = f"{out.rstrip().rstrip(';')} RETURNING id"
            returns_id = True
    out = re.sub(r"\browid\b", "ctid", out)
    out = _INSTR.sub(r"position(%s IN \1)", out)  # SQLite's instr(haystack, needle)
    return out, table, returns_id


def _placeholders(sql: str) -> str:
    parts = re.split(r"('(?:[^']|'')*')", sql)  # odd indexes: string literals
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("%", "%%").replace("?", "%s")
    return "".join(parts)


def _upsert(sql: str, table: str) -> str:
    key = _REPLACE_KEYS.get(table)
    cols = re.match(r"INSERT INTO \w+\s*\(([^)]*)\)", sql)
    if key is None or cols is None:
        raise sqlite3.OperationalError(f"INSERT OR REPLACE into {table} is not translated")
    names = [c.strip() for c in cols.group(1).split(",")]
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in names if c != key)
    action = f"DO UPDATE SET {sets}" if sets else "DO NOTHING"
    return f"{sql.rstrip().rstrip(';')} ON CONFLICT ({key}) {action}"


class PgCursor:
    """The results of one statement, read the way the repositories read a sqlite3 cursor."""

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int, lastrowid: int | None):
        self._rows = rows
        self._next = 0
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._next = self._rows[self._next :], len(self._rows)
        return rows

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        rows = self._rows[self._next : self._next + size]
        self._next += len(rows)
        return rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while (row := self.fetchone()) is not None:
            yield row


_EMPTY = PgCursor([], -1, None)


class StaleConnection(sqlite3.OperationalError):
    """A transaction's ``BEGIN`` found the connection dead (PostgreSQL restarted since its
    last use): nothing of the unit ran, so the store may run it again on a new connection."""


def _error(exc: psycopg.Error) -> sqlite3.Error:
    """The sqlite3 error a repository expects for ``exc`` (its first line, no URL)."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, pg_errors.LockNotAvailable):
        return sqlite3.OperationalError("database is locked (PostgreSQL lock_timeout)")
    if isinstance(exc, psycopg.IntegrityError):
        return sqlite3.IntegrityError(text)
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return sqlite3.OperationalError(f"PostgreSQL is unavailable: {text}")
    return sqlite3.DatabaseError(f"PostgreSQL: {text}")


class PgConnection:
    """One psycopg connection (autocommit: transactions are the statements sent)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    @property
    def broken(self) -> bool:
        return self.raw.closed or self.raw.broken

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> PgCursor:
        head = sql.lstrip()[:16].upper()
        if head.startswith("PRAGMA"):
            return self._pragma(sql)
        if head.startswith("BEGIN IMMEDIATE"):
            return self._begin_write()
        if head.startswith("DROP TRIGGER"):
            return self._drop_trigger(sql)
        text, table, _ = translate(sql)
        guard = table in _MAY_COLLIDE and self.in_transaction
        try:
            if guard:
                self._run("SAVEPOINT charter_insert", None)
            cursor = self._run(text, params)
            if guard:
                self._run("RELEASE charter_insert", None)
        except sqlite3.IntegrityError:
            if guard and not self.broken:
                self._run("ROLLBACK TO charter_insert", None)
                self._run("RELEASE charter_insert", None)
            raise
        return cursor

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> PgCursor:
        text, table, _ = translate(sql)
        text = text.removesuffix(" RETURNING id")
        rows = list(seq)
        if not rows:
            return _EMPTY
        guard = table in _MAY_COLLIDE and self.in_transaction
        try:
            if guard:
                self._run("SAVEPOINT charter_insert", None)
            with self.raw.cursor() as cur:
                cur.executemany(text, rows)
                count = cur.rowcount
            if guard:
                self._run("RELEASE charter_insert", None)
        except psycopg.Error as exc:
            if guard and not self.broken:
                self._run("ROLLBACK TO charter_insert", None)
                self._run("RELEASE charter_insert", None)
            raise _error(exc) from exc
        return PgCursor([], count, None)

    def _run(
        self, text: str, params: Sequence[Any] | None, *, returns_id: bool = False
    ) -> PgCursor:
        try:
            with self.raw.cursor() as cur:
                cur.execute(text, params)
                rows = cur.fetchall() if cur.description is not None else []
                count = cur.rowcount
        except psycopg.Error as exc:
            error = _error(exc)
            if text.startswith("BEGIN") and self.broken:
                raise StaleConnection(*error.args) from exc
            raise error from exc
        lastrowid = int(rows[0][0]) if text.endswith(" RETURNING id") and rows else None
        return PgCursor(rows, count, lastrowid)

    def _begin_write(self) -> PgCursor:
        self._run("BEGIN ISOLATION LEVEL READ COMMITTED", None)
        try:
            self._run(LOCK_HEAD, None)
        except sqlite3.Error:
            if not self.broken:
                self._run("ROLLBACK", None)
            raise
        return _EMPTY

    def _drop_trigger(self, sql: str) -> PgCursor:
        """SQLite's ``DROP TRIGGER [IF EXISTS] name``: PostgreSQL names the table too."""
        match = _DROP_TRIGGER.match(sql)
        if match is None:
            raise sqlite3.OperationalError(f"cannot translate: {sql.strip()[:80]}")
        name = match.group(2)
        rows = self._run(
            "SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname = %s", (name,)
        ).fetchall()
        if not rows:
            if match.group(1):
                return _EMPTY
            raise sqlite3.OperationalError(f"no such trigger: {name}")
        for (table,) in rows:
            self._run(f'DROP TRIGGER "{name}" ON {table}', None)
        return _EMPTY

    def _pragma(self, sql: str) -> PgCursor:
        if "integrity_check" in sql.lower():
            self._run("SELECT 1", None)  # the connection answers
            return PgCursor([("ok",)], 1, None)
        return _EMPTY

    def commit(self) -> None:
        """Nothing to do: outside ``BEGIN`` every statement commits on its own (autocommit)."""

    def close(self) -> None:
        self.raw.close()
