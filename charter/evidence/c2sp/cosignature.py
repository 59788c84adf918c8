"""``c2sp.org/tlog-cosignature``: timestamped Ed25519 cosignatures (type 0x04), and vkeys of
either type."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from nacl.signing import SigningKey

from charter.evidence.c2sp.checkpoint import Checkpoint
from charter.evidence.c2sp.note import (
    _COSIGNATURE_HEADER,
    _U64_MAX,
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    NoteError,
    Signature,
    Verifier,
    _ed25519_verify,
    _KeySigner,
    _KeyVerifier,
    _parse_vkey,
)


def cosignature_message(timestamp: int, text: bytes) -> bytes:
    """Build the message a tlog-cosignature/v1 signs.

    Args:
        timestamp: Seconds since the UNIX epoch.
        text: The checkpoint note text.

    Returns:
        ``b"cosignature/v1\\ntime <timestamp>\\n" + text``.
    """
    return _COSIGNATURE_HEADER + str(timestamp).encode() + b"\n" + text


def cosignature_timestamp(signature: Signature) -> int:
    """Return the timestamp carried in a tlog-cosignature/v1 payload.

    Raises:
        NoteError: If the payload is not 8 + 64 bytes.
    """
    if len(signature.payload) != 72:
        raise NoteError("cosignature payload must be 72 bytes")
    return int.from_bytes(signature.payload[:8], "big")


@dataclass(frozen=True)
class CosignatureVerifier(_KeyVerifier):
    """A tlog-cosignature/v1 (type 0x04, timestamped Ed25519) verifier.

    Attributes:
        name: Key name (the witness or cosigner name).
        verify_key: The Ed25519 public key.
        key_id: Derived 4-byte key ID.
    """

    _ALG = ALG_COSIGNATURE_V1
    _KIND = "a cosignature/v1 key"

    def verify(self, text: bytes, payload: bytes) -> bool:
        """Check a ``timestamp || signature`` payload over the cosignature message."""
        if len(payload) != 72:
            return False
        timestamp = int.from_bytes(payload[:8], "big")
        return _ed25519_verify(self.verify_key, cosignature_message(timestamp, text), payload[8:])


class CosignatureSigner(_KeySigner):
    """A tlog-cosignature/v1 (type 0x04) signer: it only cosigns checkpoints.

    Args:
        name: Key name: non-empty, no whitespace, no ``+``.
        signing_key: The Ed25519 private key; use it for nothing but cosignatures.
        clock: Returns the current time in seconds since the UNIX epoch.
    """

    _ALG = ALG_COSIGNATURE_V1

    def __init__(
        self, name: str, signing_key: SigningKey, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(name, signing_key)
        self._clock = clock

    def verifier(self) -> CosignatureVerifier:
        """Return the matching verifier."""
        return CosignatureVerifier(self._name, self._signing_key.verify_key)

    def sign(self, text: bytes) -> bytes:
        """Return ``u64 timestamp || Ed25519 signature`` over the cosignature message.

        Raises:
            NoteError: If the text is not a checkpoint.
        """
        Checkpoint.parse(text)
        timestamp = int(self._clock())
        if not 0 <= timestamp <= _U64_MAX:
            raise NoteError("clock out of range")
        signature = self._signing_key.sign(cosignature_message(timestamp, text)).signature
        return timestamp.to_bytes(8, "big") + signature


def parse_vkey(vkey: str) -> Verifier | CosignatureVerifier:
    """Parse a vkey of any supported type (0x01 Ed25519, 0x04 cosignature/v1).

    Raises:
        NoteError: If the vkey is malformed or of an unsupported type.
    """
    _, alg, _ = _parse_vkey(vkey)
    if alg == ALG_ED25519:
        return Verifier.from_vkey(vkey)
    if alg == ALG_COSIGNATURE_V1:
        return CosignatureVerifier.from_vkey(vkey)
    raise NoteError(f"unsupported vkey type {alg:#04x}")
