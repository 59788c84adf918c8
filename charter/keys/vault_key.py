"""The vault master key file (``keys/vault.key``), kept by the signer seam.

The file holds a random 32-byte key (in the clear, or ``sealed`` under the home's KEK when the
home has a passphrase), or only the salt and costs of a key derived from a separate vault
passphrase (``kdf``). :mod:`charter.storage.vault` asks the signer for the key and never reads
this file itself.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.pwhash
import nacl.utils

from charter.errors import ConfigError
from charter.evidence.jwk import b64url, b64url_decode
from charter.keys.files import write_private_json
from charter.keys.sealed import Kek, current_doc

KIND = "charter-vault-key"
#: Gives the home's KEK (deriving it once), or None for a clear home.
KekSource = Callable[[], Kek | None]


def write_vault_key(
    path: Path,
    key_version: int,
    passphrase: bytes | None,
    limits: tuple[int, int],
    kek: KekSource,
) -> bytes:
    """Create a 0600 key file (exclusively) and return the 32-byte key it gives.

    With a vault passphrase the key is derived with Argon2id at ``limits`` (ops, mem) and the
    file holds only the salt and costs; else it is random, sealed when the home is.
    """
    doc: dict[str, Any] = {"kind": KIND, "key_version": key_version}
    if passphrase:
        ops, mem = limits
        salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        key = bytes(nacl.pwhash.argon2id.kdf(32, passphrase, salt, opslimit=ops, memlimit=mem))
        doc["kdf"] = {"alg": "argon2id", "salt": b64url(salt), "ops": ops, "mem": mem}
    else:
        key = nacl.utils.random(32)
        home_kek = kek()
        if home_kek is None:
            doc["key"] = b64url(key)
        else:
            doc["sealed"] = home_kek.seal(key)
    write_private_json(path, doc)
    return key


def read_vault_doc(path: Path) -> dict[str, Any]:
    """The JSON document of a vault key file.

    Raises:
        ConfigError: unreadable, corrupt, or not a vault key file.
    """
    try:
        doc = json.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{path.name} cannot be read: {exc.strerror}") from exc
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"{path.name} is corrupt") from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise ConfigError(f"{path.name} is not a Charter vault key")
    return doc


def vault_key_from_doc(doc: dict[str, Any], passphrase: bytes | None, kek: KekSource) -> bytes:
    """The 32-byte master key a key file gives (derived, unsealed or read).

    Raises:
        ConfigError: a passphrase-derived key and no passphrase, a locked home, or corruption.
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
        if "sealed" in doc:
            home_kek = kek()
            if home_kek is None:
                raise ConfigError("keys/vault.key is sealed, but the home has no keys/seal.json")
            key = home_kek.open(doc["sealed"], "vault.key")
        else:
            key = b64url_decode(doc["key"])
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError("keys/vault.key is corrupt") from exc
    if len(key) != 32:
        raise ConfigError("keys/vault.key is corrupt")
    return key


def adopt_vault_key(
    path: Path, passphrase: bytes | None, limits: tuple[int, int], kek: KekSource, gen: int | None
) -> tuple[int, bytes]:
    """First use of a vault: ``(key version, key)`` of the key file at ``path``, written now
    (version 1) unless one is already there."""
    if path.exists():
        doc = current_doc(path, gen, read_vault_doc)
        return int(doc.get("key_version", 0)), vault_key_from_doc(doc, passphrase, kek)
    return 1, write_vault_key(path, 1, passphrase, limits, kek)


def load_vault_key(
    path: Path, key_version: int, passphrase: bytes | None, kek: KekSource, gen: int | None
) -> bytes:
    """The master key of version ``key_version`` from ``path`` (``keys/vault.key``).

    A rotation that committed but crashed before renaming ``vault.key.new`` over the key
    file is finished here (another process may be doing the same).

    Raises:
        ConfigError: the key file is missing, of another version, or unusable.
    """
    pending = path.with_name("vault.key.new")
    doc = current_doc(path, gen, read_vault_doc) if path.exists() else None
    if (doc is None or doc.get("key_version") != key_version) and pending.exists():
        pending_doc = read_vault_doc(pending)
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
    return vault_key_from_doc(doc, passphrase, kek)
