"""The SQLite Merkle tree and checkpoint log: CT known answers through the store, a cross-check
against ``MemoryTree``, O(log n) indexed access, backfill of older homes, and the rule that the
log never signs a checkpoint inconsistent with one it signed before."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.signing import VerifyKey

from charter.errors import InvalidInput, LedgerIntegrityError
from charter.evidence import merkle
from charter.evidence.c2sp import Checkpoint, Verifier, open_checkpoint
from charter.evidence.compact_range import CompactRange
from charter.evidence.jwk import Ed25519Signer
from charter.home import Home
from charter.storage import tlog
from charter.storage.db import connect, migrate, transaction
from charter.storage.ledger import Draft, Ledger
from charter.testing import make_home, raw_db, raw_tx

# The transparency-dev/merkle vectors (testonly/constants.go, proof/verify_test.go), 0-based.
CT_LEAVES = [
    bytes.fromhex(h)
    for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
              "606162636465666768696a6b6c6d6e6f"]
]  # fmt: skip
CT_ROOTS = {
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
CT_INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip
CT_CONSISTENCY = [
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]  # fmt: skip


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A migrated database with an empty ledger; leaves are appended through the hook."""
    conn = connect(tmp_path / "tree.db")
    migrate(conn)
    yield conn
    conn.close()


def append_all(conn: sqlite3.Connection, leaves: list[bytes], start: int = 0) -> None:
    with transaction(conn):
        for i, data in enumerate(leaves, start):
            tlog.append_leaf(conn, i, data)


def hexes(hashes: list[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def bodies(home: Home) -> list[bytes]:
    return list(raw_tx(home).ledger.iter_bodies())


async def fill(home: Home, n: int) -> None:
    for i in range(n):
        await home.record_owner_event("test.event", {"i": i})


def drop_guard(conn: sqlite3.Connection, trigger: str) -> None:
    """What an attacker with write access to the file can do."""
    conn.execute(f"DROP TRIGGER {trigger}")


# -- the tree -----------------------------------------------------------------------------------


def test_ct_known_answers_through_the_sqlite_store(db: sqlite3.Connection) -> None:
    append_all(db, CT_LEAVES)
    store = tlog.TreeStore(db)
    assert store.size() == 8
    assert {n: store.root(n).hex() for n in range(9)} == CT_ROOTS
    for index, size, proof in CT_INCLUSION:
        assert hexes(store.inclusion_proof(index, size)) == proof
        merkle.verify_inclusion(
            merkle.leaf_hash(CT_LEAVES[index]), index, size,
            store.inclusion_proof(index, size), store.root(size),
        )  # fmt: skip
    for old, new, proof in CT_CONSISTENCY:
        assert hexes(store.consistency_proof(old, new)) == proof
        merkle.verify_consistency(
            old, new, store.root(old), store.root(new), store.consistency_proof(old, new)
        )


def test_store_matches_memory_tree_for_random_sizes(db: sqlite3.Connection) -> None:
    rng = random.Random(9162)
    leaves = [rng.randbytes(rng.randrange(0, 40)) for _ in range(333)]
    reference = merkle.MemoryTree(merkle.leaf_hash(d) for d in leaves)
    done = 0
    store = tlog.TreeStore(db)
    for size in [*sorted(rng.sample(range(1, 334), 12)), 333]:
        append_all(db, leaves[done:size], done)
        done = size
        assert store.size() == size
        assert store.root(size) == reference.root(size)
        for _ in range(25):
            n = rng.randrange(1, size + 1)
            i, old = rng.randrange(n), rng.randrange(n + 1)
            assert store.root(n) == reference.root(n)
            assert store.inclusion_proof(i, n) == reference.inclusion_proof(i, n)
            assert store.consistency_proof(old, n) == reference.consistency_proof(old, n)


def test_compact_range_matches_memory_tree() -> None:
    reference = merkle.MemoryTree()
    edge = CompactRange()
    assert edge.root() == merkle.EMPTY_ROOT
    for i in range(300):
        leaf = merkle.leaf_hash(i.to_bytes(2, "big"))
        created = edge.append(leaf)
        reference.append(leaf)
        assert edge.root() == reference.root()
        assert all(reference.get(level, idx) == h for level, idx, h in created)
        assert len(edge.hashes) == edge.size.bit_count()
    copy = edge.copy()
    copy.append(merkle.leaf_hash(b"x"))
    assert edge.size == 300 and copy.size == 301
    with pytest.raises(ValueError, match="one hash per set bit"):
        CompactRange(3, [bytes(32)])
    with pytest.raises(ValueError, match="32 bytes"):
        CompactRange(1, [b"short"])


def test_requests_beyond_the_tree_are_clear_errors(db: sqlite3.Connection) -> None:
    append_all(db, CT_LEAVES[:5])
    store = tlog.TreeStore(db)
    with pytest.raises(InvalidInput, match="has 5 entries"):
        store.root(6)
    with pytest.raises(InvalidInput, match="not in a tree of size 5"):
        store.inclusion_proof(5, 5)
    with pytest.raises(InvalidInput, match="between 0 and the new size"):
        store.consistency_proof(4, 3)


def test_append_root_and_proofs_use_one_indexed_query_never_a_scan(
    db: sqlite3.Connection,
) -> None:
    append_all(db, [i.to_bytes(4, "big") for i in range(1000)])
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    store = tlog.TreeStore(db)
    with transaction(db):
        tlog.append_leaf(db, 1000, b"new")  # 1000 = 0b1111101000: three parents complete
        tlog.append_leaf(db, 1001, b"new")
    appends = list(statements)
    store.root(1002)
    store.inclusion_proof(517, 1002)
    store.consistency_proof(700, 1002)
    db.set_trace_callback(None)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert sum(s.lstrip().upper().startswith("SELECT") for s in appends) == 2  # one per append
    assert len(selects) == 2 + 3 * 2  # each read: the size probe and one node query
    for sql in selects:
        plan = " ".join(str(r[3]) for r in db.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "SCAN" not in plan, (sql, plan)
        # the size probe, max(pos), reads the last key of the primary key ("SEARCH merkle_nodes")
        assert "PRIMARY KEY" in plan or plan == "SEARCH merkle_nodes", (sql, plan)


def test_a_leaf_already_in_the_tree_refuses_the_append(db: sqlite3.Connection) -> None:
    append_all(db, CT_LEAVES[:3])
    with pytest.raises(LedgerIntegrityError, match="already holds"):
        append_all(db, [b"again"], 2)
    assert tlog.TreeStore(db).root(3).hex() == CT_ROOTS[3]


# -- the ledger hook and backfill ---------------------------------------------------------------


async def test_every_ledger_append_maintains_the_tree(home: Home) -> None:
    await fill(home, 20)
    leaves = [merkle.leaf_hash(b) for b in bodies(home)]
    store = tlog.TreeStore(raw_db(home))
    assert store.size() == len(leaves) == raw_tx(home).ledger.head()[0]
    assert store.root(len(leaves)) == merkle.root_from_leaves(leaves)


async def test_entries_appended_without_the_hook_are_caught_up_on_the_next_append(
    home: Home,
) -> None:
    bare = Ledger(raw_db(home), home.identity, home.clock, log_key=home.log_key, hooks=())
    await fill(home, 3)
    owner = home.owner_key()
    before = tlog.tree_size(raw_db(home))
    for i in range(37):
        await home.record_owner_event("warm", {"i": i})  # with the hook
        bare.append_one(_owner_draft(home, owner, i))  # without: the tree falls behind
        assert tlog.tree_size(raw_db(home)) < raw_tx(home).ledger.head()[0] or i == 0
    assert before < tlog.tree_size(raw_db(home)) < raw_tx(home).ledger.head()[0]
    bare.append_one(_owner_draft(home, owner, 99))
    await home.record_owner_event("catch.up", {})
    leaves = [merkle.leaf_hash(b) for b in bodies(home)]
    assert tlog.TreeStore(raw_db(home)).root(len(leaves)) == merkle.root_from_leaves(leaves)


def _owner_draft(home: Home, owner: Ed25519Signer, i: int) -> Draft:
    return Draft(
        actor=home.owner_id, owner=home.owner_id, action="bare.event", phase="event",
        signer=owner, args={"i": i}, outcome="ok",
    )  # fmt: skip


@pytest.mark.sqlite_only("rebuilds a pre-tree SQLite schema (DROP TABLE, SQLite SQL)")
async def test_a_home_created_before_the_tree_is_backfilled(tmp_path: Path) -> None:
    root = tmp_path / "old"
    home = await make_home(root)
    await fill(home, 40)
    # Put the database back in its pre-migration state: no tree, no checkpoints.
    with transaction(raw_db(home)):
        for table in ("merkle_nodes", "checkpoints"):
            raw_db(home).execute(f"DROP TABLE {table}")
        raw_db(home).execute(
            "DELETE FROM schema_migrations"
            " WHERE name IN ('0002_merkle.sql', '0015_pages_per_commit.sql')"
        )
    await home.close()
    async with await Home.open(home.settings) as reopened:
        assert tlog.tree_size(raw_db(reopened)) == 0
        expected = merkle.root_from_leaves([merkle.leaf_hash(b) for b in bodies(reopened)])
        signed = tlog.CheckpointLog(
            raw_db(reopened), reopened.origin, reopened.log_key, reopened.clock
        ).sign()
        assert (signed.size, signed.root) == (41, expected)
        assert tlog.tree_size(raw_db(reopened)) == 41
        await reopened.record_owner_event("after.upgrade", {})
        assert tlog.tree_size(raw_db(reopened)) == 42


def test_a_node_is_stored_only_under_its_own_position(db: sqlite3.Connection) -> None:
    """Lookups go by position (0015): a row whose key names another node is refused."""
    insert = "INSERT INTO merkle_nodes(pos, level, idx, hash) VALUES (?, ?, ?, ?)"
    assert tlog.position(1, 2) == 5 * 64 + 1  # (level 1, idx 2) covers leaves 4 and 5
    with pytest.raises(sqlite3.IntegrityError, match="merkle_nodes_pos_check"):
        db.execute(insert, (tlog.position(0, 5), 1, 2, bytes(32)))
    db.execute(insert, (tlog.position(1, 2), 1, 2, bytes(32)))


async def test_tree_longer_than_the_ledger_is_reported(home: Home) -> None:
    size = raw_tx(home).ledger.head()[0]
    with transaction(raw_db(home)):
        raw_db(home).execute(
            "INSERT INTO merkle_nodes(pos, level, idx, hash) VALUES (?, 0, ?, ?)",
            (tlog.position(0, size), size, bytes(32)),
        )
    with pytest.raises(LedgerIntegrityError, match="already holds"):
        await home.record_owner_event("refused", {})
    assert raw_tx(home).ledger.head()[0] == size
    with pytest.raises(LedgerIntegrityError, match="entries were removed"):
        _log(home).sign()


# -- checkpoints --------------------------------------------------------------------------------


def _log(home: Home) -> tlog.CheckpointLog:
    return tlog.CheckpointLog(raw_db(home), home.origin, home.log_key, home.clock)


async def test_checkpoint_is_a_c2sp_note_signed_by_the_log_key_named_after_the_origin(
    home: Home,
) -> None:
    checkpoints = _log(home)
    assert checkpoints.latest() is None
    signed = checkpoints.sign()
    size = raw_tx(home).ledger.head()[0]
    verifier = Verifier(home.origin, VerifyKey(home.log_key.public_key))
    checkpoint, signatures = open_checkpoint(signed.note, [verifier])
    assert checkpoint == Checkpoint(home.origin, size, signed.root)
    assert [s.name for s in signatures] == [home.origin]
    assert signed.root == merkle.root_from_leaves([merkle.leaf_hash(b) for b in bodies(home)])
    assert signed.note.startswith(f"{home.origin}\n{size}\n")
    assert checkpoints.sign() == signed  # the head did not move: nothing new is signed
    await home.record_owner_event("more", {})
    newer = checkpoints.sign()
    assert newer.size == size + 1
    assert checkpoints.latest() == newer
    assert checkpoints.at(size) == signed
    assert checkpoints.upto(size + 1) == [signed, newer]


async def test_the_log_refuses_to_sign_after_a_tree_node_is_tampered(home: Home) -> None:
    await fill(home, 14)
    checkpoints = _log(home)
    first = checkpoints.sign()  # 17 entries: perfect nodes (4, 0) and (0, 16)
    await fill(home, 5)
    drop_guard(raw_db(home), "merkle_nodes_no_update")
    with transaction(raw_db(home)):  # a node inside the signed tree
        raw_db(home).execute(
            "UPDATE merkle_nodes SET hash = ? WHERE level = 4 AND idx = 0", (bytes(32),)
        )
    with pytest.raises(LedgerIntegrityError, match="no longer gives the root of checkpoint 17"):
        checkpoints.sign()
    assert checkpoints.latest() == first


async def test_the_log_refuses_to_sign_a_tree_that_differs_from_the_ledger(home: Home) -> None:
    await fill(home, 14)
    checkpoints = _log(home)
    checkpoints.sign()
    await fill(home, 7)
    drop_guard(raw_db(home), "merkle_nodes_no_update")
    with transaction(raw_db(home)):  # a node added after the last checkpoint
        raw_db(home).execute(
            "UPDATE merkle_nodes SET hash = ? WHERE level = 1 AND idx = 10", (bytes(32),)
        )
    with pytest.raises(LedgerIntegrityError, match="does not match the ledger entries"):
        checkpoints.sign()


@pytest.mark.sqlite_only(
    "tampers in SQLite SQL (CAST AS BLOB); the PostgreSQL tampering tests are "
    "test_identity_attacks and test_pg_dba"
)
async def test_the_log_refuses_to_sign_over_a_rewritten_entry(home: Home) -> None:
    await fill(home, 6)
    checkpoints = _log(home)
    first = checkpoints.sign()
    await fill(home, 3)
    drop_guard(raw_db(home), "ledger_no_update")
    with transaction(raw_db(home)):  # rewrite an entry not yet covered by a checkpoint
        raw_db(home).execute("UPDATE ledger SET body = CAST('{}' AS BLOB) WHERE seq = 10")
    with pytest.raises(LedgerIntegrityError, match="does not match the ledger entries"):
        checkpoints.sign()
    assert checkpoints.latest() == first


@pytest.mark.sqlite_only(
    "tampers in SQLite SQL (CAST AS BLOB); the PostgreSQL tampering tests are "
    "test_identity_attacks and test_pg_dba"
)
async def test_a_rewrite_under_a_signed_checkpoint_does_not_move_the_tree(home: Home) -> None:
    await fill(home, 6)
    checkpoints = _log(home)
    first = checkpoints.sign()
    original = bodies(home)[3]
    drop_guard(raw_db(home), "ledger_no_update")
    with transaction(raw_db(home)):
        raw_db(home).execute("UPDATE ledger SET body = CAST('{}' AS BLOB) WHERE seq = 3")
    await home.record_owner_event("after", {})
    # The tree still commits to the original entry 3: the next checkpoint extends the first
    # one, and the rewritten row no longer matches the signed history (verification fails).
    second = checkpoints.sign()
    proof = tlog.TreeStore(raw_db(home)).consistency_proof(first.size, second.size)
    merkle.verify_consistency(first.size, second.size, first.root, second.root, proof)
    sibling_of_2 = tlog.TreeStore(raw_db(home)).inclusion_proof(2, 4)[0]
    assert sibling_of_2 == merkle.leaf_hash(original) != merkle.leaf_hash(b"{}")


@pytest.mark.sqlite_only(
    "tampers in SQLite SQL (bit shifts on BIGINT); the PostgreSQL tail-cut tests are "
    "test_identity_attacks and test_pg_dba"
)
async def test_the_log_refuses_to_sign_a_shorter_ledger(home: Home) -> None:
    await fill(home, 6)
    checkpoints = _log(home)
    checkpoints.sign()
    drop_guard(raw_db(home), "ledger_no_delete")
    drop_guard(raw_db(home), "merkle_nodes_no_delete")
    with transaction(raw_db(home)):
        size = raw_tx(home).ledger.head()[0]
        raw_db(home).execute("DELETE FROM ledger WHERE seq >= ?", (size - 2,))
        raw_db(home).execute("DELETE FROM merkle_nodes WHERE level = 0 AND idx >= ?", (size - 2,))
        raw_db(home).execute(
            "DELETE FROM merkle_nodes WHERE level > 0 AND (idx + 1) << level > ?", (size - 2,)
        )
    with pytest.raises(LedgerIntegrityError, match="already signed a checkpoint of 9"):
        checkpoints.sign()


async def test_a_tampered_stored_checkpoint_stops_the_log(home: Home) -> None:
    checkpoints = _log(home)
    signed = checkpoints.sign()
    drop_guard(raw_db(home), "checkpoints_no_update")
    forged = signed.note.replace(signed.note.split("\n")[2], "A" * 43 + "=")
    with transaction(raw_db(home)):
        raw_db(home).execute("UPDATE checkpoints SET note = ?", (forged,))
    await home.record_owner_event("more", {})
    with pytest.raises(LedgerIntegrityError, match="not signed by this log"):
        checkpoints.sign()


@pytest.mark.sqlite_only(
    "tampers in SQLite SQL (CAST AS BLOB); concurrent signing on PostgreSQL: test_store_contract"
)
async def test_two_connections_signing_at_once_agree(home: Home) -> None:
    other = connect(home.layout.db)
    try:
        a = _log(home)
        b = tlog.CheckpointLog(other, home.origin, home.log_key, home.clock)
        first = a.sign()
        assert b.sign() == first
        await home.record_owner_event("more", {})
        second = b.sign()
        assert a.sign() == second and a.latest() == second
    finally:
        other.close()
