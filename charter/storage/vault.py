"""Encrypted vault rows: secrets sealed with XChaCha20-Poly1305 under a master key.

Every version of every secret is one row of ``vault_versions``: a random 24-byte nonce and
the AEAD ciphertext of the value. The associated data is the canonical JSON of
``{"vault", "name", "version", "key_version"}`` behind a domain prefix, so a ciphertext only
opens in the row it was written for: swapping rows, replaying an old version under a new
number or moving a row to another home all fail to decrypt.

The master key (32 bytes) is kept by the home's signer (``Signer.vault_key``; the file store
keeps ``keys/vault.key``, 0600, created on first use and sealed when the home has a
passphrase), or is derived with Argon2id from a vault passphrase (the file then holds only
the salt and costs).
``vault_state.key_check`` seals a fixed text under the current key, so a wrong key is
reported as a wrong key and a tampered row as a tampered row; both fail closed.

Key rotation stages the next key (``vault.key.new``), re-encrypts every row in one
transaction, then commits the staged key; a crash between the commit and the rename is repaired on
the next open (the key file whose ``key_version`` matches the database wins).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import nacl.pwhash
import nacl.utils

from charter.clock import Clock, rfc3339
from charter.errors import ConfigError, InvalidInput, NotFound
from charter.evidence.jwk import b64url
from charter.keys import Signer
from charter.storage.db import Connection
from charter.storage.vault_sealing import ad, key_check, key_checks_out, open_sealed, seal

# Re-exported: the values callers know from here.
from charter.storage.vault_values import DEFAULT_USES_PER_MINUTE as DEFAULT_USES_PER_MINUTE
from charter.storage.vault_values import MAX_VALUE_BYTES as MAX_VALUE_BYTES
from charter.storage.vault_values import NAME_RE as NAME_RE
from charter.storage.vault_values import SecretInfo as SecretInfo
from charter.storage.vault_values import SecretValue as SecretValue
from charter.storage.vault_values import check_new_value

#: Argon2id (ops, mem) costs for a passphrase-derived master key ("moderate", as for the
#: owner key); tests lower them.
KDF_LIMITS = (nacl.pwhash.argon2id.OPSLIMIT_MODERATE, nacl.pwhash.argon2id.MEMLIMIT_MODERATE)


@dataclass(frozen=True, slots=True)
class SealedRow:
    """One stored version of a secret: its key version, nonce and ciphertext."""

    name: str
    version: int
    key_version: int
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class VaultState:
    """The vault's id, current master key version and key check."""

    vault_id: str
    key_version: int
    key_check: bytes


@dataclass(frozen=True, slots=True)
class Block:
    """An agent blocked from a secret, since ``blocked_at`` (RFC 3339, as stored)."""

    agent: str
    secret: str
    blocked_at: str


_INFO_COLUMNS = (
    "SELECT name, description, allowed_hosts, current_version, system, created_at,"
    " updated_at, rate_per_minute FROM vault_secrets"
)


class VaultRepo:
    """The vault tables: secrets and their sealed versions, the key state, blocks and uses.

    Values only: the sealing is :class:`Vault`'s. Writers expect the caller's transaction.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- secrets ---------------------------------------------------------------------------

    def find_kind(self, name: str) -> tuple[int, bool] | None:
        """``(last version, system)`` of a name ever stored (deleted ones too), or None."""
        row = self.conn.execute(
            "SELECT last_version, system FROM vault_secrets WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else (int(row[0]), bool(row[1]))

    def insert_secret(
        self,
        name: str,
        *,
        description: str,
        allowed_hosts: Iterable[str],
        system: bool,
        version: int,
        rate_per_minute: int | None,
        now: dt.datetime,
    ) -> None:
        """Add the name row of a new secret, ``version`` its current and last version."""
        stamp = rfc3339(now)
        self.conn.execute(
            "INSERT INTO vault_secrets(name, description, allowed_hosts, system,"
            " current_version, last_version, created_at, updated_at, rate_per_minute)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (
                *(name, description, json.dumps(list(allowed_hosts)), int(system), version),
                *(version, stamp, stamp, rate_per_minute),
            ),
        )

    def update_secret(
        self,
        name: str,
        *,
        description: str,
        allowed_hosts: Iterable[str],
        version: int,
        rate_per_minute: int | None,
        now: dt.datetime,
    ) -> None:
        """Replace a secret's description, hosts, rate and current (and last) version."""
        self.conn.execute(
            "UPDATE vault_secrets SET description=?, allowed_hosts=?, current_version=?,"
            " last_version=?, updated_at=?, rate_per_minute=? WHERE name=?",
            (
                *(description, json.dumps(list(allowed_hosts)), version, version),
                *(rfc3339(now), rate_per_minute, name),
            ),
        )

    def mark_deleted(self, name: str, *, now: dt.datetime) -> None:
        """Delete every version of ``name``; its name row stays (to keep ``last_version``)."""
        self.conn.execute("DELETE FROM vault_versions WHERE name = ?", (name,))
        self.conn.execute(
            "UPDATE vault_secrets SET current_version = NULL, description = '',"
            " allowed_hosts = '[]', updated_at = ? WHERE name = ?",
            (rfc3339(now), name),
        )

    def get(self, name: str) -> SecretInfo | None:
        """Metadata of a current (not deleted) secret, or None."""
        row = self.conn.execute(
            _INFO_COLUMNS + " WHERE name = ? AND current_version IS NOT NULL", (name,)
        ).fetchone()
        return None if row is None else self._info(row)

    def current_version(self, name: str) -> int | None:
        """The current version of a secret (one query), or None."""
        row = self.conn.execute(
            "SELECT current_version FROM vault_secrets"
            " WHERE name = ? AND current_version IS NOT NULL",
            (name,),
        ).fetchone()
        return None if row is None else int(row[0])

    def list_secrets(self, *, include_system: bool) -> list[SecretInfo]:
        """Metadata of every current secret, by name."""
        rows = self.conn.execute(
            _INFO_COLUMNS + " WHERE current_version IS NOT NULL"
            " AND (system = 0 OR ? = 1) ORDER BY name",
            (int(include_system),),
        ).fetchall()
        return [self._info(row) for row in rows]

    def list_allowed_hosts(self) -> list[tuple[str, tuple[str, ...]]]:
        """``(name, allowed hosts as stored)`` of every current secret, system ones included."""
        rows = self.conn.execute(
            "SELECT name, allowed_hosts FROM vault_secrets WHERE current_version IS NOT NULL"
        )
        return [(str(name), tuple(json.loads(hosts))) for name, hosts in rows]

    def versions(self, name: str) -> tuple[int, ...]:
        """The stored version numbers of ``name``, oldest first."""
        rows = self.conn.execute(
            "SELECT version FROM vault_versions WHERE name = ? ORDER BY version", (name,)
        )
        return tuple(int(r[0]) for r in rows)

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

    # -- sealed versions -------------------------------------------------------------------

    def insert_version(self, row: SealedRow, *, now: dt.datetime) -> None:
        """Store one sealed version."""
        self.conn.execute(
            "INSERT INTO vault_versions(name, version, key_version, nonce, ciphertext,"
            " created_at) VALUES (?,?,?,?,?,?)",
            (row.name, row.version, row.key_version, row.nonce, row.ciphertext, rfc3339(now)),
        )

    def get_version(self, name: str, version: int) -> SealedRow | None:
        """One sealed version, or None."""
        row = self.conn.execute(
            "SELECT key_version, nonce, ciphertext FROM vault_versions"
            " WHERE name = ? AND version = ?",
            (name, version),
        ).fetchone()
        if row is None:
            return None
        return SealedRow(name, version, int(row[0]), bytes(row[1]), bytes(row[2]))

    def list_sealed_with(self, key_version: int) -> list[SealedRow]:
        """Every version sealed under master key ``key_version``."""
        rows = self.conn.execute(
            "SELECT name, version, nonce, ciphertext FROM vault_versions WHERE key_version = ?",
            (key_version,),
        ).fetchall()
        return [SealedRow(n, int(v), key_version, bytes(nc), bytes(c)) for n, v, nc, c in rows]

    def reseal(self, row: SealedRow) -> None:
        """Replace the key version, nonce and ciphertext of a stored version."""
        self.conn.execute(
            "UPDATE vault_versions SET key_version=?, nonce=?, ciphertext=?"
            " WHERE name=? AND version=?",
            (row.key_version, row.nonce, row.ciphertext, row.name, row.version),
        )

    # -- the master key state --------------------------------------------------------------

    def get_state(self) -> VaultState | None:
        """The vault's state, or None before the first secret is stored."""
        row = self.conn.execute(
            "SELECT vault_id, key_version, key_check FROM vault_state WHERE id = 1"
        ).fetchone()
        return None if row is None else VaultState(str(row[0]), int(row[1]), bytes(row[2]))

    def insert_state(self, state: VaultState) -> None:
        """Create the vault's state (first use)."""
        self.conn.execute(
            "INSERT INTO vault_state(id, vault_id, key_version, key_check) VALUES (1, ?, ?, ?)",
            (state.vault_id, state.key_version, state.key_check),
        )

    def set_key(self, key_version: int, check: bytes) -> None:
        """Record a new master key version and its key check."""
        self.conn.execute(
            "UPDATE vault_state SET key_version=?, key_check=? WHERE id=1", (key_version, check)
        )

    # -- blocks and uses (charter.tools.vault.limits) --------------------------------------

    def find_block(self, agent: str, secret: str) -> str | None:
        """Since when ``agent`` is blocked from ``secret`` (RFC 3339, as stored), or None."""
        row = self.conn.execute(
            "SELECT blocked_at FROM vault_blocks WHERE agent = ? AND secret = ?", (agent, secret)
        ).fetchone()
        return None if row is None else str(row[0])

    def insert_block(self, agent: str, secret: str, *, now: dt.datetime) -> bool:
        """Block ``agent`` from ``secret``; False when it already was (the first time stays)."""
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO vault_blocks(agent, secret, blocked_at) VALUES (?,?,?)",
            (agent, secret, rfc3339(now)),
        )
        return cur.rowcount > 0

    def delete_block(self, agent: str, secret: str) -> bool:
        """Lift a block; True if there was one."""
        cur = self.conn.execute(
            "DELETE FROM vault_blocks WHERE agent = ? AND secret = ?", (agent, secret)
        )
        return cur.rowcount > 0

    def list_blocks(self) -> list[Block]:
        """Every block, oldest first."""
        rows = self.conn.execute(
            "SELECT agent, secret, blocked_at FROM vault_blocks ORDER BY blocked_at"
        )
        return [Block(str(a), str(s), str(at)) for a, s, at in rows]

    def count_uses_since(self, agent: str, secret: str, since: dt.datetime) -> int:
        """Uses of ``secret`` by ``agent`` after ``since``."""
        (count,) = self.conn.execute(
            "SELECT count(*) FROM vault_uses WHERE agent = ? AND secret = ? AND used_at > ?",
            (agent, secret, rfc3339(since)),
        ).fetchone()
        return int(count)

    def forget_uses_until(self, agent: str, secret: str, until: dt.datetime) -> None:
        """Delete the uses of ``secret`` by ``agent`` at or before ``until``."""
        self.conn.execute(
            "DELETE FROM vault_uses WHERE agent = ? AND secret = ? AND used_at <= ?",
            (agent, secret, rfc3339(until)),
        )

    def insert_use(self, agent: str, secret: str, *, now: dt.datetime) -> None:
        """Record one use."""
        self.conn.execute(
            "INSERT INTO vault_uses(agent, secret, used_at) VALUES (?,?,?)",
            (agent, secret, rfc3339(now)),
        )


class Tx(Protocol):
    """What the vault needs of a unit of work (``charter.storage.ports.Tx`` has it)."""

    @property
    def vault(self) -> VaultRepo: ...


class Vault:
    """The secrets vault of one Charter home (low-level: no scopes, no ledger).

    ``put`` stores a new version of a secret (the first call creates the master key file);
    ``get`` decrypts one; ``delete`` removes a secret and all its versions; ``list`` shows
    metadata only. System secrets (``system=True``, names starting with ``charter:``, e.g.
    ``charter:mail-password``) hold Charter's own credentials: ``list`` hides them unless
    asked, and the agent-facing services refuse them. Owner-facing services record the
    ledger events; this class only seals and opens.

    Every method runs inside a unit of work (``tx``, :mod:`charter.storage.ports`): its
    reads and writes are one transaction. The master key comes from the signer seam and is
    kept here once checked, so one instance can serve many units of work.

    Errors: :class:`InvalidInput` for bad names, values or hosts; :class:`NotFound` for an
    unknown secret; :class:`ConfigError` for a missing or wrong master key or a row that
    fails authentication (never a fallback).
    """

    def __init__(self, signer: Signer, clock: Clock, *, passphrase: bytes | None = None) -> None:
        self.signer = signer
        self.clock = clock
        self._passphrase = passphrase
        self._keys: dict[int, bytes] = {}
        self._staged: tuple[int, bytes, bytes | None] = (0, b"", None)

    # -- storing ---------------------------------------------------------------------------

    def put(
        self,
        tx: Tx,
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
        hosts = check_new_value(name, value, description, allowed_hosts, rate_per_minute, system)
        now = self.clock.now()
        repo = tx.vault
        vault_id, key_version, key = self._current_key(repo, create=True)
        kind = repo.find_kind(name)
        if kind is not None and kind[1] != system:
            raise InvalidInput(f"secret {name!r} exists with a different kind (system)")
        version = 1 if kind is None else kind[0] + 1
        nonce, ciphertext = seal(key, value, ad(vault_id, name, version, key_version))
        if kind is None:
            repo.insert_secret(
                name,
                description=description,
                allowed_hosts=hosts,
                system=system,
                version=version,
                rate_per_minute=rate_per_minute,
                now=now,
            )
        else:
            repo.update_secret(
                name,
                description=description,
                allowed_hosts=hosts,
                version=version,
                rate_per_minute=rate_per_minute,
                now=now,
            )
        repo.insert_version(SealedRow(name, version, key_version, nonce, ciphertext), now=now)
        return version

    def delete(self, tx: Tx, name: str) -> SecretInfo:
        """Delete ``name`` and every version of it; return what was deleted.

        Raises:
            NotFound: unknown secret.
        """
        info = self.info(tx, name)
        tx.vault.mark_deleted(name, now=self.clock.now())
        return info

    # -- reading ---------------------------------------------------------------------------

    def info(self, tx: Tx, name: str) -> SecretInfo:
        """Metadata of one secret (never its value).

        Raises:
            NotFound: unknown (or deleted) secret.
        """
        info = tx.vault.get(name)
        if info is None:
            raise NotFound(f"no secret named {name!r}")
        return info

    def list(self, tx: Tx, *, include_system: bool = False) -> list[SecretInfo]:
        """Metadata of every secret, by name (system secrets only when asked)."""
        return tx.vault.list_secrets(include_system=include_system)

    def get(self, tx: Tx, name: str, version: int | None = None) -> SecretValue:
        """Decrypt ``name`` (its current version unless ``version`` is given).

        Raises:
            NotFound: unknown secret or version.
            ConfigError: wrong or missing master key, or the row fails authentication.
        """
        repo = tx.vault
        if version is None:
            version = repo.current_version(name)
            if version is None:
                raise NotFound(f"no secret named {name!r}")
        row = repo.get_version(name, version)
        if row is None:
            raise NotFound(f"secret {name!r} has no version {version}")
        vault_id, current_version, key = self._current_key(repo, create=False)
        if row.key_version != current_version:
            raise ConfigError(
                f"secret {name!r} version {version} was not re-encrypted under the current "
                "master key: the vault is inconsistent"
            )
        value = open_sealed(
            key, row.nonce, row.ciphertext, ad(vault_id, name, version, row.key_version)
        )
        if value is None:
            raise ConfigError(
                f"secret {name!r} version {version} failed authentication: the vault row was "
                "altered or moved (refusing to use it)"
            )
        return SecretValue(name, version, value)

    # -- the master key --------------------------------------------------------------------

    def reencrypt_all(self, tx: Tx, new_passphrase: bytes | None) -> tuple[int, int]:
        """Re-encrypt every stored version under a fresh master key (inside ``tx``).

        With ``new_passphrase`` the new key is derived from it (Argon2id); otherwise it is
        random. The new key is staged with the signer: after ``tx`` commits call
        :meth:`finish_rotation`, and if it fails :meth:`abandon_rotation`. Returns
        ``(new key version, rows)``.

        Raises:
            ConfigError: the current key is wrong or missing, or a row fails authentication
                (nothing is changed).
        """
        new_version, new_key, count = self._reencrypt_all(tx.vault, new_passphrase)
        self._staged = (new_version, new_key, new_passphrase)
        return new_version, count

    def finish_rotation(self) -> None:
        """The rotation's transaction committed: swap the key file, keep the new key."""
        new_version, new_key, new_passphrase = self._staged
        self.signer.commit_vault_key()
        self._keys = {new_version: new_key}
        self._passphrase = new_passphrase

    def abandon_rotation(self) -> None:
        """The rotation's transaction failed: drop the staged key."""
        self.signer.discard_vault_key()

    def _reencrypt_all(
        self, repo: VaultRepo, new_passphrase: bytes | None
    ) -> tuple[int, bytes, int]:
        vault_id, old_version, old_key = self._current_key(repo, create=True)
        new_version = old_version + 1
        new_key = self.signer.stage_vault_key(new_version, new_passphrase, KDF_LIMITS)
        rows = repo.list_sealed_with(old_version)
        for row in rows:
            name, version = row.name, row.version
            plain = open_sealed(
                old_key, row.nonce, row.ciphertext, ad(vault_id, name, version, old_version)
            )
            if plain is None:
                raise ConfigError(
                    f"secret {name!r} version {version} failed authentication; "
                    "the master key was not rotated"
                )
            new_nonce, sealed = seal(new_key, plain, ad(vault_id, name, version, new_version))
            repo.reseal(SealedRow(name, version, new_version, new_nonce, sealed))
        repo.set_key(new_version, key_check(vault_id, new_version, new_key))
        return new_version, new_key, len(rows)

    def _current_key(self, repo: VaultRepo, *, create: bool) -> tuple[str, int, bytes]:
        """(vault id, key version, key) of the current master key, checked against the DB."""
        state = repo.get_state()
        if state is None:
            if not create:
                raise ConfigError("the vault holds no secrets yet")
            return self._create_state(repo)
        key = self._keys.get(state.key_version)
        if key is None:
            key = self._load_key(state.key_version)
            if not key_checks_out(state.vault_id, state.key_version, key, state.key_check):
                raise ConfigError(
                    "wrong vault master key (or passphrase): keys/vault.key does not open this "
                    "vault; refusing to read or write secrets"
                )
            self._keys = {state.key_version: key}
        return state.vault_id, state.key_version, key

    def _create_state(self, repo: VaultRepo) -> tuple[str, int, bytes]:
        """First use: create (or adopt) the key file and the vault's state row."""
        key_version, key = self.signer.adopt_vault_key(self._passphrase, KDF_LIMITS)
        vault_id = b64url(nacl.utils.random(16))
        repo.insert_state(VaultState(vault_id, key_version, key_check(vault_id, key_version, key)))
        self._keys = {key_version: key}
        return vault_id, key_version, key

    def _load_key(self, key_version: int) -> bytes:
        return self.signer.vault_key(key_version, self._passphrase)
