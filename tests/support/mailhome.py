"""Helpers for Charter mail tests: agents with addresses, mail settings, ledger entries."""

from __future__ import annotations

import json
from typing import Any

from mcp import Client
from mcp.types import CallToolResult, TextContent

from charter.evidence.entries import Entry
from charter.home import Home
from charter.testing import raw_tx
from charter.tools import identity, mail


async def add_mail_agent(
    home: Home,
    name: str,
    address: str,
    scopes: list[str],
    **email_policy: Any,
) -> None:
    """Register ``name`` with ``policy["email"] = {"address": address, **email_policy}``."""
    await identity.add_agent(
        home, name, scopes=scopes, policy={"email": {"address": address, **email_policy}}
    )


async def configure(
    home: Home,
    *,
    username: str,
    password: str,
    smtp_port: int,
    smtp_security: str = "starttls",
    imap_port: int | None = None,
    imap_security: str = "tls",
    ca_pem: str | None = None,
    timeout_s: int = 5,
) -> None:
    """Point the home at servers on 127.0.0.1 (what `charter mail setup` stores)."""
    settings = mail.make_settings(
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_security=smtp_security,
        imap_host="127.0.0.1" if imap_port else None,
        imap_port=imap_port,
        imap_security=imap_security,
        username=username,
        ca_pem=ca_pem,
        timeout_s=timeout_s,
    )
    await mail.save_settings(home, settings, password)


def entries(home: Home) -> list[dict[str, Any]]:
    """Every ledger entry's fields, oldest first."""
    return [Entry.from_body(b).fields for b in raw_tx(home).ledger.iter_bodies()]


def ledger_bytes(home: Home) -> bytes:
    """The whole ledger, for "never in the ledger" checks."""
    return b"\n".join(raw_tx(home).ledger.iter_bodies())


def text_of(result: CallToolResult) -> str:
    """The text of a tool result (the error message for an error)."""
    first = result.content[0]
    assert isinstance(first, TextContent)
    return first.text


async def call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """Call a tool that must succeed; return its structured result."""
    result = await client.call_tool(tool, args)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    out: dict[str, Any] = json.loads(json.dumps(result.structured_content))
    return out


async def fail(client: Client, tool: str, args: dict[str, Any]) -> str:
    """Call a tool that must fail; return its (public) error message."""
    result = await client.call_tool(tool, args)
    assert result.is_error, result.structured_content
    message = text_of(result)
    assert "Traceback" not in message and "internal error" not in message
    return message
