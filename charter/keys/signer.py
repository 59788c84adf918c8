"""The signer seam: every private-key operation of Charter goes through a :class:`Signer`.

Keys are named by reference, never handed around as files: ``owner``, ``log``,
``issuer:<kid>``, ``agent:<name>`` (:func:`owner_ref` and friends). A signer signs with the key
a reference names and tells its public key; callers that must hold "a key" (a ledger draft, a
charter, a token) hold a :class:`KeyHandle`, which signs through the signer and never carries
the private key itself.

:class:`FileSigner` is the first store: the home's ``keys/`` folder, one 0600 JWK file per key,
the owner key optionally sealed with a passphrase (:mod:`charter.keys.files`). Other stores
(an encrypted file for every key, a PKCS#11 token, a daemon over a socket) implement the same
protocol; nothing outside this package reads a private-key file.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from charter.errors import ConfigError
from charter.keys.files import (
    KeyPair,
    key_file_is_protected,
    read_key_file,
    read_public_key,
    write_key_file,
)

if TYPE_CHECKING:
    from pathlib import Path

    from charter.config import HomeLayout

OWNER = "owner"
LOG = "log"
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def issuer_ref(kid: str) -> str:
    """The reference of the token-issuer key with key id ``kid``."""
    return f"issuer:{kid}"


def agent_ref(name: str) -> str:
    """The reference of agent ``name``'s signing key."""
    return f"agent:{name}"


class Signer(Protocol):
    """Signs with the keys it keeps; the private keys never leave it."""

    def sign(self, ref: str, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message`` by the key ``ref``.

        Raises:
            ConfigError: the key is missing, corrupt, or locked (needs a passphrase).
        """
        ...

    def public_key(self, ref: str) -> bytes:
        """The 32-byte Ed25519 public key of ``ref``.

        Raises:
            ConfigError: as for :meth:`sign`.
        """
        ...

    def create(self, ref: str, *, passphrase: bytes | None = None) -> str:
        """Make a new key under ``ref`` (never replacing one) and return its reference.

        ``issuer:`` alone names the new key by its key id (``issuer:<kid>``).

        Raises:
            ConfigError: the key exists or cannot be stored.
        """
        ...

    def remove(self, ref: str) -> None:
        """Destroy the key ``ref`` if it exists (e.g. a leftover of an interrupted add)."""
        ...

    def unlock(self, ref: str, passphrase: bytes | None) -> None:
        """Make a passphrase-protected key usable for this process.

        Raises:
            ConfigError: wrong or missing passphrase.
        """
        ...

    def is_protected(self, ref: str) -> bool:
        """True when ``ref`` needs :meth:`unlock` before it can sign."""
        ...


@dataclass(frozen=True, slots=True)
class KeyHandle:
    """One key of a signer, usable wherever a signing key is expected (ledger drafts,
    charters, tokens, notes): it knows its public key and id and signs through the signer."""

    signer: Signer
    ref: str
    public_key: bytes
    kid: str

    @classmethod
    def of(cls, signer: Signer, ref: str) -> KeyHandle:
        """The handle of ``ref`` (loads its public key once).

        Raises:
            ConfigError: the key is missing, corrupt or locked.
        """
        from charter.evidence.jwk import thumbprint

        public = signer.public_key(ref)
        return cls(signer, ref, public, thumbprint(public))

    def sign(self, message: bytes) -> bytes:
        """The Ed25519 signature of ``message`` by this key."""
        return self.signer.sign(self.ref, message)

    def jwk(self) -> dict[str, str]:
        """The public JWK."""
        from charter.evidence.jwk import public_jwk

        return public_jwk(self.public_key)

    def __repr__(self) -> str:
        return f"KeyHandle(ref={self.ref!r}, kid={self.kid!r})"


class FileSigner:
    """The file store: the home's ``keys/`` folder (0700), one key file (0600) per key.

    Loaded keys are kept in memory for the life of the process; each file is read once.
    """

    def __init__(self, layout: HomeLayout, *, cheap_kdf: bool = False) -> None:
        self._layout = layout
        self._cheap_kdf = cheap_kdf
        self._loaded: dict[str, KeyPair] = {}
        self._lock = threading.Lock()

    def path(self, ref: str) -> str:
        """Where ``ref`` is kept (for messages and ``charter doctor``; never read elsewhere)."""
        return str(self._path(ref))

    def _path(self, ref: str) -> Path:
        kind, _, name = ref.partition(":")
        if ref == OWNER:
            return self._layout.owner_key
        if ref == LOG:
            return self._layout.log_key
        if kind == "issuer" and _NAME.match(name):
            return self._layout.issuer_key(name)
        if kind == "agent" and _NAME.match(name):
            return self._layout.agent_key(name)
        raise ConfigError(f"unknown key reference {ref!r}")

    def _key(self, ref: str, passphrase: bytes | None = None) -> KeyPair:
        with self._lock:
            key = self._loaded.get(ref)
            if key is None:
                key = read_key_file(self._path(ref), passphrase)
                self._loaded[ref] = key
            return key

    def sign(self, ref: str, message: bytes) -> bytes:
        """See :meth:`Signer.sign`."""
        return self._key(ref).sign(message)

    def public_key(self, ref: str) -> bytes:
        """See :meth:`Signer.public_key`."""
        loaded = self._loaded.get(ref)
        if loaded is not None:
            return loaded.public_key
        if self.is_protected(ref):  # its public half needs no passphrase
            return read_public_key(self._path(ref))
        return self._key(ref).public_key

    def create(self, ref: str, *, passphrase: bytes | None = None) -> str:
        """See :meth:`Signer.create`."""
        key = KeyPair.generate()
        if ref == "issuer:":
            ref = issuer_ref(key.kid)
        path = self._path(ref)
        try:
            write_key_file(path, key, passphrase, cheap_kdf=self._cheap_kdf)
        except FileExistsError as exc:
            raise ConfigError(f"key {ref!r} already exists; refusing to replace it") from exc
        with self._lock:
            self._loaded[ref] = key
        return ref

    def remove(self, ref: str) -> None:
        """See :meth:`Signer.remove`."""
        path = self._path(ref)
        with self._lock:
            self._loaded.pop(ref, None)
            if not path.exists():
                return
            try:
                path.unlink()
            except OSError as exc:
                raise ConfigError(f"cannot remove key file {path.name}: {exc.strerror}") from exc

    def unlock(self, ref: str, passphrase: bytes | None) -> None:
        """See :meth:`Signer.unlock`."""
        self._key(ref, passphrase)

    def is_protected(self, ref: str) -> bool:
        """See :meth:`Signer.is_protected`."""
        return ref not in self._loaded and key_file_is_protected(self._path(ref))

    def exists(self, ref: str) -> bool:
        """True when a key file for ``ref`` exists."""
        return self._path(ref).exists()
