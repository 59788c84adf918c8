"""What an agent may see of the vault: the secrets it may read or use, and reading one."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from typing import Literal

from pydantic import BaseModel, Field

from charter.storage.vault import SecretValue, Vault
from charter.tools.vault.http import granted_info


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
