"""How vault rows are sealed: XChaCha20-Poly1305 with bound associated data, and the master
key file (``keys/vault.key``: a random key, or the salt and costs of a passphrase-derived one).

No SQL here: :mod:`charter.storage.vault` stores what these functions seal.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import nacl.bindings as sodium
import nacl.exceptions
import nacl.pwhash
import nacl.utils

from charter.errors import ConfigError
from charter.evidence.canonical import canonical_json
from charter.evidence.jwk import b64url, b64url_decode
from charter.keys.files import write_private_json

_AD_PREFIX = b"charter-vault-v1\x00"
_KEY_CHECK_TEXT = b"charter vault key check v1"
_KEY_KIND = "charter-vault-key"


def ad(vault_id: str, name: str, version: int, key_version: int) -> bytes:
    """Associated data binding a ciphertext to its vault, name, version and key version."""
    return _AD_PREFIX + canonical_json(
        {"vault": vault_id, "name": name, "version": version, "key_version": key_version}
    )


def key_check_ad(vault_id: str, key_version: int) -> bytes:
    """Associated data of the key check (``vault_state.key_check``)."""
    return _AD_PREFIX + canonical_json(
        {"vault": vault_id, "purpose": "key-check", "key_version": key_version}
    )


def seal(key: bytes, plain: bytes, ad: bytes) -> tuple[bytes, bytes]:
    """Encrypt under a fresh random nonce; return ``(nonce, ciphertext)``."""
    nonce = nacl.utils.random(sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
    return nonce, sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plain, ad, nonce, key)


def open_sealed(key: bytes, nonce: bytes, ciphertext: bytes, ad: bytes) -> bytes | None:
    """Decrypt and authenticate, or None: callers turn None into their own clear error."""
    try:
        return bytes(sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, ad, nonce, key))
    except nacl.exceptions.CryptoError:
        return None


def key_check(vault_id: str, key_version: int, key: bytes) -> bytes:
    """A fixed text sealed under ``key``: it opens only with the right key."""
    nonce, sealed = seal(key, _KEY_CHECK_TEXT, key_check_ad(vault_id, key_version))
    return nonce + sealed


def key_checks_out(vault_id: str, key_version: int, key: bytes, check: bytes) -> bool:
    """True when ``check`` (from :func:`key_check`) opens under ``key``."""
    return open_sealed(key, check[:24], check[24:], key_check_ad(vault_id, key_version)) is not None


def write_key_file(
    path: Path, key_version: int, passphrase: bytes | None, limits: tuple[int, int]
) -> bytes:
    """Create a 0600 key file (exclusively) and return the 32-byte key it gives.

    With a passphrase the key is derived with Argon2id at ``limits`` (ops, mem) and the
    file holds only the salt and costs.
    """
    doc: dict[str, Any] = {"kind": _KEY_KIND, "key_version": key_version}
    if passphrase:
        ops, mem = limits
        salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        key = bytes(nacl.pwhash.argon2id.kdf(32, passphrase, salt, opslimit=ops, memlimit=mem))
        doc["kdf"] = {"alg": "argon2id", "salt": b64url(salt), "ops": ops, "mem": mem}
    else:
        key = nacl.utils.random(32)
        doc["key"] = b64url(key)
    write_private_json(path, doc)
    return key


def read_key_doc(path: Path) -> dict[str, Any]:
    """The JSON document of a key file.

    Raises:
        ConfigError: unreadable, corrupt, or not a vault key file.
    """
    try:
        doc = json.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{path.name} cannot be read: {exc.strerror}") from exc
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"{path.name} is corrupt") from None
    if not isinstance(doc, dict) or doc.get("kind") != _KEY_KIND:
        raise ConfigError(f"{path.name} is not a Charter vault key")
    return doc


def key_from_doc(doc: dict[str, Any], passphrase: bytes | None) -> bytes:
    """The 32-byte master key a key file gives (derived when it holds a KDF).

    Raises:
        ConfigError: a passphrase-derived key and no passphrase, or a corrupt file.
    """
    try:
        if "kdf" in doc:
            if not passphrase:
                raise ConfigError(
                    "the vault master key is derived from a passphrase, and none was given"
                )
            kdf = doc["kdf"]
            return bytes(
                nacl.pwhash.argon2id.kdf(
                    32,
                    passphrase,
                    b64url_decode(kdf["salt"]),
                    opslimit=int(kdf["ops"]),
                    memlimit=int(kdf["mem"]),
                )
            )
        key = b64url_decode(doc["key"])
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError("keys/vault.key is corrupt") from exc
    if len(key) != 32:
        raise ConfigError("keys/vault.key is corrupt")
    return key


def adopt_key_file(
    path: Path, passphrase: bytes | None, limits: tuple[int, int]
) -> tuple[int, bytes]:
    """First use of a vault: ``(key version, key)`` of the key file at ``path``, written now
    (version 1) unless one is already there."""
    if path.exists():
        doc = read_key_doc(path)
        return int(doc.get("key_version", 0)), key_from_doc(doc, passphrase)
    return 1, write_key_file(path, 1, passphrase, limits)


def load_key_file(path: Path, key_version: int, passphrase: bytes | None) -> bytes:
    """The master key of version ``key_version`` from ``path`` (``keys/vault.key``).

    A rotation that committed but crashed before renaming ``vault.key.new`` over the key
    file is finished here (another process may be doing the same).

    Raises:
        ConfigError: the key file is missing, of another version, or unusable.
    """
    pending = path.with_name("vault.key.new")
    doc = read_key_doc(path) if path.exists() else None
    if (doc is None or doc.get("key_version") != key_version) and pending.exists():
        pending_doc = read_key_doc(pending)
        if pending_doc.get("key_version") == key_version:
            with contextlib.suppress(FileNotFoundError):
                os.replace(pending, path)
            doc = pending_doc
    if doc is None:
        raise ConfigError(
            "the vault master key keys/vault.key is missing: the stored secrets cannot be "
            "decrypted (restore the file from a backup)"
        )
    if doc.get("key_version") != key_version:
        raise ConfigError(
            f"keys/vault.key holds master key version {doc.get('key_version')}, but the "
            f"vault was encrypted with version {key_version}"
        )
    return key_from_doc(doc, passphrase)
