"""``c2sp.org/tlog-witness``: the ``add-checkpoint`` request and response bodies, and a
cosignature signer over any key handle. Pure functions, no I/O.

A request body is ``old <size>\\n``, at most 63 base64 consistency-proof lines, an empty line,
then the signed checkpoint. A 409 answer's body is the witness's size and ``\\n``
(``text/x.tlog.size``); a 200 answer's body is one or more note signature lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from charter.evidence.c2sp.checkpoint import Checkpoint
from charter.evidence.c2sp.cosignature import CosignatureVerifier, cosignature_message
from charter.evidence.c2sp.note import (
    _U64_MAX,
    ALG_COSIGNATURE_V1,
    MAX_PROOF_HASHES,
    NoteError,
    Signature,
    _as_text,
    _b64decode,
    _b64encode,
    _HandleSigner,
    _parse_decimal,
    _verify_key,
    open_note,
    split_note,
)
from charter.evidence.jwk import Ed25519Signer

#: The ``Content-Type`` of a 409 answer.
SIZE_CONTENT_TYPE = "text/x.tlog.size"
#: Largest request body a witness reads: 63 proof lines and a checkpoint with many signatures.
MAX_REQUEST_BYTES = 64 * 1024


@dataclass(frozen=True)
class AddCheckpoint:
    """An ``add-checkpoint`` request.

    Attributes:
        old_size: The size of the latest checkpoint the witness cosigned (0 if none).
        proof: The RFC 9162 consistency proof from ``old_size`` to the checkpoint's size.
        note: The signed checkpoint, verbatim.
    """

    old_size: int
    proof: tuple[bytes, ...]
    note: str

    def to_body(self) -> bytes:
        """The request body."""
        lines = [f"old {self.old_size}", *(_b64encode(h) for h in self.proof)]
        return ("".join(line + "\n" for line in lines) + "\n" + self.note).encode("utf-8")

    @classmethod
    def parse(cls, body: bytes) -> AddCheckpoint:
        """Parse a request body (the checkpoint's signatures are not verified here).

        Raises:
            NoteError: If the body is malformed.
        """
        if len(body) > MAX_REQUEST_BYTES:
            raise NoteError("request body is too large")
        text = _as_text(body, "request body")
        head, sep, note = text.partition("\n\n")
        if not sep:
            raise NoteError("request has no empty line before the checkpoint")
        lines = head.split("\n")
        if not lines[0].startswith("old "):
            raise NoteError("request must start with an old size line")
        old_size = _parse_decimal(lines[0][4:], "old size")
        if len(lines) - 1 > MAX_PROOF_HASHES:
            raise NoteError("too many consistency proof lines")
        proof = []
        for line in lines[1:]:
            value = _b64decode(line, "consistency proof line")
            if len(value) != 32:
                raise NoteError("consistency proof line is not a 32-byte hash")
            proof.append(value)
        split_note(note)  # well-formed signed note
        return cls(old_size, tuple(proof), note)


def size_body(size: int) -> bytes:
    """A 409 answer's body."""
    return f"{size}\n".encode()


def parse_size_body(body: bytes) -> int:
    """Parse a 409 answer's body: a decimal size and a newline.

    Raises:
        NoteError: If it is not one.
    """
    text = _as_text(body, "size body")
    if not text.endswith("\n"):
        raise NoteError("size body must end with a newline")
    return _parse_decimal(text[:-1], "witness size")


def cosignatures_from(response: bytes | str, note: str, witness: CosignatureVerifier) -> list[str]:
    """The lines of a 200 answer that are valid cosignatures by ``witness`` over ``note``.

    The answer is appended to the checkpoint and opened with the witness key alone, as the
    spec suggests: lines by unknown keys are ignored, a bad line by the witness rejects all.

    Raises:
        NoteError: If the answer is malformed or has no valid cosignature by the witness.
    """
    answer = response.decode("utf-8", "replace") if isinstance(response, bytes) else response
    if not answer.endswith("\n") or not answer.startswith("— "):
        raise NoteError("witness answer is not note signature lines")
    _, verified = open_note(note + answer, [witness])
    return [s.line() for s in verified]


class KeyCosigner(_HandleSigner):
    """A tlog-cosignature/v1 (type 0x04) signer over any
    :class:`~charter.evidence.jwk.Ed25519Signer` (e.g. a key handle of Charter's signer
    seam): the private key stays with its keeper, and the key must sign nothing else.

    Args:
        name: Key name (the witness name): non-empty, no whitespace, no ``+``.
        key: The signing key.
        clock: Returns the current time in seconds since the UNIX epoch.
    """

    _ALG = ALG_COSIGNATURE_V1

    def __init__(
        self, name: str, key: Ed25519Signer, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(name, key)
        self._clock = clock

    def verifier(self) -> CosignatureVerifier:
        """Return the matching verifier (its ``vkey`` is what logs and auditors configure)."""
        return CosignatureVerifier(self._name, _verify_key(self._key.public_key))

    def sign(self, text: bytes) -> bytes:
        """Return ``u64 timestamp || Ed25519 signature`` over the cosignature message.

        Raises:
            NoteError: If the text is not a checkpoint or the clock is out of range.
        """
        Checkpoint.parse(text)
        timestamp = int(self._clock())
        if not 0 <= timestamp <= _U64_MAX:
            raise NoteError("clock out of range")
        return timestamp.to_bytes(8, "big") + self._key.sign(cosignature_message(timestamp, text))

    def line(self, text: str) -> str:
        """The cosignature line for a checkpoint text."""
        return Signature(self._name, self._key_id, self.sign(text.encode("utf-8"))).line()
