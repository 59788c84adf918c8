"""C2SP signed notes (``c2sp.org/signed-note``): Ed25519 (type 0x01) note signatures, vkeys,
the Go private-key form, :func:`sign_note` and :func:`open_note`. Pure functions, no I/O."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, Self

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from charter.evidence import merkle
from charter.evidence.jwk import Ed25519Signer

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


class _HandleSigner:
    """What note signers over a key handle share: a checked name, the key (which signs; the
    private key stays with its keeper) and its key ID under the subclass's type ``_ALG``.

    Args:
        name: Key name: non-empty, no whitespace, no ``+``.
        key: The signing key (any :class:`~charter.evidence.jwk.Ed25519Signer`).
    """

    _ALG: ClassVar[int]

    def __init__(self, name: str, key: Ed25519Signer) -> None:
        _check_name(name)
        self._name = name
        self._key = key
        self._key_id = key_id(name, self._ALG, key.public_key)

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


class KeySigner(_HandleSigner):
    """An Ed25519 (type 0x01) note signer over any :class:`~charter.evidence.jwk.Ed25519Signer`
    (e.g. a key handle of Charter's signer seam): the private key stays with its keeper."""

    _ALG = ALG_ED25519

    def verifier(self) -> Verifier:
        """Return the matching verifier."""
        return Verifier(self._name, _verify_key(self._key.public_key))

    def sign(self, text: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of the note text."""
        return self._key.sign(text)


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
