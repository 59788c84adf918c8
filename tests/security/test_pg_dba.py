"""What a PostgreSQL administrator can and cannot do to the ledger (SECURITY.md, G-DBA).

The administrator owns the database: the append-only triggers are no obstacle to them
(``session_replication_role = replica`` turns them off). But every entry is signed by a key
the database does not hold, chained to the one before and covered by signed checkpoints, so
an edited, deleted, inserted or reordered row fails ``charter audit verify``; and removing the
newest entries together with their checkpoints and tree nodes is caught by a checkpoint kept
outside the database (the backup recipe in docs/DEPLOY.md).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psycopg
import pytest

from charter.config import Settings
from charter.errors import LedgerIntegrityError
from charter.evidence.auditor import Trust
from charter.evidence.canonical import canonical_json
from charter.home import Home
from charter.tools import audit, identity, tlog

pytestmark = pytest.mark.sqlite_only("makes its own PostgreSQL home (pg_database)")

Tamper = Callable[[psycopg.Connection[tuple[object, ...]], int], None]


@pytest.fixture
async def pg_home(tmp_path: Path, pg_database: str) -> AsyncIterator[tuple[Home, str]]:
    settings = Settings(home=tmp_path / "home", database_url=pg_database)
    home = await Home.init(settings, owner="o@example.com", cheap_kdf=True)
    for name in ("alpha", "beta", "gamma", "delta"):
        await identity.add_agent(home, name, scopes=["audit:read"])
    await tlog.checkpoint(home)
    for name in ("alpha", "beta"):
        await identity.revoke_agent(home, name, reason="done")
    yield home, pg_database
    await home.close()


def as_dba(url: str, work: Callable[[psycopg.Connection[tuple[object, ...]]], None]) -> None:
    """Run ``work`` as the database's superuser with every trigger off, committed."""
    with psycopg.connect(url) as conn:
        conn.execute("SET session_replication_role = replica")
        work(conn)


def body(conn: psycopg.Connection[tuple[object, ...]], seq: int) -> bytes:
    row = conn.execute("SELECT body FROM ledger WHERE seq = %s", (seq,)).fetchone()
    assert row is not None
    value = row[0]
    assert isinstance(value, bytes)
    return value


def edit(conn: psycopg.Connection[tuple[object, ...]], seq: int) -> None:
    fields = json.loads(body(conn, seq))
    fields["action"] = "agent.add.forged"
    conn.execute(
        "UPDATE ledger SET body = %s, action = %s WHERE seq = %s",
        (canonical_json(fields), fields["action"], seq),
    )


def delete(conn: psycopg.Connection[tuple[object, ...]], seq: int) -> None:
    conn.execute("DELETE FROM ledger WHERE seq = %s", (seq,))
    conn.execute("UPDATE ledger SET seq = seq + 1000 WHERE seq > %s", (seq,))
    conn.execute("UPDATE ledger SET seq = seq - 1001 WHERE seq > %s", (seq + 1000,))  # no gap


def insert(conn: psycopg.Connection[tuple[object, ...]], seq: int) -> None:
    conn.execute("UPDATE ledger SET seq = seq + 1000 WHERE seq >= %s", (seq,))
    conn.execute("UPDATE ledger SET seq = seq - 999 WHERE seq >= %s", (seq + 1000,))
    forged = json.loads(body(conn, seq - 1))
    forged["seq"] = seq
    forged["action"] = "agent.add"
    conn.execute(
        "INSERT INTO ledger (seq, prev, hash, ts, actor, action, phase, body)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (seq, f"forged-{seq}", f"forged-hash-{seq}", forged["ts"], forged["actor"],
         forged["action"], forged["phase"], canonical_json(forged)),
    )  # fmt: skip


def reorder(conn: psycopg.Connection[tuple[object, ...]], seq: int) -> None:
    for old, new in ((seq, 10**6), (seq + 1, seq), (10**6, seq + 1)):  # swap two rows
        conn.execute("UPDATE ledger SET seq = %s WHERE seq = %s", (new, old))


@pytest.mark.parametrize("tamper", [edit, delete, insert, reorder], ids=lambda f: f.__name__)
async def test_a_dba_edit_delete_insert_or_reorder_is_caught(
    pg_home: tuple[Home, str], tamper: Tamper
) -> None:
    home, url = pg_home
    size = (await audit.verify_home(home)).size  # valid before
    assert size >= 7
    as_dba(url, lambda conn: tamper(conn, 3))
    with pytest.raises(LedgerIntegrityError):
        await audit.verify_home(home)


async def test_a_dba_cutting_the_tail_with_its_checkpoints_is_caught_by_a_kept_one(
    pg_home: tuple[Home, str],
) -> None:
    home, url = pg_home
    kept = (await tlog.checkpoint(home)).note  # what the backup recipe keeps off the database
    old = (await home.read(lambda tx: tx.checkpoints.upto()))[0].size

    def cut(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        conn.execute("DELETE FROM ledger WHERE seq >= %s", (old,))
        conn.execute("DELETE FROM checkpoints WHERE size > %s", (old,))
        conn.execute("DELETE FROM merkle_nodes")  # rebuilt from the remaining entries

    as_dba(url, cut)
    async with await Home.open(home.settings) as fresh:
        # Alone, a cleanly cut ledger ends at an older genuine checkpoint: it verifies...
        assert (await audit.verify_home(fresh)).size == old
        # ...but not against the checkpoint kept off the database.
        with pytest.raises(LedgerIntegrityError, match="truncated"):
            await audit.verify_home(fresh, trust=Trust(kept=kept))
