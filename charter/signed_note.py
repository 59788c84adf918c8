"""C2SP signed notes, checkpoints, cosignatures, offline proofs and witness policies.

Pure functions over strings and keys, no I/O. Implements:

- ``c2sp.org/signed-note``: Ed25519 (type 0x01) note signatures, vkeys, the Go private-key
  form, :func:`sign_note` and :func:`open_note`;
- ``c2sp.org/tlog-checkpoint``: :class:`Checkpoint`;
- ``c2sp.org/tlog-cosignature``: timestamped Ed25519 cosignatures (type 0x04);
- ``c2sp.org/tlog-proof``: :class:`TlogProof` and :func:`verify_tlog_proof`;
- ``c2sp.org/tlog-policy``: :func:`parse_policy` and :func:`verify_policy`.

Every format or signature failure raises :class:`NoteError`; a bad Merkle proof raises
:class:`charter.merkle.ProofError`. Both are ``ValueError``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, Self

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from charter import merkle

__all__ = [
    "ALG_COSIGNATURE_V1",
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "TLOG_PROOF_HEADER",
    "Checkpoint",
    "CosignatureSigner",
    "CosignatureVerifier",
    "Group",
    "NoteError",
    "NoteSigner",
    "NoteVerifier",
    "Policy",
    "Signature",
    "Signer",
    "TlogProof",
    "Verifier",
    "append_signatures",
    "cosignature_message",
    "cosignature_timestamp",
    "key_id",
    "open_checkpoint",
    "open_note",
    "parse_policy",
    "parse_vkey",
    "sign_note",
    "split_note",
    "verify_policy",
    "verify_tlog_proof",
]

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
#: Notes with more signature lines are rejected outright (Go's limit; the spec asks for >= 16).
MAX_SIGNATURES = 100
TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
#: A 64-bit tree has at most 63 hashes in an inclusion proof.
MAX_PROOF_HASHES = 63

_SIG_PREFIX = "— "
_COSIGNATURE_HEADER = b"cosignature/v1\ntime "
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_U64_MAX = 2**64 - 1


class NoteError(ValueError):
    """A note, key, checkpoint, proof file or policy is malformed or fails verification.

    Attributes:
        reason: A short, human-readable cause.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def key_id(name: str, alg: int, public_key: bytes) -> bytes:
    """Compute a signed-note key ID: ``SHA-256(name || 0x0A || alg || public_key)[:4]``.

    Args:
        name: The key name.
        alg: The signature type byte (``0x01`` Ed25519, ``0x04`` cosignature).
        public_key: The raw public key.

    Returns:
        The 4-byte key ID.
    """
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()[:4]


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name:
        raise NoteError("key name is empty")
    if "+" in name or any(ch.isspace() for ch in name) or _CONTROL.search(name):
        raise NoteError(f"invalid key name {name!r}")
    try:
        name.encode()
    except UnicodeEncodeError as exc:
        raise NoteError("key name is not valid UTF-8") from exc


def _is_u64(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _U64_MAX


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == merkle.HASH_SIZE


def _is_line(value: object) -> bool:
    return isinstance(value, str) and value != "" and "\n" not in value


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str, what: str) -> bytes:
    # Only the canonical encoding is accepted, so every value has exactly one spelling.
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise NoteError(f"{what} is not base64") from exc
    if _b64encode(data) != text:
        raise NoteError(f"{what} is not canonical base64")
    return data


def _parse_decimal(text: str, what: str) -> int:
    if not _DECIMAL.fullmatch(text) or len(text) > 20 or int(text) > _U64_MAX:
        raise NoteError(f"{what} is not a decimal 64-bit integer without leading zeros")
    return int(text)


def _ed25519_verify(public_key: VerifyKey, message: bytes, signature: bytes) -> bool:
    if len(signature) != 64:
        return False
    try:
        public_key.verify(message, signature)
    except BadSignatureError:
        return False
    return True


def _parse_vkey(vkey: str) -> tuple[str, int, bytes]:
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise NoteError("vkey must be name+keyid+key")
    name, hex_id, encoded = parts
    _check_name(name)
    if not _HEX8.fullmatch(hex_id):
        raise NoteError("vkey key ID must be 8 hex digits")
    raw = _b64decode(encoded, "vkey key")
    if len(raw) < 2:
        raise NoteError("vkey key is empty")
    alg, public_key = raw[0], raw[1:]
    if key_id(name, alg, public_key) != bytes.fromhex(hex_id):
        raise NoteError("vkey key ID does not match the key")
    return name, alg, public_key


def _verify_key(public_key: bytes) -> VerifyKey:
    if len(public_key) != 32:
        raise NoteError("Ed25519 public key must be 32 bytes")
    return VerifyKey(public_key)


class NoteSigner(Protocol):
    """Anything that can add a signature line to a note."""

    @property
    def name(self) -> str:
        """The key name written on the signature line."""
        ...

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID."""
        ...

    def sign(self, text: bytes) -> bytes:
        """Return the signature payload (the bytes after the key ID) for the note text."""
        ...


class NoteVerifier(Protocol):
    """Anything that can check a signature line of a note."""

    @property
    def name(self) -> str:
        """The key name."""
        ...

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID."""
        ...

    def verify(self, text: bytes, payload: bytes) -> bool:
        """Return whether ``payload`` is a valid signature of the note text."""
        ...


@dataclass(frozen=True)
class Signature:
    """One signature line of a note.

    Attributes:
        name: Key name.
        key_id: 4-byte key ID.
        payload: The signature bytes following the key ID.
    """

    name: str
    key_id: bytes
    payload: bytes

    def line(self) -> str:
        """Format as ``— <name> <base64(key ID || payload)>\\n``."""
        return f"{_SIG_PREFIX}{self.name} {_b64encode(self.key_id + self.payload)}\n"


@dataclass(frozen=True)
class _KeyVerifier:
    """What both verifier types share: a checked name, an Ed25519 public key, its key ID
    under the subclass's signature type ``_ALG``, and the vkey form."""

    _ALG: ClassVar[int]
    #: How a vkey of another type is told it is not this one.
    _KIND: ClassVar[str]

    name: str
    verify_key: VerifyKey
    key_id: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        object.__setattr__(self, "key_id", key_id(self.name, self._ALG, bytes(self.verify_key)))

    @classmethod
    def from_vkey(cls, vkey: str) -> Self:
        """Parse a vkey ``name+<8 hex>+base64(_ALG || pubkey)``.

        Raises:
            NoteError: If the vkey is malformed, of another type, or its key ID does not match.
        """
        name, alg, public_key = _parse_vkey(vkey)
        if alg != cls._ALG:
            raise NoteError(f"vkey type {alg:#04x} is not {cls._KIND}")
        return cls(name, _verify_key(public_key))

    @property
    def vkey(self) -> str:
        """The vkey string ``name+<8 hex>+base64(_ALG || pubkey)``."""
        encoded = _b64encode(bytes([self._ALG]) + bytes(self.verify_key))
        return f"{self.name}+{self.key_id.hex()}+{encoded}"


class _KeySigner:
    """What both signer types share: a checked name, an Ed25519 private key and its key ID
    under the subclass's signature type ``_ALG``.

    Args:
        name: Key name: non-empty, no whitespace, no ``+``.
        signing_key: The Ed25519 private key.
    """

    _ALG: ClassVar[int]

    def __init__(self, name: str, signing_key: SigningKey) -> None:
        _check_name(name)
        self._name = name
        self._signing_key = signing_key
        self._key_id = key_id(name, self._ALG, bytes(signing_key.verify_key))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r}, key_id={self._key_id.hex()})"

    @property
    def name(self) -> str:
        """The key name."""
        return self._name

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID."""
        return self._key_id


@dataclass(frozen=True)
class Verifier(_KeyVerifier):
    """An Ed25519 (type 0x01) signed-note verifier.

    Attributes:
        name: Key name.
        verify_key: The Ed25519 public key.
        key_id: Derived 4-byte key ID.
    """

    _ALG = ALG_ED25519
    _KIND = "Ed25519"

    def verify(self, text: bytes, payload: bytes) -> bool:
        """Check an Ed25519 signature of the note text."""
        return _ed25519_verify(self.verify_key, text, payload)


class Signer(_KeySigner):
    """An Ed25519 (type 0x01) signed-note signer.

    Args:
        name: Key name: non-empty, no whitespace, no ``+``.
        signing_key: The Ed25519 private key.
    """

    _ALG = ALG_ED25519

    @classmethod
    def from_private_key(cls, skey: str) -> Signer:
        """Parse Go's private-key form ``PRIVATE+KEY+name+<8 hex>+base64(0x01 || seed)``.

        Raises:
            NoteError: If the key is malformed or its key ID does not match.
        """
        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("private key must be PRIVATE+KEY+name+keyid+key")
        _, _, name, hex_id, encoded = parts
        _check_name(name)
        if not _HEX8.fullmatch(hex_id):
            raise NoteError("private key ID must be 8 hex digits")
        raw = _b64decode(encoded, "private key")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError("private key is not an Ed25519 seed")
        signer = cls(name, SigningKey(raw[1:]))
        if signer.key_id != bytes.fromhex(hex_id):
            raise NoteError("private key ID does not match the key")
        return signer

    def private_key(self) -> str:
        """Return Go's private-key form; this string is secret."""
        encoded = _b64encode(bytes([ALG_ED25519]) + bytes(self._signing_key))
        return f"PRIVATE+KEY+{self._name}+{self._key_id.hex()}+{encoded}"

    def verifier(self) -> Verifier:
        """Return the matching verifier."""
        return Verifier(self._name, self._signing_key.verify_key)

    def sign(self, text: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of the note text."""
        return self._signing_key.sign(text).signature


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


def _as_text(data: str | bytes, what: str) -> str:
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError(f"{what} is not valid UTF-8") from exc
    else:
        text = data
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise NoteError(f"{what} is not valid UTF-8") from exc
    if _CONTROL.search(text):
        raise NoteError(f"{what} contains a control character")
    return text


def _check_note_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")


def split_note(note: str | bytes) -> tuple[str, list[Signature]]:
    """Split a signed note into its text and signature lines, verifying nothing.

    Args:
        note: The whole note.

    Returns:
        The text (ending in ``\\n``) and the parsed signature lines, in order.

    Raises:
        NoteError: If the note is malformed or has more than :data:`MAX_SIGNATURES` lines.
    """
    whole = _as_text(note, "note")
    split = whole.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    text, block = whole[: split + 1], whole[split + 2 :]
    if not block.endswith("\n"):
        raise NoteError("note signatures must end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError("note has too many signatures")
    signatures = []
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise NoteError("signature line must start with an em dash and a space")
        name, _, encoded = line[len(_SIG_PREFIX) :].partition(" ")
        _check_name(name)
        raw = _b64decode(encoded, "signature")
        if len(raw) < 5:
            raise NoteError("signature is too short")
        signatures.append(Signature(name, raw[:4], raw[4:]))
    return text, signatures


def _index_verifiers(verifiers: Iterable[NoteVerifier]) -> dict[tuple[str, bytes], NoteVerifier]:
    known: dict[tuple[str, bytes], NoteVerifier] = {}
    for verifier in verifiers:
        key = (verifier.name, verifier.key_id)
        existing = known.setdefault(key, verifier)
        if existing is not verifier and existing != verifier:
            raise NoteError(f"two different keys share name {verifier.name!r} and key ID")
    return known


def open_note(note: str | bytes, verifiers: Iterable[NoteVerifier]) -> tuple[str, list[Signature]]:
    """Verify a signed note against known keys.

    Signatures from unknown (name, key ID) pairs are ignored. Every signature by a known key
    is checked, repeats included, and one failure rejects the whole note.

    Args:
        note: The whole note.
        verifiers: The known keys.

    Returns:
        The note text and the verified signatures (each key once), in note order.

    Raises:
        NoteError: If the note is malformed, a known key's signature is invalid, or no known
            key signed it.
    """
    text, signatures = split_note(note)
    known = _index_verifiers(verifiers)
    message = text.encode()
    verified: list[Signature] = []
    seen: set[tuple[str, bytes]] = set()
    for signature in signatures:
        key = (signature.name, signature.key_id)
        verifier = known.get(key)
        if verifier is None:
            continue
        if not verifier.verify(message, signature.payload):
            raise NoteError(f"invalid signature by {signature.name!r}")
        if key not in seen:
            seen.add(key)
            verified.append(signature)
    if not verified:
        raise NoteError("note has no valid signature by a known key")
    return text, verified


def _signature_lines(text: str, signers: Iterable[NoteSigner]) -> list[str]:
    message = text.encode()
    lines = []
    for signer in signers:
        _check_name(signer.name)
        if len(signer.key_id) != 4:
            raise NoteError("key ID must be 4 bytes")
        lines.append(Signature(signer.name, signer.key_id, signer.sign(message)).line())
    if not lines:
        raise NoteError("a note needs at least one signer")
    return lines


def sign_note(text: str, signers: Iterable[NoteSigner]) -> str:
    """Sign a note text.

    Args:
        text: UTF-8 text with no control characters but ``\\n``, ending in ``\\n``.
        signers: One or more signers; their lines appear in this order.

    Returns:
        ``text + "\\n" +`` one signature line per signer.

    Raises:
        NoteError: If the text or a key name is invalid, or no signer is given.
    """
    _check_note_text(_as_text(text, "note text"))
    return text + "\n" + "".join(_signature_lines(text, signers))


def append_signatures(note: str, signers: Iterable[NoteSigner]) -> str:
    """Add signature lines to an already signed note, e.g. a witness cosignature.

    The existing signatures are kept verbatim and not verified; open the note first.

    Args:
        note: The signed note.
        signers: The signers to add.

    Returns:
        The note with the new lines appended.

    Raises:
        NoteError: If the note is malformed or the result would exceed the signature limit.
    """
    text, signatures = split_note(note)
    lines = _signature_lines(text, signers)
    if len(signatures) + len(lines) > MAX_SIGNATURES:
        raise NoteError("note has too many signatures")
    return _as_text(note, "note") + "".join(lines)


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
        leaf_data: The entry bytes; they are hashed with :func:`charter.merkle.leaf_hash`.
        verifiers: Known keys for :func:`open_note`.
        policy: A witness policy for :func:`verify_policy`.

    Returns:
        The verified checkpoint.

    Raises:
        NoteError: If the file is malformed or the checkpoint fails signature checks.
        charter.merkle.ProofError: If the inclusion proof fails.
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


@dataclass(frozen=True)
class Group:
    """A tlog-policy group: satisfied when at least ``threshold`` members are.

    Attributes:
        name: Group name.
        threshold: Members needed, ``1 <= threshold <= len(members)``.
        members: Names of witnesses or earlier groups.
    """

    name: str
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    """A parsed ``c2sp.org/tlog-policy``.

    Attributes:
        logs: Log keys; a checkpoint needs a valid signature by one whose name is its origin.
        witnesses: Witness verifiers by policy name.
        groups: Groups by name.
        quorum: Name of the witness or group that must be satisfied, or ``None`` for none.
    """

    logs: tuple[NoteVerifier, ...]
    witnesses: Mapping[str, NoteVerifier]
    groups: Mapping[str, Group]
    quorum: str | None


def parse_policy(text: str) -> Policy:
    """Parse a tlog-policy file.

    Lines are ``log <vkey> [<url>]``, ``witness <name> <vkey> [<url>]``,
    ``group <name> <k|any|all> <member>...`` and exactly one ``quorum <name|none>``. Blank
    lines and ``#`` comments are ignored. Group members must be defined on earlier lines.

    Raises:
        NoteError: If the policy is malformed or ambiguous.
    """
    logs: list[NoteVerifier] = []
    witnesses: dict[str, NoteVerifier] = {}
    groups: dict[str, Group] = {}
    quorum: list[str] = []
    keys: set[tuple[str, bytes]] = set()

    def add_key(verifier: NoteVerifier) -> None:
        if (verifier.name, verifier.key_id) in keys:
            raise NoteError(f"key {verifier.name!r} listed twice")
        keys.add((verifier.name, verifier.key_id))

    def new_name(name: str) -> str:
        if name == "none" or name in witnesses or name in groups:
            raise NoteError(f"policy name {name!r} is reserved or defined twice")
        return name

    for number, raw in enumerate(text.split("\n"), start=1):
        words = raw.partition("#")[0].split()
        if not words:
            continue
        keyword, args = words[0], words[1:]
        if keyword == "log" and len(args) in (1, 2):
            log = parse_vkey(args[0])
            add_key(log)
            logs.append(log)
        elif keyword == "witness" and len(args) in (2, 3):
            witness = parse_vkey(args[1])
            add_key(witness)
            witnesses[new_name(args[0])] = witness
        elif keyword == "group" and len(args) >= 3:
            name, threshold_word, members = new_name(args[0]), args[1], tuple(args[2:])
            if len(set(members)) != len(members):
                raise NoteError(f"line {number}: group {name!r} repeats a member")
            for member in members:
                if member not in witnesses and member not in groups:
                    raise NoteError(f"line {number}: group member {member!r} is not defined")
            if threshold_word == "any":
                threshold = 1
            elif threshold_word == "all":
                threshold = len(members)
            else:
                threshold = _parse_decimal(threshold_word, "group threshold")
                if not 1 <= threshold <= len(members):
                    raise NoteError(f"line {number}: threshold out of range")
            groups[name] = Group(name, threshold, members)
        elif keyword == "quorum" and len(args) == 1:
            quorum.append(args[0])
        else:
            raise NoteError(f"line {number}: cannot parse policy line")
    if not logs:
        raise NoteError("policy lists no log")
    if len(quorum) != 1:
        raise NoteError("policy needs exactly one quorum line")
    if quorum[0] != "none" and quorum[0] not in witnesses and quorum[0] not in groups:
        raise NoteError(f"quorum {quorum[0]!r} is not defined")
    return Policy(tuple(logs), witnesses, groups, None if quorum[0] == "none" else quorum[0])


def verify_policy(note: str | bytes, policy: Policy) -> None:
    """Check that a signed checkpoint satisfies a policy.

    The checkpoint needs a valid signature by a policy log key named after its origin, and
    the quorum must be met by valid signatures of the policy's witnesses. Any invalid
    signature by a key in the policy rejects the note.

    Raises:
        NoteError: If the note is malformed, a signature fails, or the policy is not met.
    """
    text, verified = open_note(note, [*policy.logs, *policy.witnesses.values()])
    checkpoint = Checkpoint.parse(text)
    signed = {(s.name, s.key_id) for s in verified}
    if not any(
        log.name == checkpoint.origin and (log.name, log.key_id) in signed for log in policy.logs
    ):
        raise NoteError(f"no valid signature by the log {checkpoint.origin!r}")
    if policy.quorum is None:
        return

    memo: dict[str, bool] = {}

    def satisfied(name: str) -> bool:
        if name in policy.witnesses:
            witness = policy.witnesses[name]
            return (witness.name, witness.key_id) in signed
        if name not in memo:
            group = policy.groups.get(name)
            if group is None:
                raise NoteError(f"policy name {name!r} is not defined")
            memo[name] = False  # a cycle (impossible from parse_policy) counts as unmet
            memo[name] = sum(satisfied(m) for m in group.members) >= group.threshold
        return memo[name]

    if not satisfied(policy.quorum):
        raise NoteError(f"quorum {policy.quorum!r} is not satisfied")
