"""How ``charter serve --http`` uses the SDK's streamable HTTP transport (see
:mod:`charter.server.http`): which answers are plain JSON, and which hosts may call.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

_LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
_LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


def handshake_sessions_on_sse(manager: StreamableHTTPSessionManager) -> None:
    """Answer 2026-07-28 requests with plain JSON; keep handshake sessions on SSE.

    A 2026-07-28 request gets one JSON-RPC response. In JSON mode the SDK serves it in the
    request's own task; in SSE mode it spawns, per request, a task group with the handler and
    a disconnect watcher and a memory stream to defer the choice of media type: about 0.2 ms of
    server CPU per call under load (issue 26). Charter sends nothing else during such a call
    (an approval there is an ``input_required`` result, not a request to the client), so
    nothing is lost; a client that goes away no longer cancels the call, whose outcome is then
    recorded as for any other. A handshake session (2025-11-25 and older) stays on SSE: its
    server-to-client requests (elicitation, for approvals) ride a request's stream, which the
    SDK's JSON mode forbids. The manager reads ``json_response`` when it admits a session
    (synchronously), so it is off exactly then.
    """
    admit = manager._admit_session

    def admit_on_sse(requestor: Any) -> StreamableHTTPServerTransport | None:
        manager.json_response = False
        try:
            return admit(requestor)
        finally:
            manager.json_response = True

    manager._admit_session = admit_on_sse  # type: ignore[method-assign]


def transport_security(issuer_url: str) -> TransportSecuritySettings:
    """DNS-rebinding protection: loopback names plus the issuer's own host."""
    parts = urlsplit(issuer_url)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*_LOOPBACK_HOSTS, parts.netloc],
        allowed_origins=[*_LOOPBACK_ORIGINS, f"{parts.scheme}://{parts.netloc}"],
    )
