"""Encrypted vault rows: secrets sealed with XChaCha20-Poly1305 under a master key.

Every version of every secret is one row of ``vault_versions``: a random 24-byte nonce and
the AEAD ciphertext of the value. The associated data is the canonical JSON of
``{"vault", "name", "version", "key_version"}`` behind a domain prefix, so a ciphertext only
opens in the row it was written for: swapping rows, replaying an old version under a new
number or moving a row to another home all fail to decrypt.

The master key (32 bytes) lives in ``keys/vault.key`` (0600), created on first use, or is
derived with Argon2id from a passphrase (the file then holds only the salt and costs).
``vault_state.key_check`` seals a fixed text under the current key, so a wrong key is
reported as a wrong key and a tampered row as a tampered row; both fail closed.

Key rotation writes ``vault.key.new``, re-encrypts every row in one transaction, then
renames the new file over the old; a crash between the commit and the rename is repaired on
the next open (the key file whose ``key_version`` matches the database wins).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import nacl.bindings as sodium
import nacl.exceptions
import nacl.pwhash
import nacl.utils

from charter.clock import rfc3339
from charter.errors import ConfigError, InvalidInput, NotFound
from charter.evidence.canonical import canonical_json
from charter.evidence.jwk import b64url, b64url_decode
from charter.keys.files import write_private_json
from charter.storage.db import read_snapshot, transaction
from charter.storage.vault_hosts import normalize_allowed

if TYPE_CHECKING:
    from charter.home import Home

#: Names an owner may give a secret (also safe inside a ``secret:use:<glob>`` scope).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
#: Prefix of system secrets: Charter's own credentials, never listed or granted to agents.
SYSTEM_PREFIX = "charter:"
MAX_VALUE_BYTES = 64 * 1024
MAX_DESCRIPTION_CHARS = 500
MAX_ALLOWED_HOSTS = 50
#: Uses of one secret by one agent per minute (``secret_http_request``) unless set per secret.
DEFAULT_USES_PER_MINUTE = 60
MAX_USES_PER_MINUTE = 10_000

_AD_PREFIX = b"charter-vault-v1\x00"
_KEY_CHECK_TEXT = b"charter vault key check v1"
_KEY_KIND = "charter-vault-key"

#: Argon2id (ops, mem) costs for a passphrase-derived master key ("moderate", as for the
#: owner key); tests lower them.
KDF_LIMITS = (nacl.pwhash.argon2id.OPSLIMIT_MODERATE, nacl.pwhash.argon2id.MEMLIMIT_MODERATE)


class SecretValue:
    """A decrypted secret. ``repr`` and ``str`` never show it; call :meth:`reveal`."""

    __slots__ = ("_value", "name", "version")

    def __init__(self, name: str, version: int, value: bytes) -> None:
        self.name = name
        self.version = version
        self._value = value

    def reveal(self) -> bytes:
        """The secret bytes. Every caller is a place the value can leak from: keep them few."""
        return self._value

    def reveal_text(self) -> str:
        """The secret as text.

        Raises:
            InvalidInput: if the value is not UTF-8.
        """
        try:
            return self._value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"secret {self.name!r} is binary, not UTF-8 text") from None

    def __repr__(self) -> str:
        return f"SecretValue(name={self.name!r}, version={self.version}, value=[REDACTED])"

    def __str__(self) -> str:
        return "[REDACTED]"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a SecretValue cannot be pickled")


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """What may be shown about a secret: everything but its value."""

    name: str
    description: str
    allowed_hosts: tuple[str, ...]
    version: int
    versions: tuple[int, ...]
    system: bool
    created_at: str
    updated_at: str
    #: Uses per agent per minute through ``secret_http_request`` (None: the default, 60).
    rate_per_minute: int | None = None


def is_system_name(name: str) -> bool:
    """True for the names of Charter's own (system) secrets."""
    return name.startswith(SYSTEM_PREFIX)


def validate_name(name: str, *, system: bool = False) -> str:
    """Return ``name`` if it is a valid secret name of its kind.

    Raises:
        InvalidInput: naming what is allowed.
    """
    bare = name.removeprefix(SYSTEM_PREFIX) if system else name
    if system and not is_system_name(name):
        raise InvalidInput(f"system secret names start with {SYSTEM_PREFIX!r}")
    if not NAME_RE.match(bare):
        raise InvalidInput(
            f"invalid secret name {name!r}: use 1-100 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


class Vault:
    """The secrets vault of one Charter home (low-level: no scopes, no ledger).

    ``put`` stores a new version of a secret (the first call creates the master key file);
    ``get`` decrypts one; ``delete`` removes a secret and all its versions; ``list`` shows
    metadata only. System secrets (``system=True``, names starting with ``charter:``, e.g.
    ``charter:mail-password``) hold Charter's own credentials: ``list`` hides them unless
    asked, and the agent-facing services refuse them. Owner-facing services record the
    ledger events; this class only stores.

    Errors: :class:`InvalidInput` for bad names, values or hosts; :class:`NotFound` for an
    unknown secret; :class:`ConfigError` for a missing or wrong master key or a row that
    fails authentication (never a fallback).
    """

    def __init__(self, home: Home, *, passphrase: bytes | None = None) -> None:
        self.home = home
        self.conn: sqlite3.Connection = home.conn
        self._passphrase = passphrase
        self._keys: dict[int, bytes] = {}
        # NOTE: rows freed by rm/rotation are zeroed, so old ciphertexts do not linger.
        self.conn.execute("PRAGMA secure_delete=ON")

    @property
    def key_path(self) -> Path:
        """The master key file (``keys/vault.key``)."""
        return self.home.layout.keys / "vault.key"

    # -- storing ---------------------------------------------------------------------------

    def put(
        self,
        name: str,
        value: bytes,
        *,
        description: str = "",
        allowed_hosts: Iterable[str] = (),
        system: bool = False,
        rate_per_minute: int | None = None,
    ) -> int:
        """Store ``value`` as the new current version of ``name``; return its version number.

        Description, allowed hosts and ``rate_per_minute`` (uses per agent per minute; None:
        the default, :data:`DEFAULT_USES_PER_MINUTE`) are replaced by the given ones. Older
        versions are kept (``get(name, version=...)``) until the secret is deleted.

        Raises:
            InvalidInput: bad name, empty or oversized value, bad host or description, or a
                system/agent name mismatch with an existing secret.
        """
        if not system and is_system_name(name):
            raise InvalidInput(f"names starting with {SYSTEM_PREFIX!r} are reserved for Charter")
        validate_name(name, system=system)
        if not value:
            raise InvalidInput("a secret value must be non-empty bytes")
        if len(value) > MAX_VALUE_BYTES:
            raise InvalidInput(f"a secret value is limited to {MAX_VALUE_BYTES} bytes")
        if len(description) > MAX_DESCRIPTION_CHARS or any(ord(c) < 32 for c in description):
            raise InvalidInput(
                f"a description is one line of at most {MAX_DESCRIPTION_CHARS} characters"
            )
        hosts = sorted({normalize_allowed(h) for h in allowed_hosts})
        if len(hosts) > MAX_ALLOWED_HOSTS:
            raise InvalidInput(f"at most {MAX_ALLOWED_HOSTS} allowed hosts per secret")
        if rate_per_minute is not None and not 0 < rate_per_minute <= MAX_USES_PER_MINUTE:
            raise InvalidInput(f"the rate must be 1-{MAX_USES_PER_MINUTE} uses per minute")
        now = rfc3339(self.home.clock.now())
        with transaction(self.conn):
            vault_id, key_version, key = self._current_key(create=True)
            row = self.conn.execute(
                "SELECT last_version, system FROM vault_secrets WHERE name = ?", (name,)
            ).fetchone()
            if row is not None and bool(row[1]) != system:
                raise InvalidInput(f"secret {name!r} exists with a different kind (system)")
            version = 1 if row is None else int(row[0]) + 1
            nonce, ciphertext = _seal(key, value, _ad(vault_id, name, version, key_version))
            if row is None:
                self.conn.execute(
                    "INSERT INTO vault_secrets(name, description, allowed_hosts, system,"
                    " current_version, last_version, created_at, updated_at, rate_per_minute)"
                    " VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        *(name, description, json.dumps(hosts), int(system), version, version),
                        *(now, now, rate_per_minute),
                    ),
                )
            else:
                self.conn.execute(
                    "UPDATE vault_secrets SET description=?, allowed_hosts=?, current_version=?,"
                    " last_version=?, updated_at=?, rate_per_minute=? WHERE name=?",
                    (description, json.dumps(hosts), version, version, now, rate_per_minute, name),
                )
            self.conn.execute(
                "INSERT INTO vault_versions(name, version, key_version, nonce, ciphertext,"
                " created_at) VALUES (?,?,?,?,?,?)",
                (name, version, key_version, nonce, ciphertext, now),
            )
        return version

    def delete(self, name: str) -> SecretInfo:
        """Delete ``name`` and every version of it; return what was deleted.

        Raises:
            NotFound: unknown secret.
        """
        with transaction(self.conn):
            info = self.info(name)
            self.conn.execute("DELETE FROM vault_versions WHERE name = ?", (name,))
            # The name row stays (without a current version) to keep `last_version`.
            self.conn.execute(
                "UPDATE vault_secrets SET current_version = NULL, description = '',"
                " allowed_hosts = '[]', updated_at = ? WHERE name = ?",
                (rfc3339(self.home.clock.now()), name),
            )
        return info

    # -- reading ---------------------------------------------------------------------------

    def info(self, name: str) -> SecretInfo:
        """Metadata of one secret (never its value).

        Raises:
            NotFound: unknown (or deleted) secret.
        """
        row = self.conn.execute(
            "SELECT name, description, allowed_hosts, current_version, system, created_at,"
            " updated_at, rate_per_minute FROM vault_secrets"
            " WHERE name = ? AND current_version IS NOT NULL",
            (name,),
        ).fetchone()
        if row is None:
            raise NotFound(f"no secret named {name!r}")
        return self._info(row)

    def _current_version(self, name: str) -> int:
        """The current version of ``name`` (one query; :meth:`info` also lists versions).

        Raises:
            NotFound: unknown (or deleted) secret.
        """
        row = self.conn.execute(
            "SELECT current_version FROM vault_secrets"
            " WHERE name = ? AND current_version IS NOT NULL",
            (name,),
        ).fetchone()
        if row is None:
            raise NotFound(f"no secret named {name!r}")
        return int(row[0])

    def list(self, *, include_system: bool = False) -> list[SecretInfo]:
        """Metadata of every secret, by name (system secrets only when asked)."""
        rows = self.conn.execute(
            "SELECT name, description, allowed_hosts, current_version, system, created_at,"
            " updated_at, rate_per_minute FROM vault_secrets WHERE current_version IS NOT NULL"
            " AND (system = 0 OR ?) ORDER BY name",
            (int(include_system),),
        ).fetchall()
        return [self._info(row) for row in rows]

    def get(self, name: str, version: int | None = None) -> SecretValue:
        """Decrypt ``name`` (its current version unless ``version`` is given).

        Raises:
            NotFound: unknown secret or version.
            ConfigError: wrong or missing master key, or the row fails authentication.
        """
        with read_snapshot(self.conn):  # a rotation may commit between the reads
            if version is None:
                version = self._current_version(name)
            row = self.conn.execute(
                "SELECT key_version, nonce, ciphertext FROM vault_versions"
                " WHERE name = ? AND version = ?",
                (name, version),
            ).fetchone()
            if row is None:
                raise NotFound(f"secret {name!r} has no version {version}")
            key_version = int(row[0])
            vault_id, current_version, key = self._current_key(create=False)
        if key_version != current_version:
            raise ConfigError(
                f"secret {name!r} version {version} was not re-encrypted under the current "
                "master key: the vault is inconsistent"
            )
        value = _open(key, bytes(row[1]), bytes(row[2]), _ad(vault_id, name, version, key_version))
        if value is None:
            raise ConfigError(
                f"secret {name!r} version {version} failed authentication: the vault row was "
                "altered or moved (refusing to use it)"
            )
        return SecretValue(name, version, value)

    # -- the master key --------------------------------------------------------------------

    def rotate_master_key(
        self,
        *,
        new_passphrase: bytes | None = None,
        on_commit: Callable[[int, int], None] | None = None,
    ) -> tuple[int, int]:
        """Re-encrypt every stored version under a fresh master key, in one transaction.

        With ``new_passphrase`` the new key is derived from it (Argon2id); otherwise it is
        random and stored in ``keys/vault.key``. ``on_commit(key_version, rows)`` runs inside
        the transaction (e.g. to record a ledger event). Returns ``(new key version, rows)``.
        Must not be called inside another transaction: the key file is swapped after commit.

        Raises:
            ConfigError: the current key is wrong or missing, or a row fails authentication
                (nothing is changed).
        """
        if self.conn.in_transaction:
            raise RuntimeError("rotate_master_key must run in its own transaction")
        pending = self.key_path.with_name("vault.key.new")
        try:
            with transaction(self.conn):
                new_version, new_key, count = self._reencrypt_all(pending, new_passphrase)
                if on_commit is not None:
                    on_commit(new_version, count)
        except BaseException:
            pending.unlink(missing_ok=True)
            raise
        os.replace(pending, self.key_path)
        self._keys = {new_version: new_key}
        self._passphrase = new_passphrase
        return new_version, count

    def _reencrypt_all(self, pending: Path, new_passphrase: bytes | None) -> tuple[int, bytes, int]:
        vault_id, old_version, old_key = self._current_key(create=True)
        new_version = old_version + 1
        pending.unlink(missing_ok=True)  # a leftover of a rotation that never committed
        new_key = _write_key_file(pending, new_version, new_passphrase)
        rows = self.conn.execute(
            "SELECT name, version, nonce, ciphertext FROM vault_versions WHERE key_version = ?",
            (old_version,),
        ).fetchall()
        for name, version, nonce, ciphertext in rows:
            plain = _open(
                old_key, bytes(nonce), bytes(ciphertext), _ad(vault_id, name, version, old_version)
            )
            if plain is None:
                raise ConfigError(
                    f"secret {name!r} version {version} failed authentication; "
                    "the master key was not rotated"
                )
            new_nonce, sealed = _seal(new_key, plain, _ad(vault_id, name, version, new_version))
            self.conn.execute(
                "UPDATE vault_versions SET key_version=?, nonce=?, ciphertext=?"
                " WHERE name=? AND version=?",
                (new_version, new_nonce, sealed, name, version),
            )
        self.conn.execute(
            "UPDATE vault_state SET key_version=?, key_check=? WHERE id=1",
            (new_version, _key_check(vault_id, new_version, new_key)),
        )
        return new_version, new_key, len(rows)

    def _current_key(self, *, create: bool) -> tuple[str, int, bytes]:
        """(vault id, key version, key) of the current master key, checked against the DB."""
        state = self.conn.execute(
            "SELECT vault_id, key_version, key_check FROM vault_state WHERE id = 1"
        ).fetchone()
        if state is None:
            if not create:
                raise ConfigError("the vault holds no secrets yet")
            return self._create_state()
        vault_id, key_version, key_check = str(state[0]), int(state[1]), bytes(state[2])
        key = self._keys.get(key_version)
        if key is None:
            key = self._load_key(key_version)
            if (
                _open(key, key_check[:24], key_check[24:], _key_check_ad(vault_id, key_version))
                is None
            ):
                raise ConfigError(
                    "wrong vault master key (or passphrase): keys/vault.key does not open this "
                    "vault; refusing to read or write secrets"
                )
            self._keys = {key_version: key}
        return vault_id, key_version, key

    def _create_state(self) -> tuple[str, int, bytes]:
        """First use: create (or adopt) the key file and the vault's state row."""
        if self.key_path.exists():
            doc = _read_key_doc(self.key_path)
            key_version = int(doc.get("key_version", 0))
            key = self._key_from_doc(doc)
        else:
            key_version = 1
            key = _write_key_file(self.key_path, key_version, self._passphrase)
        vault_id = b64url(nacl.utils.random(16))
        self.conn.execute(
            "INSERT INTO vault_state(id, vault_id, key_version, key_check) VALUES (1, ?, ?, ?)",
            (vault_id, key_version, _key_check(vault_id, key_version, key)),
        )
        self._keys = {key_version: key}
        return vault_id, key_version, key

    def _load_key(self, key_version: int) -> bytes:
        pending = self.key_path.with_name("vault.key.new")
        doc = _read_key_doc(self.key_path) if self.key_path.exists() else None
        if (doc is None or doc.get("key_version") != key_version) and pending.exists():
            pending_doc = _read_key_doc(pending)
            if pending_doc.get("key_version") == key_version:
                # A rotation committed but crashed before renaming its key file: finish it
                # (another process may be doing the same).
                with contextlib.suppress(FileNotFoundError):
                    os.replace(pending, self.key_path)
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
        return self._key_from_doc(doc)

    def _key_from_doc(self, doc: dict[str, Any]) -> bytes:
        try:
            if "kdf" in doc:
                if not self._passphrase:
                    raise ConfigError(
                        "the vault master key is derived from a passphrase, and none was given"
                    )
                kdf = doc["kdf"]
                return bytes(
                    nacl.pwhash.argon2id.kdf(
                        32,
                        self._passphrase,
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

    def _info(self, row: Any) -> SecretInfo:
        return SecretInfo(
            name=row[0],
            description=row[1],
            allowed_hosts=tuple(json.loads(row[2])),
            version=int(row[3]),
            versions=self.versions(row[0]),
            system=bool(row[4]),
            created_at=row[5],
            updated_at=row[6],
            rate_per_minute=None if row[7] is None else int(row[7]),
        )

    def versions(self, name: str) -> tuple[int, ...]:
        """The stored version numbers of ``name``, oldest first."""
        rows = self.conn.execute(
            "SELECT version FROM vault_versions WHERE name = ? ORDER BY version", (name,)
        )
        return tuple(int(r[0]) for r in rows)


def _ad(vault_id: str, name: str, version: int, key_version: int) -> bytes:
    """Associated data binding a ciphertext to its vault, name, version and key version."""
    return _AD_PREFIX + canonical_json(
        {"vault": vault_id, "name": name, "version": version, "key_version": key_version}
    )


def _key_check_ad(vault_id: str, key_version: int) -> bytes:
    return _AD_PREFIX + canonical_json(
        {"vault": vault_id, "purpose": "key-check", "key_version": key_version}
    )


def _seal(key: bytes, plain: bytes, ad: bytes) -> tuple[bytes, bytes]:
    nonce = nacl.utils.random(sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
    return nonce, sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plain, ad, nonce, key)


def _open(key: bytes, nonce: bytes, ciphertext: bytes, ad: bytes) -> bytes | None:
    """Decrypt and authenticate, or None: callers turn None into their own clear error."""
    try:
        return bytes(sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, ad, nonce, key))
    except nacl.exceptions.CryptoError:
        return None


def _key_check(vault_id: str, key_version: int, key: bytes) -> bytes:
    nonce, sealed = _seal(key, _KEY_CHECK_TEXT, _key_check_ad(vault_id, key_version))
    return nonce + sealed


def _write_key_file(path: Path, key_version: int, passphrase: bytes | None) -> bytes:
    """Create a 0600 key file (exclusively) and return the 32-byte key it gives."""
    doc: dict[str, Any] = {"kind": _KEY_KIND, "key_version": key_version}
    if passphrase:
        ops, mem = KDF_LIMITS
        salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        key = bytes(nacl.pwhash.argon2id.kdf(32, passphrase, salt, opslimit=ops, memlimit=mem))
        doc["kdf"] = {"alg": "argon2id", "salt": b64url(salt), "ops": ops, "mem": mem}
    else:
        key = nacl.utils.random(32)
        doc["key"] = b64url(key)
    write_private_json(path, doc)
    return key


def _read_key_doc(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{path.name} cannot be read: {exc.strerror}") from exc
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"{path.name} is corrupt") from None
    if not isinstance(doc, dict) or doc.get("kind") != _KEY_KIND:
        raise ConfigError(f"{path.name} is not a Charter vault key")
    return doc
