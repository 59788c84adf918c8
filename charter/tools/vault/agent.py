"""What an agent may see of the vault: the secrets it may read or use, and reading one."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from charter.storage.vault import SecretValue, Vault
from charter.tools.plan import LocalPlan
from charter.tools.vault.http import granted_info

if TYPE_CHECKING:
    from charter.evidence.entries import Entry
    from charter.home import Home
    from charter.storage.ports import Tx


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


class SecretOut(BaseModel):
    """A secret's value. Treat it as sensitive: never echo it into chat, files or logs."""

    name: str
    version: int
    value: str
    encoding: Literal["utf-8", "base64"] = Field(description="'base64' when the secret is binary.")


async def visible_secrets(home: Home, vault: Vault, allows: Callable[[str], bool]) -> SecretListOut:
    """The secrets a caller may read or use, ``allows(scope)`` saying what it is granted (the
    gate's ``Call.allows``: the charter narrowed by any bearer token). System secrets never
    appear."""
    items = []
    for info in await home.read(vault.list):
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


async def read_secret(home: Home, vault: Vault, scopes: Iterable[str], name: str) -> SecretValue:
    """Decrypt ``name`` for an agent holding ``secret:read:<name>``.

    Raises:
        InvalidInput / ScopeDenied / NotFound / ConfigError (tampered row, wrong key).
    """

    def work(tx: Tx) -> SecretValue:
        granted_info(vault, tx, scopes, name, "read")
        return vault.get(tx, name)

    return await home.read(work)


async def reveal_plan(
    home: Home, vault: Vault, scopes: Iterable[str], name: str
) -> LocalPlan[SecretOut]:
    """The ``secret_get`` tool's plan, a local effect: the read (name and version, never the
    value) is the intent, committed with its outcome, and the value is handed back only
    after both are durable.

    Raises:
        InvalidInput / ScopeDenied / NotFound / ConfigError: as :func:`read_secret`, before
            anything is recorded as intent.
    """
    value = await read_secret(home, vault, scopes, name)

    def apply(_tx: Tx, _intent: Entry) -> SecretOut:
        text, encoding = decode_secret(value.reveal())
        return SecretOut(name=value.name, version=value.version, value=text, encoding=encoding)

    return LocalPlan(details={"name": value.name, "version": value.version}, apply=apply)


def decode_secret(value: bytes) -> tuple[str, Literal["utf-8", "base64"]]:
    """A secret's value as text for ``secret_get``: UTF-8, or base64 when it is binary."""
    try:
        return value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii"), "base64"
