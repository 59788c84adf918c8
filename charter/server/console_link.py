"""Owner approvals through the owner's console, by URL-mode elicitation (MCP 2025-11-25).

A client that declared ``elicitation: {url: {}}`` can send its human to a page instead of
showing a form. For an ``owner`` approval, when this server knows the owner's console
(``charter serve --console-url``), the client is sent the console's page for the pending
request (``/approvals/<id>``); the ``elicitationId`` is the approval id. The human's
"accept" only means they open the page: what lets the call run is the owner's signed
``approval.approve`` entry, made in the console with the owner key and checked by the gate
exactly as after ``charter approve`` (genuine owner signature, single use). The call waits
for that decision (polling the approvals table, :data:`URL_APPROVAL_WAIT` seconds at most),
tells the client the elicitation is complete, and proceeds; on a decline, a timeout or a
console that does not answer, the call is left pending as before (today's message).

On a 2026-07-28 connection (no back-channel) the call ends at once with the JSON-RPC error
``URLElicitationRequired`` (-32042) naming the same page; the client sends its human there
and retries the same call, which runs once the owner has approved (as after ``charter
approve``). Clients without URL-mode support keep the flow of :mod:`charter.server.approvals`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import urllib.parse
from typing import Any

from mcp.shared.exceptions import MCPError, UrlElicitationRequiredError
from mcp_types import ElicitRequestURLParams
from mcp_types.version import is_version_at_least

from charter.errors import CharterError, ConfigError
from charter.home import Home
from charter.tools import approvals as store
from charter.tools.approvals import Approval

log = logging.getLogger(__name__)

#: How long a call waits for the owner's decision in the console (seconds).
URL_APPROVAL_WAIT = 600.0
#: How often the wait looks at the request's state (seconds).
POLL_EVERY = 0.2
#: First protocol revision without a back-channel (as in server/approvals.py).
_NO_BACK_CHANNEL = "2026-07-28"


def check_console_url(url: str) -> str:
    """``url`` normalized (no trailing slash) if it can name a local console.

    The console listens on loopback only, so its URL must be ``http://`` on a loopback
    address with a port, and nothing else (no path, query, credentials or fragment).

    Raises:
        ConfigError: otherwise, with what to pass instead.
    """
    parts = urllib.parse.urlsplit(url.strip())
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        port = parts.port
    except ValueError:
        loopback, port = False, None
    if (
        parts.scheme != "http"
        or not loopback
        or port is None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ConfigError(
            f"--console-url {url!r} cannot reach the owner's console: use the address "
            "`charter console` listens on, e.g. http://127.0.0.1:8766"
        )
    return f"http://{parts.netloc}"


async def console_answers(url: str, timeout: float = 1.0) -> bool:
    """Whether something listens at the console's address (a TCP connect)."""
    parts = urllib.parse.urlsplit(url)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port), timeout
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def _can_elicit_url(ctx: Any) -> bool:
    caps = ctx.client_capabilities
    elicitation = caps.elicitation if caps is not None else None
    return elicitation is not None and elicitation.url is not None


async def usable(url: str, ctx: Any) -> bool:
    """Whether this call's client can be sent to the console, and the console answers."""
    if ctx is None or ctx.protocol_version is None or not _can_elicit_url(ctx):
        return False
    if not await console_answers(url):
        log.warning("the owner's console at %s does not answer: approval left pending", url)
        return False
    return True


def without_back_channel(ctx: Any) -> bool:
    """A 2026-07-28 connection: the server cannot send a request in the middle of a call."""
    return bool(is_version_at_least(ctx.protocol_version, _NO_BACK_CHANNEL))


def url_required(url: str, approval: Approval) -> UrlElicitationRequiredError:
    """The JSON-RPC error (-32042) naming the console's page, for a connection without a
    back-channel: the client sends its human there and retries the same call afterwards."""
    return UrlElicitationRequiredError(
        [
            ElicitRequestURLParams(
                message=_message(approval), url=approval_url(url, approval),
                elicitation_id=approval.id,
            )
        ],
        f"approval pending: your owner approves this call in the Charter console "
        f"(approval {approval.id}); retry exactly the same call afterwards",
    )  # fmt: skip


def _message(approval: Approval) -> str:
    return (
        f"Your owner's approval is needed for {approval.tool} (approval {approval.id}). "
        "Open the Charter console to approve or deny this exact call."
    )


def approval_url(url: str, approval: Approval) -> str:
    """The console's page for one approval request."""
    return f"{url}/approvals/{urllib.parse.quote(approval.id)}"


async def send_and_wait(home: Home, url: str, ctx: Any, approval: Approval) -> None:
    """Send the approval's console URL to the client; wait for the owner's decision.

    Returns when the request is no longer pending (or the wait is over, or the human did not
    accept to open the page); the caller then checks the decision as on any retry.
    """
    try:
        answer = await ctx.session.elicit_url(
            message=_message(approval),
            url=approval_url(url, approval),
            elicitation_id=approval.id,
            related_request_id=ctx.request_id,
        )
    except MCPError:
        return
    if answer.action != "accept":
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + URL_APPROVAL_WAIT
    while loop.time() < deadline:
        try:
            current = await store.find(home, approval.id)
        except CharterError:
            return
        if current.status != "pending":
            with contextlib.suppress(MCPError):
                await ctx.session.send_elicit_complete(approval.id, ctx.request_id)
            return
        await asyncio.sleep(POLL_EVERY)
