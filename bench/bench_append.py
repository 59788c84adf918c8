"""Ledger append: Charter's durable append vs the raw limit, and group commit across processes.

The raw limit is what any signed, hash-chained, durable append must do: canonicalize the
entry, sign it (Ed25519), hash it (SHA-256), and commit one ``INSERT`` with
``synchronous=FULL`` in WAL mode, on plain ``sqlite3`` in a tight loop. It writes the same
entry fields into a table with the ledger's own schema (same columns and indexes), so the
ratio measures Charter's code path, not its schema.

Rows against that same raw baseline:

* ``Ledger.append_one``: Charter's ledger code on a blocking connection of its own
  (``charter.testing.raw_tx``), one entry per transaction: the code path without the store.
* ``LedgerWriter``, 1 caller: the servers' write path as it is now. The writer is started as
  the servers start it (``Deps.start``: a :class:`~charter.storage.sqlite.SqliteStore` of its
  own, write-ahead log preallocated) and group-commits on that store, whose units of work run
  on aiosqlite's thread; one awaiting caller makes each append its own batch, so each pays
  the hop to that thread and back. (This replaces the old writer's inline-vs-thread-mode
  comparison: there is one mode now.)
* group commit with 1-8 writer processes sharing the home, each such a writer with several
  concurrent callers.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench._common import (
    INFO,
    Row,
    ainterleave,
    arate,
    interleave,
    median,
    pick,
    rate,
    ratio_of_rounds,
    row,
    scratch_dir,
)
from bench._ledgers import AGENT, new_home, open_home
from charter.evidence.entries import SIGNING_PREFIX
from charter.evidence.jwk import b64url
from charter.keys.files import read_key_file
from charter.server.deps import Deps
from charter.storage.db import migrate, preallocate_wal, register_functions
from charter.storage.ports import LedgerTx
from charter.storage.writer import LedgerWriter
from charter.testing import call_draft, close_raw_dbs, raw_tx
from charter.tools import audit, identity
from charter.tools.identity import AgentContext

REPO = Path(__file__).resolve().parents[1]
TARGET = ">= 0.7x"
PROCESSES = (1, 2, 4, 8)
#: Concurrent callers awaiting appends inside each writer process.
CALLERS_PER_PROCESS = 8


class RawLedger:
    """The raw limit: canonicalize + sign + hash + one committed INSERT per entry."""

    def __init__(self, path: Path, agent: AgentContext, key_file: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        register_functions(self.conn)  # the schema's ledger_links trigger calls charter_sha256
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        migrate(self.conn)  # the ledger's own table and indexes
        preallocate_wal(self.conn)  # as the servers' writer does: commits overwrite the log
        self.agent = agent
        # the raw limit signs in-process with the key itself, as a bare logger would
        self.signing_key = read_key_file(key_file).signing_key
        self.seq = 0
        self.prev = "0" * 64
        self.session = secrets.token_hex(8)

    def append(self, n: int) -> None:
        """Append ``n`` entries, one transaction each."""
        agent = self.agent
        for _ in range(n):
            d = call_draft(agent, self.session, self.seq)
            fields: dict[str, Any] = {
                "v": 1, "seq": self.seq, "ts": "2026-01-02T03:04:05.678Z", "prev": self.prev,
                "actor": d.actor, "owner": d.owner, "charter": d.charter, "session": d.session,
                "call": d.call, "phase": d.phase, "action": d.action, "args": d.args,
                "args_hash": d.args_hash, "outcome": d.outcome, "reason": None,
                "result_hash": d.result_hash, "kid": agent.key.kid,
            }  # fmt: skip
            message = SIGNING_PREFIX + _dumps(fields)
            fields["sig"] = b64url(self.signing_key.sign(message).signature)
            body = _dumps(fields)
            digest = hashlib.sha256(body).hexdigest()
            self.conn.execute("BEGIN")
            self.conn.execute(
                "INSERT INTO ledger(seq, prev, hash, ts, actor, action, phase, outcome, call_id,"
                " body) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (self.seq, self.prev, digest, fields["ts"], d.actor, d.action, d.phase,
                 d.outcome, d.call, body),
            )  # fmt: skip
            self.conn.execute("COMMIT")
            self.seq, self.prev = self.seq + 1, digest


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def _charter_append(ledger: LedgerTx, agent: AgentContext, n: int) -> None:
    session = secrets.token_hex(8)
    for i in range(n):
        ledger.append_one(call_draft(agent, session, i))


async def _writer_append(writer: LedgerWriter, agent: AgentContext, n: int) -> None:
    session = secrets.token_hex(8)
    for i in range(n):
        await writer.append(call_draft(agent, session, i))


def run(quick: bool) -> list[Row]:
    """Append rows: single durable append, the server's writer path, concurrent processes."""
    return asyncio.run(_run(quick))


async def _run(quick: bool) -> list[Row]:
    # Many short rounds: a burst of disk traffic from another process spoils one round only.
    n = pick(quick, full=100, quick_n=50, tiny_n=10)
    rounds = pick(quick, full=31, quick_n=15, tiny_n=2)
    root = scratch_dir("append")
    home = await new_home(root / "home")
    agent = await identity.load_agent(home, AGENT)
    raw = RawLedger(root / "raw.db", agent, home.layout.agent_key(AGENT))
    served = Deps(home=home, resolve_agent=_no_resolver)  # the writer both servers use
    rows: list[Row] = []
    try:
        ledger = raw_tx(home).ledger
        base, subj = interleave(
            rounds,
            lambda: rate(n, lambda: raw.append(n)),
            lambda: rate(n, lambda: _charter_append(ledger, agent, n)),
        )
        rows.append(
            row(
                "append: Ledger.append_one (durable, 1 per txn)",
                median(subj),
                median(base),
                "entries/s",
                TARGET,
                f"{rounds} interleaved rounds of {n}; raw = canonicalize+sign+hash+INSERT, FULL",
                ratio=ratio_of_rounds(subj, base),
            )
        )
        writer = await served.start()  # its own store, log preallocated, as the servers do

        async def raw_rate() -> float:
            return rate(n, lambda: raw.append(n))

        base, subj = await ainterleave(rounds, raw_rate, _writer_rate(writer, agent, n))
        rows.append(
            row(
                "append: LedgerWriter, 1 caller (stdio and HTTP servers)",
                median(subj),
                median(base),
                "entries/s",
                TARGET,
                "one awaiting caller, so each append is its own batch: one unit of work on "
                "the writer's own SqliteStore (aiosqlite's thread), a hop there and back",
                ratio=ratio_of_rounds(subj, base),
            )
        )
        rows.append(await _new_home_row(quick, root))
        rows.extend(_processes(quick, root, raw, n))
        await audit.verify_home(home)  # concurrent writers never fork the chain
    finally:
        await served.shutdown()
        await home.close()
        raw.conn.close()
        close_raw_dbs()
    return rows


async def _new_home_row(quick: bool, root: Path) -> Row:
    """A new home's first appends, with and without its write-ahead log preallocated."""
    n = pick(quick, full=200, quick_n=200, tiny_n=5)
    rounds = pick(quick, full=7, quick_n=3, tiny_n=1)
    homes = itertools.count()

    async def first_appends(preallocate: bool) -> float:
        folder = root / f"new-{next(homes)}"
        try:
            async with await new_home(folder / "home") as home:
                if preallocate:
                    await home.store.warm()  # db.preallocate_wal, as the servers' writer
                agent = await identity.load_agent(home, AGENT)
                ledger = raw_tx(home).ledger
                return rate(n, lambda: _charter_append(ledger, agent, n))
        finally:
            close_raw_dbs()  # the raw connection of this home, before its folder goes
            shutil.rmtree(folder, ignore_errors=True)

    base, subj = await ainterleave(
        rounds, lambda: first_appends(False), lambda: first_appends(True)
    )
    return row(
        f"append: a new home's first {n} entries, log preallocated vs not",
        median(subj),
        median(base),
        "entries/s",
        INFO,
        f"{rounds} interleaved rounds, each on a new home; Ledger.append_one after "
        "SqliteStore.warm (db.preallocate_wal: what the servers' writer does at start) vs a "
        "log that grows",
        ratio=ratio_of_rounds(subj, base),
    )


def _writer_rate(
    writer: LedgerWriter, agent: AgentContext, n: int
) -> Callable[[], Awaitable[float]]:
    return lambda: arate(n, lambda: _writer_append(writer, agent, n))


async def _no_resolver() -> AgentContext:
    raise NotImplementedError


def _processes(quick: bool, root: Path, raw: RawLedger, n: int) -> list[Row]:
    """Group-commit throughput with several writer processes sharing one home."""
    small = bool(pick(quick, full=0, quick_n=0, tiny_n=1))
    seconds = 0.2 if small else (1.0 if quick else 2.0)
    rounds = pick(quick, full=3, quick_n=2, tiny_n=1)
    rows: list[Row] = []
    for procs in PROCESSES[:1] if small else PROCESSES:
        base, subj = interleave(
            rounds,
            lambda: rate(n, lambda: raw.append(n)),
            _group_rate(root / "home", procs, seconds),
        )
        rows.append(
            row(
                f"append: group commit, {procs} writer process(es)",
                median(subj),
                median(base),
                "entries/s",
                ">= 1.0x",
                f"{CALLERS_PER_PROCESS} concurrent callers per process, {rounds} rounds of "
                f"{seconds:g} s; baseline = the raw limit (one writer), interleaved",
                ratio=ratio_of_rounds(subj, base),
            )
        )
    return rows


def _group_rate(home_root: Path, procs: int, seconds: float) -> Callable[[], float]:
    return lambda: _run_writers(home_root, procs, seconds) / seconds


def _run_writers(home_root: Path, procs: int, seconds: float) -> int:
    """Start ``procs`` writer processes, release them together, return their total appends."""
    code = f"from bench.bench_append import writer_main; writer_main({str(home_root)!r}, {seconds})"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=REPO,
            text=True,
        )
        for _ in range(procs)
    ]
    try:
        for w in workers:  # each says "ready" once its writer is open
            assert w.stdout is not None
            if w.stdout.readline().strip() != "ready":
                raise RuntimeError("a writer process failed to start")
        for w in workers:
            assert w.stdin is not None
            w.stdin.write("go\n")
            w.stdin.flush()
        return sum(int(w.communicate(timeout=120)[0].strip()) for w in workers)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()


def writer_main(home_root: str, seconds: float) -> None:
    """One server-like process: a LedgerWriter with several concurrent callers.

    Prints ``ready``, waits for a line on stdin, appends for ``seconds``, prints the count.
    """
    asyncio.run(_writer_main(home_root, seconds))


async def _writer_main(home_root: str, seconds: float) -> None:
    home = await open_home(Path(home_root))
    deps = Deps(home=home, resolve_agent=_no_resolver)
    try:
        agent = await identity.load_agent(home, AGENT)
        writer = await deps.start()  # open the writer's store before the clock starts
        session = secrets.token_hex(8)

        async def caller(deadline: float) -> int:
            done = 0
            while time.perf_counter() < deadline:
                await writer.append(call_draft(agent, session, done))
                done += 1
            return done

        print("ready", flush=True)
        sys.stdin.readline()  # nothing else runs on this loop meanwhile
        deadline = time.perf_counter() + seconds
        counts = await asyncio.gather(*(caller(deadline) for _ in range(CALLERS_PER_PROCESS)))
        print(sum(counts), flush=True)
    finally:
        await deps.shutdown()
        await home.close()
