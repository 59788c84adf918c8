"""The signer seam: every private-key operation of Charter goes through a :class:`Signer`.

Keys are named by reference, never handed around as files: ``owner``, ``log``,
``issuer:<kid>``, ``agent:<name>`` (:func:`owner_ref` and friends). A signer signs with the key
a reference names and tells its public key; callers that must hold "a key" (a ledger draft, a
charter, a token) hold a :class:`KeyHandle`, which signs through the signer and never carries
the private key itself.

:class:`FileSigner` is the file store: the home's ``keys/`` folder, one 0600 JWK file per key
(:mod:`charter.keys.files`), in the clear or, when the home has a passphrase, every key and the
vault master key sealed under one key-encryption key derived from it
(:mod:`charter.keys.sealed`). Other stores (a PKCS#11 token, a daemon over a socket) implement
the same protocol; nothing outside this package reads a private-key file.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from charter.errors import ConfigError
from charter.keys.files import (
    KeyPair,
    key_file_is_protected,
    key_from_doc,
    read_key_doc,
    read_public_key,
    write_key_file,
)
from charter.keys.sealed import SEAL_FILE, Kek, Seal, current_doc, locked_error, sealed_gen
from charter.keys.vault_key import adopt_vault_key, load_vault_key, write_vault_key

if TYPE_CHECKING:
    from pathlib import Path

    from charter.config import HomeLayout

OWNER = "owner"
LOG = "log"
#: An organization home's default owner (the first owner ``charter init --org`` certified);
#: in such a home ``OWNER`` is the organization key.
DEFAULT_OWNER = "owner:default"
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

    def set_passphrase(self, passphrase: bytes | None) -> None:
        """The passphrase this process unlocks sealed keys with (checked when first needed)."""
        ...

    def check_unlocked(self) -> None:
        """Fail now, not at the first signature, when the store is locked.

        Raises:
            ConfigError: no or wrong passphrase for a sealed store.
        """
        ...

    # -- the vault master key (a symmetric key the vault's sealing code asks for) -----------

    def vault_key(self, key_version: int, passphrase: bytes | None) -> bytes:
        """The vault master key of ``key_version`` (``passphrase``: a separate vault
        passphrase the key is derived from, if it is).

        Raises:
            ConfigError: missing, of another version, locked, or corrupt.
        """
        ...

    def adopt_vault_key(
        self, passphrase: bytes | None, limits: tuple[int, int]
    ) -> tuple[int, bytes]:
        """First use of a vault: ``(version, key)`` of the existing master key, or a new one."""
        ...

    def stage_vault_key(
        self, key_version: int, passphrase: bytes | None, limits: tuple[int, int]
    ) -> bytes:
        """Make the next master key (pending until :meth:`commit_vault_key`) and return it."""
        ...

    def commit_vault_key(self) -> None:
        """Make the staged master key the current one."""
        ...

    def discard_vault_key(self) -> None:
        """Drop a staged master key (a rotation that did not commit)."""
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

    With ``keys/seal.json`` (a home made with a passphrase) every key file is sealed under one
    key-encryption key, derived once per process from the passphrase (``passphrase_file``, or
    :meth:`set_passphrase`). Loaded keys are kept in memory for the life of the process; each
    file is read once.
    """

    def __init__(
        self,
        layout: HomeLayout,
        *,
        cheap_kdf: bool = False,
        passphrase_file: Path | None = None,
    ) -> None:
        self._layout = layout
        self._cheap_kdf = cheap_kdf
        self._passphrase_file = passphrase_file
        self._passphrase: bytes | None = None
        self._kek: Kek | None = None
        self._seal: Seal | None = Seal.read(layout.keys)
        self._loaded: dict[str, KeyPair] = {}
        self._lock = threading.RLock()

    # -- the seal --------------------------------------------------------------------------

    @property
    def sealed(self) -> bool:
        """True when the home's keys are sealed with a passphrase."""
        return self._seal is not None

    @property
    def seal_gen(self) -> int | None:
        """The seal generation (None: a clear home)."""
        return None if self._seal is None else self._seal.gen

    def at_rest(self) -> str:
        """How the keys are kept: ``sealed`` (every key, under the passphrase), ``legacy``
        (only the owner key, under its own passphrase) or ``clear``."""
        if self._seal is not None:
            return "sealed"
        return "legacy" if key_file_is_protected(self._layout.owner_key) else "clear"

    def init_seal(self, passphrase: bytes) -> None:
        """Seal this (new, empty) home: write ``keys/seal.json``; every key made after is sealed.

        Raises:
            ConfigError: the home is sealed already or the file cannot be written.
        """
        from charter.keys.files import write_private_json

        seal, kek = Seal.new(passphrase, 1, cheap=self._cheap_kdf)
        try:
            write_private_json(self._layout.keys / SEAL_FILE, seal.doc())
        except FileExistsError as exc:
            raise ConfigError("the home's keys are sealed already") from exc
        self._seal, self._kek, self._passphrase = seal, kek, passphrase

    def set_passphrase(self, passphrase: bytes | None) -> None:
        """See :meth:`Signer.set_passphrase`."""
        if passphrase and passphrase != self._passphrase:
            with self._lock:
                self._passphrase, self._kek = passphrase, None

    def has_passphrase(self) -> bool:
        """True when a passphrase was given (a file or :meth:`set_passphrase`)."""
        return bool(self._passphrase) or self._passphrase_file is not None

    def home_kek(self) -> Kek | None:
        """The KEK of a sealed home, derived on first use (None: a clear home).

        Raises:
            ConfigError: locked (no passphrase) or a wrong passphrase.
        """
        if self._seal is None:
            return None
        with self._lock:
            if self._kek is None:
                passphrase = self._passphrase
                if not passphrase and self._passphrase_file is not None:
                    from charter.keys.files import read_passphrase_file

                    passphrase = read_passphrase_file(self._passphrase_file)
                if not passphrase:
                    raise locked_error()
                self._kek = self._seal.derive(passphrase)
                self._passphrase = passphrase
            return self._kek

    def check_unlocked(self) -> None:
        """See :meth:`Signer.check_unlocked`."""
        self.home_kek()

    def _follow_seal(self, gen: int | None) -> None:
        """A key sealed under a newer generation than this process knows: the passphrase was
        changed while it ran; take the new seal (and re-read a passphrase file)."""
        if gen is None or self._seal is None or gen == self._seal.gen:
            return
        fresh = Seal.read(self._layout.keys)
        if fresh is not None and fresh.gen == gen:
            self._seal, self._kek = fresh, None
            if self._passphrase_file is not None:
                self._passphrase = None

    # -- keys ------------------------------------------------------------------------------

    def path(self, ref: str) -> str:
        """Where ``ref`` is kept (for messages and ``charter doctor``; never read elsewhere)."""
        return str(self._path(ref))

    def _path(self, ref: str) -> Path:
        kind, _, name = ref.partition(":")
        if ref == OWNER:
            return self._layout.owner_key
        if ref == LOG:
            return self._layout.log_key
        if ref == DEFAULT_OWNER:
            return self._layout.keys / "default-owner.key"
        if kind == "issuer" and _NAME.match(name):
            return self._layout.issuer_key(name)
        if kind == "agent" and _NAME.match(name):
            return self._layout.agent_key(name)
        raise ConfigError(f"unknown key reference {ref!r}")

    def _doc(self, path: Path) -> dict[str, object]:
        return current_doc(path, self.seal_gen, read_key_doc)

    def _key(self, ref: str, passphrase: bytes | None = None) -> KeyPair:
        with self._lock:
            key = self._loaded.get(ref)
            if key is None:
                path = self._path(ref)
                doc = self._doc(path)
                self._follow_seal(sealed_gen(doc))
                if "sealed" in doc and passphrase:
                    self.set_passphrase(passphrase)
                legacy = passphrase or self._passphrase
                if "enc" in doc and not legacy and self._passphrase_file is not None:
                    from charter.keys.files import read_passphrase_file

                    legacy = read_passphrase_file(self._passphrase_file)
                key = key_from_doc(dict(doc), path.name, legacy, self.home_kek)
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
        """See :meth:`Signer.create`; in a sealed home the key is sealed (``passphrase``, the
        legacy per-key seal, is then ignored)."""
        key = KeyPair.generate()
        if ref == "issuer:":
            ref = issuer_ref(key.kid)
        path = self._path(ref)
        kek = self.home_kek()
        try:
            write_key_file(path, key, passphrase, cheap_kdf=self._cheap_kdf, kek=kek)
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

    # -- the vault master key --------------------------------------------------------------

    @property
    def _vault_path(self) -> Path:
        return self._layout.keys / "vault.key"

    def vault_key(self, key_version: int, passphrase: bytes | None) -> bytes:
        """See :meth:`Signer.vault_key`."""
        return load_vault_key(
            self._vault_path, key_version, passphrase, self.home_kek, self.seal_gen
        )

    def adopt_vault_key(
        self, passphrase: bytes | None, limits: tuple[int, int]
    ) -> tuple[int, bytes]:
        """See :meth:`Signer.adopt_vault_key`."""
        return adopt_vault_key(self._vault_path, passphrase, limits, self.home_kek, self.seal_gen)

    def stage_vault_key(
        self, key_version: int, passphrase: bytes | None, limits: tuple[int, int]
    ) -> bytes:
        """See :meth:`Signer.stage_vault_key`."""
        pending = self._vault_path.with_name("vault.key.new")
        pending.unlink(missing_ok=True)  # a leftover of a rotation that never committed
        return write_vault_key(pending, key_version, passphrase, limits, self.home_kek)

    def commit_vault_key(self) -> None:
        """See :meth:`Signer.commit_vault_key`."""
        os.replace(self._vault_path.with_name("vault.key.new"), self._vault_path)

    def discard_vault_key(self) -> None:
        """See :meth:`Signer.discard_vault_key`."""
        self._vault_path.with_name("vault.key.new").unlink(missing_ok=True)
