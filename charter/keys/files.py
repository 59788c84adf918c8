"""Ed25519 key pairs and key files, for the file store of the signer seam.

A key file is a JSON private JWK (``kty``, ``crv``, ``x``, ``d``), mode 0600. In a home with a
passphrase, ``d`` is replaced by ``sealed``: the seed sealed under the home's key-encryption key
(:mod:`charter.keys.sealed`). Homes made before that may hold an owner key with ``enc``: the
seed sealed with XSalsa20-Poly1305 under a key derived from its own passphrase with Argon2id.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.signing
import nacl.utils

from charter.errors import ConfigError
from charter.evidence.jwk import b64url, b64url_decode, public_jwk, public_key_from_jwk, thumbprint

if TYPE_CHECKING:
    from collections.abc import Callable

    from charter.keys.sealed import Kek


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An Ed25519 signing key with its public key and key id precomputed."""

    signing_key: nacl.signing.SigningKey = field(repr=False)
    public_key: bytes
    kid: str

    @classmethod
    def generate(cls) -> KeyPair:
        """Make a fresh random key."""
        return cls.from_seed(nacl.utils.random(32))

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        """Build from a 32-byte seed."""
        sk = nacl.signing.SigningKey(seed)
        pk = bytes(sk.verify_key)
        return cls(signing_key=sk, public_key=pk, kid=thumbprint(pk))

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        return self.signing_key.sign(message).signature

    def jwk(self) -> dict[str, str]:
        """The public JWK."""
        return public_jwk(self.public_key)

    def __repr__(self) -> str:
        return f"KeyPair(kid={self.kid!r})"


# Argon2id "moderate" costs protect an owner key at rest; tests may pass cheaper ones.
_OPS = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
_MEM = nacl.pwhash.argon2id.MEMLIMIT_MODERATE


def write_key_file(
    path: Path,
    key: KeyPair,
    passphrase: bytes | None = None,
    *,
    cheap_kdf: bool = False,
    kek: Kek | None = None,
) -> None:
    """Write ``key`` as a 0600 JWK file: sealed under the home's ``kek`` if one is given, else
    (the legacy owner-key form) under its own ``passphrase`` if one is given, else clear.

    The file is created exclusively: an existing key is never overwritten.

    Raises:
        ConfigError: the file could not be written (e.g. the disk is full); nothing is left.
    """
    seed = bytes(key.signing_key)
    doc: dict[str, Any] = public_jwk(key.public_key) | {"kid": key.kid}
    if kek is not None:
        doc["sealed"] = kek.seal(seed)
    elif passphrase:
        ops, mem = (
            (nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN)
            if cheap_kdf
            else (_OPS, _MEM)
        )
        salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        box_key = nacl.pwhash.argon2id.kdf(32, passphrase, salt, opslimit=ops, memlimit=mem)
        sealed = nacl.secret.SecretBox(box_key).encrypt(seed)
        doc["enc"] = {
            "alg": "argon2id/xsalsa20poly1305",
            "salt": b64url(salt),
            "ops": ops,
            "mem": mem,
            "box": b64url(bytes(sealed)),
        }
    else:
        doc["d"] = b64url(seed)
    write_private_json(path, doc)


def write_private_json(path: Path, doc: dict[str, Any]) -> None:
    """Create ``path`` (0600, exclusively) holding ``doc`` as JSON, synced to disk.

    Raises:
        FileExistsError: if ``path`` exists.
        ConfigError: if it cannot be written (read-only or full disk); a partly written file
            is removed, so a truncated key is never left behind.
    """
    data = json.dumps(doc, indent=2).encode() + b"\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise
    except OSError as exc:  # e.g. a read-only filesystem
        raise ConfigError(f"cannot write key file {path.name}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:  # e.g. a full disk
        path.unlink(missing_ok=True)
        raise ConfigError(f"cannot write key file {path.name}: {exc.strerror}") from exc


def key_file_is_protected(path: Path) -> bool:
    """True when the key file at ``path`` needs a passphrase."""
    doc = read_key_doc(path)
    return "enc" in doc or "sealed" in doc


def read_public_key(path: Path) -> bytes:
    """The public key recorded in a key file (no passphrase needed).

    Raises:
        ConfigError: if the file is missing, unreadable or corrupt.
    """
    try:
        return public_key_from_jwk(read_key_doc(path))
    except ValueError as exc:
        raise ConfigError(f"key file {path.name} is corrupt") from exc


def read_key_file(path: Path, passphrase: bytes | None = None) -> KeyPair:
    """Load a clear or legacy (``enc``) key file written by :func:`write_key_file`.

    Raises:
        ConfigError: if the file is missing, unreadable, corrupt, needs a passphrase that was
            not given, or the passphrase is wrong.
    """
    return key_from_doc(read_key_doc(path), path.name, passphrase)


def key_from_doc(
    doc: dict[str, Any],
    name: str,
    passphrase: bytes | None,
    kek: Callable[[], Kek | None] | None = None,
) -> KeyPair:
    """The key a key document holds; ``kek`` gives the home's KEK for a ``sealed`` one.

    Raises:
        ConfigError: as for :func:`read_key_file`, or a locked home.
    """
    path = Path(name)
    try:
        if "sealed" in doc:
            from charter.keys.sealed import locked_error

            home_kek = kek() if kek is not None else None
            if home_kek is None:
                raise locked_error()
            seed = home_kek.open(doc["sealed"], name)
        elif "enc" in doc:
            if not passphrase:
                raise ConfigError(f"key file {path.name} is protected: a passphrase is required")
            enc = doc["enc"]
            box_key = nacl.pwhash.argon2id.kdf(
                32,
                passphrase,
                b64url_decode(enc["salt"]),
                opslimit=int(enc["ops"]),
                memlimit=int(enc["mem"]),
            )
            try:
                seed = nacl.secret.SecretBox(box_key).decrypt(b64url_decode(enc["box"]))
            except nacl.exceptions.CryptoError as exc:
                raise ConfigError(f"wrong passphrase for key file {path.name}") from exc
        else:
            seed = b64url_decode(doc["d"])
        key = KeyPair.from_seed(seed)
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError, nacl.exceptions.CryptoError) as exc:
        raise ConfigError(f"key file {path.name} is corrupt") from exc
    if b64url(key.public_key) != doc.get("x"):
        raise ConfigError(f"key file {path.name} is corrupt: its public key does not match")
    return key


def read_key_doc(path: Path) -> dict[str, Any]:
    """The JSON document of a key file (its public half needs no passphrase).

    Raises:
        ConfigError: missing, unreadable or corrupt.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"key file {path.name} is missing from the Charter home") from exc
    except OSError as exc:
        raise ConfigError(f"key file {path.name} cannot be read: {exc.strerror}") from exc
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"key file {path.name} is corrupt") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"key file {path.name} is corrupt")
    return doc


def read_passphrase_file(path: Path) -> bytes | None:
    """A passphrase from a file (its first line, without the newline), or None if empty.

    Raises:
        ConfigError: the file cannot be read (the message names no content).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read passphrase file: {exc.strerror}") from exc
    return data.split(b"\n", 1)[0] or None
