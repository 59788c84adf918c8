"""Signed checkpoints and Merkle proofs of the ledger, for agent tools and the owner's CLI.

Every proof handed out is verified here first, against the log's own verifier key, so a
damaged tree fails closed instead of producing a proof that an auditor would reject.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
from pydantic import BaseModel, Field

from charter.errors import InvalidInput, LedgerIntegrityError, NotFound
from charter.evidence import auditor, merkle
from charter.evidence.c2sp import NoteError, TlogProof, Verifier, verify_tlog_proof
from charter.home import Home
from charter.storage import tlog
from charter.storage.ledger_rows import column_error
from charter.storage.ports import Tx

log = logging.getLogger(__name__)


class CheckpointOut(BaseModel):
    """A checkpoint signed by the log key (C2SP tlog-checkpoint in a C2SP signed note)."""

    origin: str = Field(description="The ledger's unique name: first line of the note.")
    size: int = Field(description="Number of ledger entries the checkpoint commits to.")
    root: str = Field(description="Base64 RFC 9162 Merkle root of those entries.")
    note: str = Field(description="The signed note, verbatim: keep it to audit the log later.")
    log_vkey: str = Field(description="The log's verifier key (C2SP vkey) that signed the note.")


class InclusionOut(BaseModel):
    """An RFC 9162 inclusion proof of one entry under a signed checkpoint."""

    seq: int = Field(description="The entry's position: its leaf index.")
    tree_size: int = Field(description="Size of the checkpoint the proof leads to.")
    entry: str = Field(description="The entry's canonical bytes (the leaf data), as text.")
    entry_hash: str = Field(description="Hex SHA-256 of the entry bytes (the chain hash).")
    leaf_hash: str = Field(description="Base64 SHA-256(0x00 || entry bytes).")
    proof: list[str] = Field(description="Base64 sibling hashes, leaf to root.")
    checkpoint: str = Field(description="The signed checkpoint note the proof leads to.")
    tlog_proof: str = Field(description="The same proof as a c2sp.org/tlog-proof@v1 file.")


class ConsistencyOut(BaseModel):
    """An RFC 9162 consistency proof between two tree sizes."""

    old_size: int
    new_size: int
    old_root: str = Field(description="Base64 root of the first old_size entries.")
    new_root: str = Field(description="Base64 root of the first new_size entries.")
    proof: list[str] = Field(description="Base64 proof hashes (RFC 9162 §2.1.4).")


def b64(data: bytes) -> str:
    """Standard base64, as C2SP notes and proofs write hashes."""
    return base64.b64encode(data).decode("ascii")


def log_verifier(home: Home) -> Verifier:
    """The verifier of the home's checkpoints: key name = origin, key = the log key."""
    return auditor.log_verifier(home.identity)


def checkpoint_out(home: Home, signed: tlog.SignedCheckpoint) -> CheckpointOut:
    """Project a stored checkpoint for output."""
    return CheckpointOut(
        origin=home.origin,
        size=signed.size,
        root=b64(signed.root),
        note=signed.note,
        log_vkey=log_verifier(home).vkey,
    )


async def checkpoint(home: Home) -> CheckpointOut:
    """A checkpoint of the whole ledger: the latest, or a new one if the ledger grew since.

    Raises:
        LedgerIntegrityError: if the log refuses to sign (the tree or ledger was tampered).
    """
    return await home.write(lambda tx: sign_checkpoint(home, tx))


def sign_checkpoint(home: Home, tx: Tx) -> CheckpointOut:
    """:func:`checkpoint` inside a unit of work."""
    signed = tx.checkpoints.sign()
    return checkpoint_out(home, tx.checkpoints.at(signed.size) or signed)  # with cosignatures


async def prove(
    home: Home, seq: int, tree_size: int | None = None, *, actor: str | None = None
) -> InclusionOut:
    """Prove that entry ``seq`` is in a signed checkpoint.

    Args:
        home: The home.
        seq: The entry.
        tree_size: The size of an existing checkpoint to prove against; default the latest,
            or a new checkpoint if none covers ``seq`` yet.
        actor: Only entries whose actor is this id are visible (agents prove their own).

    Raises:
        NotFound: no such entry (visible to ``actor``), or no checkpoint of ``tree_size``.
        InvalidInput: ``tree_size`` does not cover ``seq``.
        LedgerIntegrityError: the stored tree gives a proof that does not verify.
    """
    return await home.write(lambda tx: _prove(home, tx, seq, tree_size, actor))


def _prove(home: Home, tx: Tx, seq: int, tree_size: int | None, actor: str | None) -> InclusionOut:
    body = tx.queries.get_body(seq)
    # Whose entry it is comes from the signed bytes, never from the (editable) actor column.
    if body is None or (actor is not None and _actor_of(body) != actor):
        raise NotFound(f"no entry {seq}" + (" of yours" if actor is not None else ""))
    checkpoints = tx.checkpoints
    if tree_size is None:
        signed = checkpoints.latest()
        if signed is None or signed.size <= seq:
            signed = checkpoints.sign()
    else:
        if tree_size <= seq:
            raise InvalidInput(f"a tree of size {tree_size} does not contain entry {seq}")
        found = checkpoints.at(tree_size)
        if found is None:
            raise NotFound(f"no checkpoint of size {tree_size}; omit tree_size for the latest")
        signed = found
    path = tx.tree.inclusion_proof(seq, signed.size)
    proof = TlogProof(index=seq, proof=tuple(path), checkpoint=signed.note)
    try:
        verify_tlog_proof(proof, body, [log_verifier(home)])
    except (NoteError, merkle.ProofError) as exc:
        raise LedgerIntegrityError(seq, f"the stored tree gives an invalid proof: {exc}") from exc
    return InclusionOut(
        seq=seq,
        tree_size=signed.size,
        entry=body.decode("utf-8"),
        entry_hash=hashlib.sha256(body).hexdigest(),
        leaf_hash=b64(merkle.leaf_hash(body)),
        proof=[b64(h) for h in path],
        checkpoint=signed.note,
        tlog_proof=proof.to_text(),
    )


def _actor_of(body: bytes) -> object:
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return fields.get("actor") if isinstance(fields, dict) else None


async def consistency(home: Home, old_size: int, new_size: int) -> ConsistencyOut:
    """Prove that the first ``old_size`` entries are a prefix of the first ``new_size``.

    Raises:
        InvalidInput: sizes out of order or beyond the ledger.
        LedgerIntegrityError: the stored tree gives a proof that does not verify.
    """
    if not 0 <= old_size <= new_size:
        raise InvalidInput("OLD_SIZE must be between 0 and NEW_SIZE")

    def work(tx: Tx) -> tuple[list[bytes], bytes, bytes]:
        tx.sync_tree()
        store = tx.tree
        proof = store.consistency_proof(old_size, new_size)
        return proof, store.root(old_size), store.root(new_size)

    proof, old_root, new_root = await home.write(work)
    try:
        merkle.verify_consistency(old_size, new_size, old_root, new_root, proof)
    except merkle.ProofError as exc:
        raise LedgerIntegrityError(None, f"the stored tree gives an invalid proof: {exc}") from exc
    return ConsistencyOut(
        old_size=old_size,
        new_size=new_size,
        old_root=b64(old_root),
        new_root=b64(new_root),
        proof=[b64(h) for h in proof],
    )


def periodic_checkpoints(
    every: int, on_signed: Callable[[Tx], None] | None = None
) -> Callable[[Tx], None]:
    """An after-commit hook (a unit of work the ledger writer runs after its commits) that
    signs a checkpoint each time the ledger passes a multiple of ``every`` entries, then calls
    ``on_signed`` (e.g. to have the witnesses asked, off this thread)."""
    last: list[int] = []  # size of the latest checkpoint, read once

    def hook(tx: Tx) -> None:
        size = tx.queries.size()
        if not last:
            latest = tx.checkpoints.latest()
            last.append(0 if latest is None else latest.size)
        if size // every > last[0] // every:
            try:
                last[0] = tx.checkpoints.sign().size
            except LedgerIntegrityError as exc:
                last[0] = size  # retry at the next multiple, not after every batch
                log.error("periodic checkpoint refused: %s", exc.reason)
                return
            if on_signed is not None:
                on_signed(tx)

    return hook


def final_checkpoint(home: Home) -> Callable[[], Awaitable[None]]:
    """A shutdown hook that signs a checkpoint of everything committed so far."""

    async def hook() -> None:
        try:
            await home.write(lambda tx: tx.checkpoints.sign())
        except Exception:  # a server must still exit; the next checkpoint will cover it
            log.exception("could not sign the final checkpoint")

    return hook


def export_checkpoints(home: Home, tx: Tx, folder: Path, size: int) -> None:
    """Write an export's ``checkpoints/<size>.note`` (every checkpoint of at most ``size``
    entries, verbatim) and ``log.vkey`` (the log's verifier key, one line)."""
    directory = folder / auditor.CHECKPOINT_DIR
    directory.mkdir(exist_ok=True)
    for signed in tx.checkpoints.upto(size):
        (directory / f"{signed.size}.note").write_bytes(signed.note.encode("utf-8"))
    (folder / "log.vkey").write_text(log_verifier(home).vkey + "\n", encoding="utf-8")


async def audit_home(
    home: Home,
    trust: auditor.Trust | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    workers: int | None = 1,
    private: bool = False,
) -> auditor.AuditReport:
    """Verify the home's ledger, its stored tree and checkpoints, and the auditor's trust.

    Reads one consistent snapshot: the entries up to the head, every stored checkpoint (one
    beyond the head means entries were removed) and the stored tree's root. The whole audit
    runs as one unit of work on the store's thread (``progress`` is called there), or with
    ``private`` on a worker thread and connection of its own (a server: its other calls go
    on meanwhile).

    Raises:
        LedgerIntegrityError: the first bad entry, or a tree, checkpoint, truncation or fork
            failure (see :func:`charter.evidence.auditor.audit`).
    """

    def work(tx: Tx) -> auditor.AuditReport:
        return _audit(home, tx, trust, progress, workers)

    if not private:
        return await home.read(work)
    worker = home.store.worker()
    try:
        return await asyncio.to_thread(worker.read, work)
    finally:
        worker.close()


def _audit(
    home: Home,
    tx: Tx,
    trust: auditor.Trust | None,
    progress: Callable[[int, int], None] | None,
    workers: int | None,
) -> auditor.AuditReport:
    size = tx.queries.size()
    notes = {c.size: c.note for c in tx.checkpoints.upto()}
    stored = tx.tree.size()
    if stored > size:
        raise LedgerIntegrityError(
            size, f"the Merkle tree has {stored} leaves but the ledger only {size} entries"
        )
    tree = auditor.Target(stored, tx.tree.root(stored), "the stored Merkle tree")

    def check_nodes(nodes: list[auditor.Node]) -> str | None:
        built = [n for n in nodes if (n[1] + 1) << n[0] <= stored]
        bad = tx.tree.mismatched(built)
        if bad is None:
            return None
        return f"the stored Merkle tree does not match the entries (node {bad[0]}/{bad[1]})"

    # Each row's other columns are checked against its entry as it is read; the first
    # disagreement is reported unless the verifier failed at an earlier entry (or at the
    # same one: its reason then says more).
    edited: list[tuple[int, str]] = []
    try:
        report = auditor.audit(
            home.identity,
            lambda start, _offset: tx.ledger.iter_bodies(start, size, mismatches=edited),
            size,
            notes,
            trust or auditor.Trust(),
            extra=(tree,),
            progress=progress,
            check_nodes=check_nodes,
            workers=workers,
        )
    except LedgerIntegrityError as exc:
        if edited and (exc.seq is None or edited[0][0] < exc.seq):
            raise column_error(*edited[0]) from exc
        raise
    if edited:
        raise column_error(*edited[0])
    return report
