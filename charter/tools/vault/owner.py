"""The vault's owner services: set, list, remove, unblock, and rotate the master key.

Each records an owner-signed ledger event (never a value), in the unit of work that changes
the vault.
"""

from __future__ import annotations

from collections.abc import Sequence

from charter.errors import InvalidInput, NotFound
from charter.home import Home
from charter.storage.ports import Tx
from charter.storage.vault import SecretInfo, Vault
from charter.tools.vault import limits


def vault_of(home: Home, *, passphrase: bytes | None = None) -> Vault:
    """The home's vault (its master key through the home's signer)."""
    return Vault(home.signer, home.clock, passphrase=passphrase)


async def set_secret(
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
    vault = vault_of(home, passphrase=vault_passphrase)
    home.owner_key(passphrase)  # fail before writing anything if the passphrase is wrong

    def work(tx: Tx) -> SecretInfo:
        try:
            current: SecretInfo | None = vault.info(tx, name)
        except NotFound:
            current = None
        kept = current.description if current else ""
        hosts = (
            list(current.allowed_hosts if current else ())
            if allowed_hosts is None
            else allowed_hosts
        )
        rate = current.rate_per_minute if rate_per_minute is None and current else rate_per_minute
        version = vault.put(
            tx,
            name,
            value,
            description=kept if description is None else description,
            allowed_hosts=hosts,
            rate_per_minute=rate,
        )
        info = vault.info(tx, name)
        event: dict[str, object] = {
            "name": name,
            "version": version,
            "description": info.description,
            "allowed_hosts": list(info.allowed_hosts),
        }
        if info.rate_per_minute is not None:
            event["rate_per_minute"] = info.rate_per_minute
        tx.ledger.append_one(home.owner_event("secret.set", event, passphrase=passphrase))
        return info

    return await home.write(work)


async def unblock_secret(
    home: Home, name: str, agent: str, *, passphrase: bytes | None = None
) -> None:
    """Let ``agent`` use ``name`` again after it was blocked for writing the value itself;
    record ``secret.unblock`` (owner-signed).

    Raises:
        NotFound: the agent is not blocked from that secret.
    """
    event = home.owner_event(
        "secret.unblock", {"name": name, "agent": agent}, passphrase=passphrase
    )

    def work(tx: Tx) -> None:
        if not limits.unblock(tx, agent, name):
            raise NotFound(f"agent {agent!r} is not blocked from secret {name!r}")
        tx.ledger.append_one(event)

    await home.write(work)


async def remove_secret(home: Home, name: str, *, passphrase: bytes | None = None) -> SecretInfo:
    """Delete ``name`` and all its versions; record ``secret.remove``.

    Raises:
        NotFound: unknown secret.  InvalidInput: a system secret (managed by Charter).
    """
    vault = vault_of(home)
    info = await home.read(lambda tx: vault.info(tx, name))
    if info.system:
        raise InvalidInput(f"{name!r} is managed by Charter itself and cannot be removed here")
    event = home.owner_event(
        "secret.remove", {"name": name, "versions": list(info.versions)}, passphrase=passphrase
    )

    def work(tx: Tx) -> None:
        vault.delete(tx, name)
        tx.ledger.append_one(event)

    await home.write(work)
    return info


async def list_secrets(home: Home) -> list[SecretInfo]:
    """Every secret's metadata for the owner, system secrets included (flagged)."""
    vault = vault_of(home)
    return await home.read(lambda tx: vault.list(tx, include_system=True))


async def rotate_master_key(
    home: Home,
    *,
    passphrase: bytes | None = None,
    vault_passphrase: bytes | None = None,
    new_vault_passphrase: bytes | None = None,
) -> tuple[int, int]:
    """Re-encrypt every secret under a new master key, in one transaction; record
    ``vault.rotate`` in it. The key file is swapped only after that commits.

    Returns ``(new key version, rows re-encrypted)``.

    Raises:
        ConfigError: wrong current key or a tampered row (nothing changes).
    """
    home.owner_key(passphrase)
    vault = vault_of(home, passphrase=vault_passphrase)

    def work(tx: Tx) -> tuple[int, int]:
        key_version, rows = vault.reencrypt_all(tx, new_vault_passphrase)
        tx.ledger.append_one(
            home.owner_event(
                "vault.rotate",
                {
                    "key_version": key_version,
                    "rows": rows,
                    "passphrase_derived": bool(new_vault_passphrase),
                },
                passphrase=passphrase,
            )
        )
        return key_version, rows

    try:
        result = await home.write(work)
    except BaseException:
        vault.abandon_rotation()
        raise
    vault.finish_rotation()
    return result
