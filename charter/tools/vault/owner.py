"""The vault's owner services: set, list, remove, unblock, and rotate the master key.

Each records an owner-signed ledger event (never a value).
"""

from __future__ import annotations

from collections.abc import Sequence

from charter.errors import InvalidInput, NotFound
from charter.home import Home
from charter.storage.db import transaction
from charter.storage.vault import SecretInfo, Vault
from charter.tools.vault import limits


def set_secret(
    home: Home,
    name: str,
    value: bytes,
    *,
    description: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
    passphrase: bytes | None = None,
    vault_passphrase: bytes | None = None,
    rate_per_minute: int | None = None,
) -> SecretInfo:
    """Store a new version of ``name`` and record ``secret.set`` (owner-signed, no value).

    ``description``, ``allowed_hosts`` and ``rate_per_minute`` (uses per agent per minute)
    left as None keep their current values.

    Raises:
        InvalidInput: bad name, value, description or host.
        ConfigError: wrong master key or owner passphrase.
    """
    vault = Vault(home, passphrase=vault_passphrase)
    home.owner_key(passphrase)  # fail before writing anything if the passphrase is wrong
    try:
        current: SecretInfo | None = vault.info(name)
    except NotFound:
        current = None
    if description is None:
        description = current.description if current else ""
    hosts = (
        list(current.allowed_hosts if current else ()) if allowed_hosts is None else allowed_hosts
    )
    if rate_per_minute is None and current is not None:
        rate_per_minute = current.rate_per_minute
    with transaction(home.conn):
        version = vault.put(
            name,
            value,
            description=description,
            allowed_hosts=hosts,
            rate_per_minute=rate_per_minute,
        )
        info = vault.info(name)
        event: dict[str, object] = {
            "name": name,
            "version": version,
            "description": info.description,
            "allowed_hosts": list(info.allowed_hosts),
        }
        if info.rate_per_minute is not None:
            event["rate_per_minute"] = info.rate_per_minute
        home.record_owner_event("secret.set", event, passphrase=passphrase)
    return info


def unblock_secret(home: Home, name: str, agent: str, *, passphrase: bytes | None = None) -> None:
    """Let ``agent`` use ``name`` again after it was blocked for writing the value itself;
    record ``secret.unblock`` (owner-signed).

    Raises:
        NotFound: the agent is not blocked from that secret.
    """
    home.owner_key(passphrase)
    with transaction(home.conn):
        if not limits.unblock(home.conn, agent, name):
            raise NotFound(f"agent {agent!r} is not blocked from secret {name!r}")
        home.record_owner_event(
            "secret.unblock", {"name": name, "agent": agent}, passphrase=passphrase
        )


def remove_secret(home: Home, name: str, *, passphrase: bytes | None = None) -> SecretInfo:
    """Delete ``name`` and all its versions; record ``secret.remove``.

    Raises:
        NotFound: unknown secret.  InvalidInput: a system secret (managed by Charter).
    """
    vault = Vault(home)
    info = vault.info(name)
    if info.system:
        raise InvalidInput(f"{name!r} is managed by Charter itself and cannot be removed here")
    home.owner_key(passphrase)
    with transaction(home.conn):
        vault.delete(name)
        home.record_owner_event(
            "secret.remove", {"name": name, "versions": list(info.versions)}, passphrase=passphrase
        )
    return info


def list_secrets(home: Home) -> list[SecretInfo]:
    """Every secret's metadata for the owner, system secrets included (flagged)."""
    return Vault(home).list(include_system=True)


def rotate_master_key(
    home: Home,
    *,
    passphrase: bytes | None = None,
    vault_passphrase: bytes | None = None,
    new_vault_passphrase: bytes | None = None,
) -> tuple[int, int]:
    """Re-encrypt every secret under a new master key; record ``vault.rotate``.

    Returns ``(new key version, rows re-encrypted)``.

    Raises:
        ConfigError: wrong current key or a tampered row (nothing changes).
    """
    home.owner_key(passphrase)

    def record(key_version: int, rows: int) -> None:
        home.record_owner_event(
            "vault.rotate",
            {
                "key_version": key_version,
                "rows": rows,
                "passphrase_derived": bool(new_vault_passphrase),
            },
            passphrase=passphrase,
        )

    vault = Vault(home, passphrase=vault_passphrase)
    return vault.rotate_master_key(new_passphrase=new_vault_passphrase, on_commit=record)
