"""``c2sp.org/tlog-checkpoint`` bodies and ``c2sp.org/tlog-proof`` offline inclusion proofs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from charter.evidence.c2sp.note import (
    NoteError,
    NoteVerifier,
    Signature,
    _as_text,
    _b64decode,
    _b64encode,
    _is_hash,
    _is_line,
    _is_u64,
    _parse_decimal,
    open_note,
)


@dataclass(frozen=True)
class Checkpoint:
    """A ``c2sp.org/tlog-checkpoint`` body.

    Attributes:
        origin: The log's unique identity, e.g. ``audit.example/ledger``.
        size: Tree size.
        root_hash: 32-byte RFC 6962 root hash.
        extensions: Optional extra lines (not recommended by the spec).
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for line, what in [(self.origin, "origin"), *((e, "extension") for e in self.extensions)]:
            if not _is_line(line):
                raise NoteError(f"checkpoint {what} must be one non-empty line")
            _as_text(line, f"checkpoint {what}")
        if not _is_u64(self.size):
            raise NoteError("checkpoint size out of range")
        if not _is_hash(self.root_hash):
            raise NoteError("checkpoint root hash must be 32 bytes")

    def to_text(self) -> str:
        """Return the note text: origin, size, base64 root, extensions, each ending in ``\\n``."""
        lines = [self.origin, str(self.size), _b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str | bytes) -> Checkpoint:
        """Parse a checkpoint note text (without signatures).

        Raises:
            NoteError: If the text is not a well-formed checkpoint.
        """
        body = _as_text(text, "checkpoint")
        if not body.endswith("\n"):
            raise NoteError("checkpoint must end with a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError("checkpoint needs origin, size and root hash lines")
        size = _parse_decimal(lines[1], "checkpoint size")
        return cls(lines[0], size, _b64decode(lines[2], "checkpoint root hash"), tuple(lines[3:]))


def open_checkpoint(
    note: str | bytes, verifiers: Iterable[NoteVerifier]
) -> tuple[Checkpoint, list[Signature]]:
    """Verify a signed checkpoint with :func:`open_note` and parse its text.

    Raises:
        NoteError: As :func:`open_note` and :meth:`Checkpoint.parse`.
    """
    text, signatures = open_note(note, verifiers)
    return Checkpoint.parse(text), signatures
