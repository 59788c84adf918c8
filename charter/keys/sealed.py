"""The encrypted file store's seal: one passphrase seals every key of a home.

``keys/seal.json`` holds the Argon2id salt and costs, a generation number and a check (a fixed
text sealed under the key-encryption key, so a wrong passphrase is told apart from a corrupt
key file). The key-encryption key (KEK) is derived once per process; each private key file then
holds ``sealed: {gen, box}``: its secret sealed with XSalsa20-Poly1305 under the KEK of
generation ``gen``. Changing the passphrase writes a new generation (:mod:`charter.keys.reseal`).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from charter.errors import ConfigError
from charter.evidence.jwk import b64url, b64url_decode

SEAL_FILE = "seal.json"
#: Suffix of a key file re-sealed under a new generation, not yet renamed into place.
RESEAL_SUFFIX = ".reseal"
_KIND = "charter-key-seal"
_ALG = "argon2id/xsalsa20poly1305"
_CHECK = b"charter key seal check v1"
#: Argon2id "moderate" costs (as the owner key had); tests may pass the minimum.
OPS = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
MEM = nacl.pwhash.argon2id.MEMLIMIT_MODERATE
CHEAP = (nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN)


def locked_error(what: str = "the Charter home") -> ConfigError:
    """The one error of a locked home (no passphrase given)."""
    return ConfigError(
        f"{what} is locked (its keys are sealed with a passphrase): set "
        "CHARTER_PASSPHRASE_FILE=FILE or pass --passphrase-file FILE"
    )


@dataclass(frozen=True, slots=True)
class Kek:
    """A derived key-encryption key of one seal generation (never written anywhere)."""

    gen: int
    key: bytes = field(repr=False)

    def seal(self, secret: bytes) -> dict[str, Any]:
        """``{gen, box}``: ``secret`` sealed under this KEK."""
        box = nacl.secret.SecretBox(self.key).encrypt(secret)
        return {"gen": self.gen, "box": b64url(bytes(box))}

    def open(self, sealed: Any, name: str) -> bytes:
        """The secret in ``sealed`` (from :meth:`seal`).

        Raises:
            ConfigError: another generation, or the box does not open (corrupt or altered).
        """
        try:
            if int(sealed["gen"]) != self.gen:
                raise ConfigError(
                    f"key file {name} is sealed under seal generation {sealed['gen']}, the "
                    f"home is at {self.gen}: was `charter keys passphrase` interrupted?"
                )
            return bytes(nacl.secret.SecretBox(self.key).decrypt(b64url_decode(sealed["box"])))
        except ConfigError:
            raise
        except (KeyError, TypeError, ValueError, nacl.exceptions.CryptoError) as exc:
            raise ConfigError(f"key file {name} is corrupt or was altered") from exc


@dataclass(frozen=True, slots=True)
class Seal:
    """The parameters in ``keys/seal.json``."""

    gen: int
    salt: bytes
    ops: int
    mem: int
    check: bytes

    @classmethod
    def new(cls, passphrase: bytes, gen: int, *, cheap: bool = False) -> tuple[Seal, Kek]:
        """A fresh seal (new salt) for ``passphrase`` and its KEK."""
        ops, mem = CHEAP if cheap else (OPS, MEM)
        salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        kek = Kek(gen, _derive(passphrase, salt, ops, mem))
        check = bytes(nacl.secret.SecretBox(kek.key).encrypt(_CHECK))
        return cls(gen, salt, ops, mem, check), kek

    def derive(self, passphrase: bytes) -> Kek:
        """The KEK for ``passphrase`` (one Argon2id run).

        Raises:
            ConfigError: wrong passphrase.
        """
        kek = Kek(self.gen, _derive(passphrase, self.salt, self.ops, self.mem))
        try:
            nacl.secret.SecretBox(kek.key).decrypt(self.check)
        except nacl.exceptions.CryptoError:
            raise ConfigError("wrong passphrase for the Charter home's keys") from None
        return kek

    def doc(self) -> dict[str, Any]:
        """The JSON document of ``seal.json``."""
        return {
            "kind": _KIND,
            "alg": _ALG,
            "gen": self.gen,
            "salt": b64url(self.salt),
            "ops": self.ops,
            "mem": self.mem,
            "check": b64url(self.check),
        }

    @classmethod
    def read(cls, keys_dir: Path) -> Seal | None:
        """The seal of a home, or None for a clear (no passphrase) home.

        Raises:
            ConfigError: ``seal.json`` unreadable or corrupt.
        """
        path = keys_dir / SEAL_FILE
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"keys/{SEAL_FILE} cannot be read: {exc.strerror}") from exc
        except (ValueError, UnicodeDecodeError):
            raise ConfigError(f"keys/{SEAL_FILE} is corrupt") from None
        try:
            if doc["kind"] != _KIND or doc["alg"] != _ALG:
                raise ValueError
            return cls(
                int(doc["gen"]),
                b64url_decode(doc["salt"]),
                int(doc["ops"]),
                int(doc["mem"]),
                b64url_decode(doc["check"]),
            )
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"keys/{SEAL_FILE} is corrupt") from None


def _derive(passphrase: bytes, salt: bytes, ops: int, mem: int) -> bytes:
    return bytes(nacl.pwhash.argon2id.kdf(32, passphrase, salt, opslimit=ops, memlimit=mem))


def sealed_gen(doc: dict[str, Any]) -> int | None:
    """The seal generation a key document is sealed under (None: clear or legacy)."""
    sealed = doc.get("sealed")
    if isinstance(sealed, dict) and isinstance(sealed.get("gen"), int):
        return int(sealed["gen"])
    return None


def current_doc(path: Path, gen: int | None, read: Any) -> dict[str, Any]:
    """The document of key file ``path`` under seal generation ``gen``.

    A passphrase change that committed (``seal.json`` at ``gen``) but stopped before renaming
    every ``X.reseal`` over ``X`` is finished here, file by file (best effort: a reader
    without write access still uses the re-sealed file).
    """
    pending = path.with_name(path.name + RESEAL_SUFFIX)
    if gen is not None and pending.exists():
        doc: dict[str, Any] = read(path) if path.exists() else {}
        if sealed_gen(doc) != gen:
            new_doc: dict[str, Any] = read(pending)
            if sealed_gen(new_doc) == gen:
                with contextlib.suppress(OSError):
                    os.replace(pending, path)
                return new_doc
        return doc
    result: dict[str, Any] = read(path)
    return result
