"""The vault's services: the owner's set/list/rm/rotate, and the agent's list/get/use.

An agent uses a secret without seeing it: it writes ``{{secret:NAME}}`` in the URL path or
query, a header value or the body of :func:`http_request`, which checks the scopes and the
secret's allowed hosts, commits the intent, sends the request from here, and hands back the
response with every occurrence of the value (raw and in its common encodings) replaced by
``[REDACTED:NAME]``. Reading a value (:func:`read_secret`) is a separate, narrower grant.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, Field

from charter.errors import InvalidInput, NotFound
from charter.home import Home
from charter.storage.db import transaction
from charter.storage.vault import SecretInfo, SecretValue, Vault
from charter.tools import vault_limits
from charter.tools.vault_http import MAX_RESPONSE_BYTES as MAX_RESPONSE_BYTES
from charter.tools.vault_http import HttpResponseOut as HttpResponseOut
from charter.tools.vault_http import Method as Method
from charter.tools.vault_http import granted_info
from charter.tools.vault_http import http_request as http_request
from charter.tools.vault_http import placeholder_names as placeholder_names
from charter.tools.vault_redact import Redactor as Redactor

# -- owner services ------------------------------------------------------------------------


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
        if not vault_limits.unblock(home.conn, agent, name):
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


# -- what an agent may see -----------------------------------------------------------------


class SecretListItem(BaseModel):
    """A secret this agent may read or use (never its value)."""

    name: str
    description: str
    version: int = Field(description="The current version, used by placeholders.")
    can_read: bool = Field(description="secret_get may return its value.")
    can_use: bool = Field(description="secret_http_request may inject it.")
    allowed_hosts: list[str] = Field(
        description="Hosts it may be sent to (shown when can_use is true)."
    )


class SecretListOut(BaseModel):
    """The secrets this agent may read or use."""

    secrets: list[SecretListItem]


def visible_secrets(vault: Vault, allows: Callable[[str], bool]) -> SecretListOut:
    """The secrets a caller may read or use, ``allows(scope)`` saying what it is granted (the
    gate's ``Call.allows``: the charter narrowed by any bearer token). System secrets never
    appear."""
    items = []
    for info in vault.list():
        can_read = allows(f"secret:read:{info.name}")
        can_use = allows(f"secret:use:{info.name}")
        if can_read or can_use:
            items.append(
                SecretListItem(
                    name=info.name,
                    description=info.description,
                    version=info.version,
                    can_read=can_read,
                    can_use=can_use,
                    allowed_hosts=list(info.allowed_hosts) if can_use else [],
                )
            )
    return SecretListOut(secrets=items)


def read_secret(vault: Vault, scopes: Iterable[str], name: str) -> SecretValue:
    """Decrypt ``name`` for an agent holding ``secret:read:<name>``.

    Raises:
        InvalidInput / ScopeDenied / NotFound / ConfigError (tampered row, wrong key).
    """
    granted_info(vault, scopes, name, "read")
    return vault.get(name)


def decode_secret(value: bytes) -> tuple[str, Literal["utf-8", "base64"]]:
    """A secret's value as text for ``secret_get``: UTF-8, or base64 when it is binary."""
    try:
        return value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii"), "base64"
