"""A Charter home: its folder, database, keys and ledger, opened once per process."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from charter.clock import Clock, SystemClock, rfc3339
from charter.config import (
    HomeLayout,
    Settings,
    check_database_url,
    read_database_url,
    write_database_url,
)
from charter.errors import ConfigError, InvalidInput
from charter.evidence.canonical import canonical_json
from charter.evidence.charters import TRUST_DOMAIN, owner_handle
from charter.evidence.entries import Entry, LedgerIdentity
from charter.evidence.jwk import Ed25519Signer, b64url_decode, public_jwk, thumbprint
from charter.keys import LOG, OWNER, FileSigner, KeyHandle, Signer, issuer_ref
from charter.keys.files import read_passphrase_file
from charter.keys.signer import DEFAULT_OWNER
from charter.storage.backends import open_store
from charter.storage.ports import Draft, Store, Tx

T = TypeVar("T")

_EMAIL = r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}$"
#: How long an owner certificate is valid (renew by removing and adding the owner again).
OWNER_CERT_VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True)
class ActingOwner:
    """Who signs an owner action in an organization home: a certified owner and their key, or
    the organization key itself (``owner_id`` then the organization name)."""

    owner_id: str
    key: Ed25519Signer
    is_org: bool = False


def _token_signer(layout: HomeLayout) -> Signer | None:
    """The PKCS#11 signer the home's config names (``pkcs11.configured_signer``), or None;
    the PKCS#11 code is imported only for a home that has that config (a hook starts fast)."""
    try:
        layout.key_store.stat()
    except FileNotFoundError:
        return None
    except OSError:
        pass  # configured_signer says why it cannot be read
    from charter.keys import pkcs11

    return pkcs11.configured_signer(layout)


def check_email(owner: str) -> str:
    """Return ``owner`` if it is an email address.

    Raises:
        InvalidInput: otherwise.
    """
    if not re.match(_EMAIL, owner):
        raise InvalidInput(f"owner must be an email address, got {owner!r}")
    return owner


@dataclass
class Home:
    """An open Charter home."""

    settings: Settings
    #: Everything the home stores, behind the storage ports (charter.storage.ports).
    store: Store
    meta: dict[str, str]
    clock: Clock
    #: Every private-key operation of this home goes through its signer (charter.keys).
    signer: Signer
    log_key: KeyHandle
    _owner_key: KeyHandle | None = field(default=None, repr=False)

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    async def open(
        cls, settings: Settings, clock: Clock | None = None, *, inline: bool = False
    ) -> Home:
        """Open an existing home.

        ``inline``: a SQLite home's units of work run on the caller's thread, never
        suspending (:mod:`charter.storage.inline`: for a one-shot command, not a server).

        Raises:
            ConfigError: if the home is missing, unsafe, or its database or keys are corrupt.
        """
        layout = settings.layout
        if settings.database_url is None:  # a home made by `charter init --database URL`
            settings = replace(settings, database_url=read_database_url(layout.root))
        layout.check(external_db=settings.database_url is not None)
        store = await open_store(settings, inline=inline)
        try:
            meta = await store.read(lambda tx: tx.meta.all())
            if "origin" not in meta:
                raise ConfigError(
                    "database has no ledger identity: was `charter init` interrupted?"
                )
            signer: Signer = _token_signer(layout) or FileSigner(
                layout, passphrase_file=settings.passphrase_file
            )
            log_key = KeyHandle.of(signer, LOG)
            if public_jwk(log_key.public_key)["x"] != json.loads(meta["log_key"])["x"]:
                raise ConfigError("log.key does not match the ledger's log key")
        except BaseException:
            await store.close()
            raise
        home = cls(settings, store, meta, clock or SystemClock(), signer, log_key)
        store.bind(home.identity, home.clock, log_key)
        return home

    @classmethod
    async def init(
        cls,
        settings: Settings,
        *,
        owner: str,
        trust_domain: str = "charter.local",
        passphrase: bytes | None = None,
        clock: Clock | None = None,
        cheap_kdf: bool = False,
        key_store: str | None = None,
        database: str | None = None,
        organization: str | None = None,
    ) -> Home:
        """Create a new home: folders, database, owner/issuer/log keys and ledger entry 0.

        ``organization``: make an organization home (AUDIT-FORMAT §13): the owner key slot
        holds the organization key, and ``owner`` is certified as its first owner with a key
        of their own kept in the home (the default owner).

        ``key_store``: an RFC 7512 ``pkcs11:`` URI to make the keys inside that token instead
        of files (:mod:`charter.keys.pkcs11`). ``database``: a ``postgresql://`` URL kept in
        the home's config file (else ``settings.database_url``, else the SQLite file); the
        database must not hold a ledger yet.

        Raises:
            ConfigError: if a home already exists there, or the key store is unusable.
            InvalidInput: for a malformed owner email or trust domain.
        """
        check_email(owner)
        if organization is not None:
            from charter.evidence.owners import validate_org_name

            validate_org_name(organization)
        if not TRUST_DOMAIN.match(trust_domain):
            raise InvalidInput(f"invalid trust domain {trust_domain!r}")
        clock = clock or SystemClock()
        layout = settings.layout
        if layout.db.exists() or layout.keys.exists():
            raise ConfigError(
                f"a Charter home already exists at {layout.root}; refusing to overwrite it"
            )
        if database is not None:
            settings = replace(settings, database_url=check_database_url(database))
        store: Store | None = None
        if settings.database_url is not None:  # reachable and empty, before making anything
            store = await open_store(settings, create=True)
        try:
            return await cls._init(
                settings,
                store,
                owner,
                trust_domain,
                passphrase,
                clock,
                cheap_kdf,
                key_store,
                keep_url=database is not None,
                organization=organization,
            )
        except BaseException:
            if store is not None:
                await store.close()
            raise

    @classmethod
    async def _init(
        cls,
        settings: Settings,
        store: Store | None,
        owner: str,
        trust_domain: str,
        passphrase: bytes | None,
        clock: Clock,
        cheap_kdf: bool,
        key_store: str | None,
        *,
        keep_url: bool,
        organization: str | None = None,
    ) -> Home:
        from charter.keys import pkcs11 as pkcs11_store

        layout = settings.layout
        token = None
        if key_store is not None:  # PKCS#11: check token and PIN before making anything
            if passphrase is not None:
                raise ConfigError("keys in a PKCS#11 token are guarded by its PIN: no passphrase")
            token = pkcs11_store.for_home(pkcs11_store.Pkcs11Signer.from_uri(key_store), layout)
            token.check()
            if token.exists(OWNER) or token.exists(LOG):
                raise ConfigError(
                    f"{token.describe()} already holds a Charter home's keys; refusing to mix them"
                )
        layout.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(layout.root, 0o700)
        (layout.keys / "agents").mkdir(mode=0o700, parents=True)
        os.chmod(layout.keys, 0o700)
        if keep_url and settings.database_url is not None:
            write_database_url(layout.root, settings.database_url)

        signer: Signer
        if token is not None:
            pkcs11_store.save_key_store(layout, token)
            signer = token
        else:
            files = FileSigner(layout, cheap_kdf=cheap_kdf)
            if passphrase:  # one passphrase seals every key, the vault master key included
                files.init_seal(passphrase)
            signer = files
        owner_key = KeyHandle.of(signer, signer.create(OWNER))
        log_key = KeyHandle.of(signer, signer.create(LOG))
        issuer_key = KeyHandle.of(signer, signer.create(issuer_ref("")))
        first_owner = owner
        extra: dict[str, str] = {}
        if organization is not None:  # the owner slot is the organization's; owner's own key
            signer.create(DEFAULT_OWNER)
            owner = organization
            extra = {"organization": organization, "default_owner": first_owner}

        ledger_id = secrets.token_hex(8)
        origin = f"{trust_domain}/charter/{owner_handle(owner)}/{ledger_id}"
        meta = extra | {
            "origin": origin,
            "ledger_id": ledger_id,
            "owner_id": owner,
            "trust_domain": trust_domain,
            "owner_key": json.dumps(public_jwk(owner_key.public_key)),
            "log_key": json.dumps(public_jwk(log_key.public_key)),
            "issuer_kid": issuer_key.kid,
            "created_at": rfc3339(clock.now()),
        }
        if store is None:
            store = await open_store(settings, create=True)
        home = cls(settings, store, meta, clock, signer, log_key, _owner_key=owner_key)
        store.bind(home.identity, clock, log_key)
        try:
            await store.write(lambda tx: tx.meta.insert_identity(meta))
            await home._record_genesis(owner, owner_key, issuer_key)
            if organization is not None:
                default = KeyHandle.of(signer, DEFAULT_OWNER)
                await home.write(home.owner_certification(first_owner, default.public_key))
        except BaseException:
            await home.close()
            raise
        return home

    async def _record_genesis(
        self, owner: str, owner_key: KeyHandle, issuer_key: KeyHandle
    ) -> None:
        """Entry 0: ``ledger.init``, signed by the owner."""
        origin, trust_domain, log_key = self.origin, self.trust_domain, self.log_key
        args = {
            "origin": origin,
            "owner": owner,
            "owner_key": public_jwk(owner_key.public_key),
            "log_key": public_jwk(log_key.public_key),
            "issuer_key": public_jwk(issuer_key.public_key),
            "trust_domain": trust_domain,
        }
        if self.organization is not None:
            args |= {"organization": self.organization, "first_owner": self.meta["default_owner"]}
        await self.record_owner_event("ledger.init", args)

    async def close(self) -> None:
        """Close the database (and a PKCS#11 token's session)."""
        try:
            await self.store.close()
        finally:
            if not isinstance(self.signer, FileSigner):  # else pkcs11 was never imported
                from charter.keys.pkcs11 import Pkcs11Signer

                if isinstance(self.signer, Pkcs11Signer):
                    self.signer.close()

    async def __aenter__(self) -> Home:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- identity --------------------------------------------------------------------------

    @property
    def layout(self) -> HomeLayout:
        """File layout."""
        return self.settings.layout

    @property
    def owner_id(self) -> str:
        """The owner's id (their email address)."""
        return self.meta["owner_id"]

    @property
    def organization(self) -> str | None:
        """The organization's name in an organization home (then ``owner_id`` too), else None."""
        return self.meta.get("organization")

    def owner_certification(
        self, owner_id: str, public_key: bytes, *, passphrase: bytes | None = None
    ) -> Callable[[Tx], dict[str, Any]]:
        """The unit of work certifying ``owner_id``'s key: an organization-signed
        ``owner.certify`` entry and the ``owners`` row (AUDIT-FORMAT §13)."""
        if self.organization is None:
            raise InvalidInput("this home has no organization (`charter init --org NAME`)")
        check_email(owner_id)
        from charter.evidence.owners import certificate_hash, make_owner_certificate

        now = self.clock.now()
        cert = make_owner_certificate(
            org_key=self.owner_key(passphrase),
            org_id=self.organization,
            owner_id=owner_id,
            owner_public_key=public_key,
            not_before=now,
            not_after=now + OWNER_CERT_VALIDITY,
        )
        h = certificate_hash(cert)
        event = self.owner_event(
            "owner.certify", {"certificate": cert, "certificate_hash": h}, passphrase=passphrase
        )

        def certify(tx: Tx) -> dict[str, Any]:
            tx.owners.insert(
                kid=thumbprint(public_key),
                owner_id=owner_id,
                public_key=public_jwk(public_key)["x"],
                cert_hash=h,
                certificate=canonical_json(cert).decode(),
                not_after=cert["not_after"],
                added_at=cert["issued_at"],
            )
            tx.ledger.append_one(event)
            return cert

        return certify

    @property
    def trust_domain(self) -> str:
        """SPIFFE trust domain of this home's agents."""
        return self.meta["trust_domain"]

    @property
    def origin(self) -> str:
        """The ledger's unique origin (also its C2SP checkpoint origin)."""
        return self.meta["origin"]

    @property
    def owner_public_key(self) -> bytes:
        """The owner's public key."""
        return b64url_decode(json.loads(self.meta["owner_key"])["x"])

    @property
    def identity(self) -> LedgerIdentity:
        """The ledger identity bound into the genesis hash."""
        return LedgerIdentity(
            origin=self.origin,
            owner_id=self.owner_id,
            owner_key=self.owner_public_key,
            log_key=self.log_key.public_key,
        )

    def owner_key_protected(self) -> bool:
        """True when the owner key needs a passphrase."""
        return self.signer.is_protected(OWNER)

    def use_passphrase(self, passphrase: bytes | None) -> None:
        """Unlock the home's sealed keys with ``passphrase`` (checked when first needed)."""
        self.signer.set_passphrase(passphrase)

    def check_unlocked(self) -> None:
        """Fail now with one clear line when the home's keys are sealed and locked.

        Raises:
            ConfigError: no or wrong passphrase.
        """
        self.signer.check_unlocked()

    def owner_key(self, passphrase: bytes | None = None) -> KeyHandle:
        """Load (once) the owner's signing key.

        Raises:
            ConfigError: missing/corrupt key, or wrong or missing passphrase.
        """
        if self._owner_key is None:
            self.signer.unlock(OWNER, passphrase)
            key = KeyHandle.of(self.signer, OWNER)
            if key.public_key != self.owner_public_key:
                raise ConfigError("owner.key does not match the ledger's owner key")
            self._owner_key = key
        return self._owner_key

    # -- ledger ----------------------------------------------------------------------------

    def owner_event(
        self,
        action: str,
        args: dict[str, Any],
        *,
        passphrase: bytes | None = None,
        outcome: str = "ok",
        by: ActingOwner | None = None,
    ) -> Draft:
        """The draft of an owner action (phase ``event``) signing ``args``; append it in a
        unit of work (``tx.ledger.append_one``) to commit it with the state it records.
        ``by``: in an organization home, the owner (or the organization) acting."""
        return Draft(
            actor=self.owner_id if by is None else by.owner_id,
            owner=self.owner_id if by is None or by.is_org else by.owner_id,
            action=action,
            phase="event",
            signer=self.owner_key(passphrase) if by is None else by.key,
            args=args,
            args_hash=hashlib.sha256(canonical_json(args)).hexdigest(),
            outcome=outcome,
        )

    async def record_owner_event(
        self,
        action: str,
        args: dict[str, Any],
        *,
        passphrase: bytes | None = None,
        outcome: str = "ok",
    ) -> Entry:
        """Sign ``args`` into the ledger as an owner action (phase ``event``)."""
        draft = self.owner_event(action, args, passphrase=passphrase, outcome=outcome)
        return await self.store.write(lambda tx: tx.ledger.append_one(draft))

    async def read(self, work: Callable[[Tx], T]) -> T:
        """Shorthand for ``home.store.read(work)``."""
        return await self.store.read(work)

    async def write(self, work: Callable[[Tx], T]) -> T:
        """Shorthand for ``home.store.write(work)``."""
        return await self.store.write(work)


def resolve_passphrase(path: Path | None) -> bytes | None:
    """Read a passphrase from a file (first line, without its newline), or None."""
    if path is None:
        return None
    return read_passphrase_file(path)
