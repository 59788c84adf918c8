"""``c2sp.org/tlog-proof``: offline inclusion proofs, checked against a checkpoint and a
witness policy."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from charter.evidence import merkle
from charter.evidence.c2sp.checkpoint import Checkpoint
from charter.evidence.c2sp.note import (
    MAX_PROOF_HASHES,
    TLOG_PROOF_HEADER,
    NoteError,
    NoteVerifier,
    _as_text,
    _b64decode,
    _b64encode,
    _is_hash,
    _is_u64,
    _parse_decimal,
    open_note,
    split_note,
)
from charter.evidence.c2sp.policy import Policy, verify_policy


@dataclass(frozen=True)
class TlogProof:
    """A ``c2sp.org/tlog-proof@v1`` offline inclusion proof.

    Attributes:
        index: Leaf index of the entry.
        proof: Inclusion proof hashes, leaf to root.
        checkpoint: The signed checkpoint note, verbatim, cosignatures included.
        extra: Optional application data (the ``extra`` line); ``None`` when absent.
    """

    index: int
    proof: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if not _is_u64(self.index):
            raise NoteError("proof index out of range")
        if len(self.proof) > MAX_PROOF_HASHES:
            raise NoteError("too many proof hashes")
        if not all(_is_hash(h) for h in self.proof):
            raise NoteError("proof hashes must be 32 bytes")
        if self.extra is not None and not self.extra:
            raise NoteError("extra data must be non-empty when present")
        text, _ = split_note(self.checkpoint)
        Checkpoint.parse(text)

    def to_text(self) -> str:
        """Format the proof file."""
        lines = [TLOG_PROOF_HEADER]
        if self.extra is not None:
            lines.append(f"extra {_b64encode(self.extra)}")
        lines.append(f"index {self.index}")
        lines.extend(_b64encode(h) for h in self.proof)
        return "".join(line + "\n" for line in lines) + "\n" + self.checkpoint

    @classmethod
    def parse(cls, text: str | bytes) -> TlogProof:
        """Parse a proof file; the checkpoint is checked for shape, not signatures.

        Raises:
            NoteError: If the file is malformed.
        """
        whole = _as_text(text, "tlog-proof")
        head, blank, checkpoint = whole.partition("\n\n")
        if not blank:
            raise NoteError("tlog-proof has no blank line before the checkpoint")
        lines = head.split("\n")
        if lines[0] != TLOG_PROOF_HEADER:
            raise NoteError("tlog-proof header line missing")
        position = 1
        extra = None
        if position < len(lines) and lines[position].startswith("extra "):
            extra = _b64decode(lines[position].removeprefix("extra "), "extra data")
            position += 1
        if position >= len(lines) or not lines[position].startswith("index "):
            raise NoteError("tlog-proof index line missing")
        index = _parse_decimal(lines[position].removeprefix("index "), "proof index")
        hashes = lines[position + 1 :]
        if len(hashes) > MAX_PROOF_HASHES:
            raise NoteError("too many proof hashes")
        proof = tuple(_b64decode(h, "proof hash") for h in hashes)
        return cls(index, proof, checkpoint, extra)


def verify_tlog_proof(
    proof: str | bytes | TlogProof,
    leaf_data: bytes,
    verifiers: Iterable[NoteVerifier] = (),
    *,
    policy: Policy | None = None,
) -> Checkpoint:
    """Verify an offline proof that ``leaf_data`` is in a signed checkpoint.

    Pass the log's verifier (and optionally witnesses) to require a valid signature by one of
    them, a ``policy`` to require its log signature and witness quorum, or both.

    Args:
        proof: The proof file, or a parsed :class:`TlogProof`.
        leaf_data: The entry bytes; they are hashed with :func:`charter.evidence.merkle.leaf_hash`.
        verifiers: Known keys for :func:`open_note`.
        policy: A witness policy for :func:`verify_policy`.

    Returns:
        The verified checkpoint.

    Raises:
        NoteError: If the file is malformed or the checkpoint fails signature checks.
        charter.evidence.merkle.ProofError: If the inclusion proof fails.
    """
    parsed = proof if isinstance(proof, TlogProof) else TlogProof.parse(proof)
    verifiers = list(verifiers)
    if not verifiers and policy is None:
        raise NoteError("no verifiers and no policy: nothing vouches for the checkpoint")
    if verifiers:
        open_note(parsed.checkpoint, verifiers)
    if policy is not None:
        verify_policy(parsed.checkpoint, policy)
    text, _ = split_note(parsed.checkpoint)
    checkpoint = Checkpoint.parse(text)
    merkle.verify_inclusion(
        merkle.leaf_hash(leaf_data),
        parsed.index,
        checkpoint.size,
        parsed.proof,
        checkpoint.root_hash,
    )
    return checkpoint
