"""The ledger's RFC 9162 Merkle tree and the log's signed checkpoints, stored next to it.

**Tree.** ``merkle_nodes`` holds every perfect subtree of the ledger (see
:mod:`charter.evidence.merkle`): leaf ``i`` is ``SHA-256(0x00 || entry i bytes)``. A node is
keyed by its position (:func:`position`: the last leaf it covers, then its level), so the
nodes one append writes are neighbours at the end of the table: one page per append.
:func:`append_leaf` is a ledger append hook: inside the append transaction it reads the new
leaf's left siblings and writes the leaf and the parents it completes, in one indexed
``SELECT`` and one ``INSERT``. :class:`TreeStore` answers roots, inclusion and consistency
proofs of any size the tree has reached with one indexed query for O(log n) nodes. A home whose
ledger predates the tree (or a ledger appended without the hook) is caught up from the ledger
rows by :func:`sync_tree`, on the next append or checkpoint.

**Checkpoints.** :class:`CheckpointLog` signs C2SP ``tlog-checkpoint`` notes with the log key,
named after the ledger's origin, and keeps them in ``checkpoints``. Before it signs, it checks
(inside the write transaction) that the new tree extends the latest checkpoint it signed: the
stored nodes must reproduce the old root, the ledger's own entries since must reproduce the
stored new root, and a consistency proof from the store must verify between the two. Any
mismatch refuses the signature, so the log never signs two inconsistent checkpoints. A stored
checkpoint is read back with its witnesses' cosignature lines appended
(:mod:`charter.storage.witnesses`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, TypeVar

from charter.clock import Clock, rfc3339
from charter.errors import InvalidInput, LedgerIntegrityError
from charter.evidence import merkle
from charter.evidence.compact_range import CompactRange
from charter.evidence.jwk import Ed25519Signer
from charter.storage.db import transaction

if TYPE_CHECKING:  # signed notes and witnesses: imported when a checkpoint is signed or read
    from charter.evidence.c2sp import KeySigner

log = logging.getLogger(__name__)

Address = tuple[int, int]
_T = TypeVar("_T")
#: Leaves read from the ledger and nodes written per batch while catching the tree up.
_SYNC_BATCH = 5000


#: Node positions looked up per query (SQLite's default limit on placeholders is far above).
_FETCH_BATCH = 500


def position(level: int, index: int) -> int:
    """The storage key of node ``(level, index)``: the last leaf it covers, times 64, plus
    its level (migration 0015). Nodes completed by one leaf get consecutive keys."""
    return ((((index + 1) << level) - 1) << 6) + level


def _fetch(conn: sqlite3.Connection, addresses: Sequence[Address]) -> dict[Address, bytes]:
    """Read the given nodes (primary-key lookups, one query per 500)."""
    found: dict[Address, bytes] = {}
    for start in range(0, len(addresses), _FETCH_BATCH):
        keys = [position(*address) for address in addresses[start : start + _FETCH_BATCH]]
        marks = ",".join("?" * len(keys))
        rows = conn.execute(
            f"SELECT level, idx, hash FROM merkle_nodes WHERE pos IN ({marks})",  # noqa: S608 - placeholders only
            keys,
        )
        found.update({(int(level), int(idx)): bytes(value) for level, idx, value in rows})
    return found


def _insert_nodes(conn: sqlite3.Connection, nodes: Sequence[tuple[int, int, bytes]]) -> None:
    conn.executemany(
        "INSERT INTO merkle_nodes(pos, level, idx, hash) VALUES (?,?,?,?)",
        [(position(level, index), level, index, value) for level, index, value in nodes],
    )


def _getter(nodes: dict[Address, bytes]) -> merkle.NodeGetter:
    def get(level: int, index: int) -> bytes:
        try:
            return nodes[(level, index)]
        except KeyError:
            raise LedgerIntegrityError(
                None, f"Merkle tree node ({level}, {index}) is missing from the store"
            ) from None

    return get


def tree_size(conn: sqlite3.Connection) -> int:
    """Number of leaves in the stored tree: one past the last leaf any node covers (the
    greatest key, read from the end of the primary key)."""
    row = conn.execute("SELECT max(pos) FROM merkle_nodes").fetchone()
    return 0 if row is None or row[0] is None else (int(row[0]) >> 6) + 1


def ledger_size(conn: sqlite3.Connection) -> int:
    """Number of entries in the ledger (one primary-key probe)."""
    row = conn.execute("SELECT seq FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
    return 0 if row is None else int(row[0]) + 1


def ledger_bodies(conn: sqlite3.Connection, start: int, end: int) -> Iterator[bytes]:
    """Entry bytes for ``seq`` in ``[start, end)``, in order; a missing row is an integrity error.

    Raises:
        LedgerIntegrityError: if a ``seq`` in the range has no row.
    """
    cursor = start
    while cursor < end:
        rows = conn.execute(
            "SELECT seq, body FROM ledger WHERE seq >= ? AND seq < ? ORDER BY seq LIMIT ?",
            (cursor, end, _SYNC_BATCH),
        ).fetchall()
        for seq, body in rows:
            if seq != cursor:
                raise LedgerIntegrityError(cursor, "ledger row is missing")
            yield bytes(body)
            cursor += 1
        if not rows:
            raise LedgerIntegrityError(cursor, "ledger row is missing")


def stored_range(conn: sqlite3.Connection, size: int) -> CompactRange:
    """The stored compact range of the first ``size`` leaves (one query).

    Raises:
        LedgerIntegrityError: if a node is missing.
    """
    addresses = merkle.perfect_nodes(0, size) if size else []
    get = _getter(_fetch(conn, addresses))
    return CompactRange(size, [get(*address) for address in addresses])


def sync_tree(conn: sqlite3.Connection, upto: int | None = None) -> int:
    """Catch the tree up with the ledger; call inside a write transaction.

    Homes created before the tree existed, or entries appended without the hook, leave the
    tree short of the ledger. This reads the missing entries (O(entries missing), once) and
    writes their nodes.

    Args:
        conn: A connection inside a write transaction.
        upto: Build the tree up to this size (default: the ledger's size).

    Returns:
        The tree size afterwards.

    Raises:
        LedgerIntegrityError: if the tree holds more leaves than the ledger has entries
            (entries were removed), or ledger rows are missing.
    """
    have = tree_size(conn)
    target = ledger_size(conn) if upto is None else upto
    if have > target:
        raise LedgerIntegrityError(
            target,
            f"the Merkle tree has {have} leaves but the ledger only {target} entries "
            "(entries were removed)",
        )
    if have == target:
        return have
    log.warning("building the Merkle tree for ledger entries %d to %d", have, target - 1)
    edge = stored_range(conn, have)
    batch: list[tuple[int, int, bytes]] = []
    for body in ledger_bodies(conn, have, target):
        batch.extend(edge.append(merkle.leaf_hash(body)))
        if len(batch) >= _SYNC_BATCH:
            _insert_nodes(conn, batch)
            batch.clear()
    _insert_nodes(conn, batch)
    return target


def append_leaf(conn: sqlite3.Connection, seq: int, body: bytes) -> None:
    """Ledger append hook: add entry ``seq`` to the tree, in the append transaction.

    Reads the probe leaf ``seq - 1`` and the left siblings the new leaf completes (one query),
    then inserts the leaf and its new parents (one statement). A tree that lags the ledger is
    caught up first (:func:`sync_tree`).

    Raises:
        LedgerIntegrityError: if the tree already holds a leaf at ``seq`` (it is ahead of the
            ledger: entries were removed), which makes the append fail.
    """
    siblings = []
    level = 0
    while seq >> level & 1:
        siblings.append((level, (seq >> level) - 1))
        level += 1
    probe = [(0, seq), (0, seq - 1)] if seq else [(0, seq)]
    nodes = _fetch(conn, list(dict.fromkeys([*probe, *siblings])))
    if (0, seq) in nodes:
        raise LedgerIntegrityError(seq, "the Merkle tree already holds this entry's leaf")
    if seq and (0, seq - 1) not in nodes:
        sync_tree(conn, upto=seq)
        nodes = _fetch(conn, siblings)
    created = merkle.append_nodes(seq, merkle.leaf_hash(body), _getter(nodes))
    _insert_nodes(conn, created)


def mismatched_node(
    conn: sqlite3.Connection, expected: Sequence[tuple[int, int, bytes]]
) -> Address | None:
    """The first of ``expected`` nodes (by level, then index) the store lacks or holds
    differently, or None. Read in key order, 500 nodes per query."""
    wanted = sorted(((level, index) for level, index, _ in expected), key=lambda a: position(*a))
    stored = _fetch(conn, wanted)
    for level, index, value in sorted(expected):
        if stored.get((level, index)) != value:
            return level, index
    return None


class TreeStore:
    """Roots and proofs from the stored tree: one indexed query for O(log n) nodes each.

    Args:
        conn: A connection to the home's database.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def size(self) -> int:
        """The number of leaves stored."""
        return tree_size(self.conn)

    def root(self, size: int) -> bytes:
        """The root of the tree of ``size`` leaves.

        Raises:
            InvalidInput: if the tree has fewer leaves.
        """
        self._check(size)
        return self._run(merkle.root_nodes(size), lambda get: merkle.root(size, get))

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` leaves.

        Raises:
            InvalidInput: if ``index`` is not below ``size`` or the tree has fewer leaves.
        """
        self._check(size)
        if not 0 <= index < size:
            raise InvalidInput(f"entry {index} is not in a tree of size {size}")
        return self._run(
            merkle.inclusion_proof_nodes(index, size),
            lambda get: merkle.inclusion_proof(index, size, get),
        )

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """The RFC 9162 consistency proof from ``old_size`` to ``new_size``.

        Raises:
            InvalidInput: if the sizes are out of order or beyond the tree.
        """
        self._check(new_size)
        if not 0 <= old_size <= new_size:
            raise InvalidInput("the old size must be between 0 and the new size")
        return self._run(
            merkle.consistency_proof_nodes(old_size, new_size),
            lambda get: merkle.consistency_proof(old_size, new_size, get),
        )

    def mismatched(self, expected: Sequence[tuple[int, int, bytes]]) -> Address | None:
        """The first of ``expected`` nodes the store lacks or holds differently, or None."""
        return mismatched_node(self.conn, expected)

    def _check(self, size: int) -> None:
        have = self.size()
        if not 0 <= size <= have:
            raise InvalidInput(f"the tree has {have} entries; size {size} is out of range")

    def _run(self, addresses: list[Address], compute: Callable[[merkle.NodeGetter], _T]) -> _T:
        return compute(_getter(_fetch(self.conn, addresses)))


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint the log signed, as stored."""

    size: int
    root: bytes
    note: str
    created_at: str


def log_signer(origin: str, log_key: Ed25519Signer) -> KeySigner:
    """The log's signed-note signer: key name = origin, key = the home's log key."""
    from charter.evidence.c2sp import KeySigner

    return KeySigner(origin, log_key)


class CheckpointLog:
    """The log's signed checkpoints for one ledger.

    Args:
        conn: A connection to the home's database.
        origin: The ledger's origin (checkpoint line 1 and the key name).
        log_key: The home's log key.
        clock: For ``created_at``.
    """

    def __init__(
        self, conn: sqlite3.Connection, origin: str, log_key: Ed25519Signer, clock: Clock
    ) -> None:
        self.conn = conn
        self.origin = origin
        self.signer = log_signer(origin, log_key)
        self.verifier = self.signer.verifier()
        self.clock = clock

    def latest(self) -> SignedCheckpoint | None:
        """The largest checkpoint signed so far."""
        return self._one("ORDER BY size DESC LIMIT 1", ())

    def at(self, size: int) -> SignedCheckpoint | None:
        """The checkpoint of exactly ``size`` entries, if one was signed."""
        return self._one("WHERE size = ?", (size,))

    def upto(self, size: int | None = None) -> list[SignedCheckpoint]:
        """Every checkpoint of at most ``size`` entries (default: all), smallest first."""
        rows = self.conn.execute(
            "SELECT size, root, note, created_at FROM checkpoints WHERE size <= ? ORDER BY size",
            (min(size, 2**63 - 1) if size is not None else 2**63 - 1,),
        ).fetchall()
        return [self._cosigned(int(s), bytes(r), str(n), str(c)) for s, r, n, c in rows]

    def sign(self) -> SignedCheckpoint:
        """Sign a checkpoint of the whole ledger, or return the latest if it already covers it.

        Raises:
            LedgerIntegrityError: if the tree or the ledger is inconsistent with the latest
                signed checkpoint; nothing is signed.
        """
        with transaction(self.conn):
            size = sync_tree(self.conn)
            latest = self.latest()
            if latest is not None:
                self._check_own(latest)
                if latest.size == size:
                    return latest
                if latest.size > size:
                    raise LedgerIntegrityError(
                        size,
                        f"refusing to sign: the ledger has {size} entries but the log already "
                        f"signed a checkpoint of {latest.size} (entries were removed)",
                    )
            root = self._checked_root(latest, size)
            from charter.evidence.c2sp import Checkpoint, sign_note

            note = sign_note(Checkpoint(self.origin, size, root).to_text(), [self.signer])
            signed = SignedCheckpoint(size, root, note, rfc3339(self.clock.now()))
            self.conn.execute(
                "INSERT INTO checkpoints(size, root, note, created_at) VALUES (?,?,?,?)",
                (signed.size, signed.root, signed.note, signed.created_at),
            )
        log.info("signed checkpoint of %d entries", size)
        return signed

    def _checked_root(self, latest: SignedCheckpoint | None, size: int) -> bytes:
        """The new root, recomputed from the ledger and proven consistent with ``latest``."""
        old_size, old_root = (
            (0, merkle.EMPTY_ROOT) if latest is None else (latest.size, latest.root)
        )
        edge = stored_range(self.conn, old_size)
        if edge.root() != old_root:
            self._refuse(f"the stored tree no longer gives the root of checkpoint {old_size}")
        created: list[tuple[int, int, bytes]] = []
        for body in ledger_bodies(self.conn, old_size, size):
            created.extend(edge.append(merkle.leaf_hash(body)))
            if len(created) >= _SYNC_BATCH:
                self._compare(created)
                created.clear()
        self._compare(created)
        root = edge.root()
        store = TreeStore(self.conn)
        if store.root(size) != root:
            self._refuse("the stored Merkle tree does not match the ledger entries")
        try:
            merkle.verify_consistency(
                old_size, size, old_root, root, store.consistency_proof(old_size, size)
            )
        except merkle.ProofError as exc:
            self._refuse(f"no valid consistency proof from checkpoint {old_size}: {exc.reason}")
        return root

    def _compare(self, created: list[tuple[int, int, bytes]]) -> None:
        bad = mismatched_node(self.conn, created)
        if bad is not None:
            self._refuse(
                f"the stored Merkle tree does not match the ledger entries (node {bad[0]}/{bad[1]})"
            )

    def _check_own(self, stored: SignedCheckpoint) -> None:
        from charter.evidence.c2sp import NoteError, open_checkpoint

        try:
            checkpoint, _ = open_checkpoint(stored.note, [self.verifier])
        except NoteError as exc:
            self._refuse(f"stored checkpoint {stored.size} is not signed by this log: {exc}")
        if (checkpoint.origin, checkpoint.size, checkpoint.root_hash) != (
            self.origin,
            stored.size,
            stored.root,
        ):
            self._refuse(f"stored checkpoint {stored.size} does not match its note")

    @staticmethod
    def _refuse(reason: str) -> NoReturn:
        raise LedgerIntegrityError(None, f"refusing to sign a checkpoint: {reason}")

    def _one(self, clause: str, params: tuple[int, ...]) -> SignedCheckpoint | None:
        row = self.conn.execute(
            f"SELECT size, root, note, created_at FROM checkpoints {clause}",  # noqa: S608 - fixed clauses
            params,
        ).fetchone()
        if row is None:
            return None
        return self._cosigned(int(row[0]), bytes(row[1]), str(row[2]), str(row[3]))

    def _cosigned(self, size: int, root: bytes, note: str, created_at: str) -> SignedCheckpoint:
        """The stored checkpoint with its witnesses' cosignature lines appended."""
        from charter.storage.witnesses import WitnessRepo

        return SignedCheckpoint(
            size, root, note + "".join(WitnessRepo(self.conn).lines(size)), created_at
        )
