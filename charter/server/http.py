"""Streamable HTTP transport: MCP at ``/mcp`` for many agents, behind Charter bearer tokens.

Endpoints (all relative to the issuer, an origin such as ``http://127.0.0.1:8765``):

* ``/mcp``: MCP streamable HTTP. A request needs ``Authorization: Bearer <token>`` with a
  Charter token whose ``aud`` is ``<issuer>/mcp``; otherwise 401 (``WWW-Authenticate`` points
  at the resource metadata). The calling agent is the token's ``sub``; its calls are signed
  with that agent's key, exactly as over stdio, and may use only what both its charter and
  the token's ``scope`` grant. With ``required_scopes``, a token lacking one gets 403
  ``insufficient_scope``.
* ``/.well-known/jwks.json``: the issuer's public keys (RFC 8037 OKP JWKS).
* ``/.well-known/openid-configuration`` and ``/.well-known/oauth-authorization-server``:
  issuer metadata (issuer, jwks_uri, introspection_endpoint, algorithms).
* ``/.well-known/oauth-protected-resource/mcp``: RFC 9728 protected-resource metadata.
* ``POST /introspect``: RFC 7662. The caller authenticates with ``Authorization: Bearer``
  carrying either the owner's introspection secret (for relying parties) or a valid Charter
  token for this server; anything else gets 401, so nobody can probe tokens anonymously.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from charter.errors import TokenInvalid
from charter.home import Home
from charter.scopes import PLAIN_SCOPES
from charter.server.deps import Deps
from charter.server.wiring import build_server
from charter.tools import tokens
from charter.tools.identity import AgentContext, load_agent

log = logging.getLogger("charter.http")

#: Largest introspection request body read (a form with one token).
MAX_INTROSPECT_BODY = 16 * 1024
_LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
_LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


class CharterTokenVerifier(TokenVerifier):
    """Accepts a bearer token only if :func:`charter.tools.tokens.verify` does, for ``audience``."""

    def __init__(self, home: Home, audience: str) -> None:
        self.home = home
        self.audience = audience

    async def verify_token(self, token: str) -> AccessToken | None:
        """The token's access grant, or None (the SDK answers 401) with the reason logged."""
        try:
            verified = tokens.verify(self.home, token, audience=self.audience)
        except TokenInvalid as exc:
            log.info("refused a bearer token: %s", exc.reason)
            return None
        return AccessToken(
            token=token,
            # The session is bound to (client_id, iss, sub): one agent, whatever its token.
            client_id=verified.agent_name,
            scopes=list(verified.scopes),
            expires_at=verified.expires_at,
            resource=verified.audience,
            subject=verified.subject,
            claims=verified.claims,
        )


class TokenAgentResolver:
    """``Deps.resolve_agent`` over HTTP: the agent is the bearer token's subject, per request.

    Agents are loaded once per (name, charter) and cached; the token is verified again on
    every call, so a token or agent revoked mid-session is refused at its next call.
    """

    def __init__(self, verifier: CharterTokenVerifier) -> None:
        self.verifier = verifier
        self._agents: dict[tuple[str, str], AgentContext] = {}

    async def __call__(self) -> AgentContext:
        """Resolve the calling agent, narrowed to its token's scopes.

        Raises:
            TokenInvalid: no token, or it stopped verifying (revoked token or agent included).
        """
        access = get_access_token()
        if access is None:
            raise TokenInvalid("no bearer token reached the call")
        verified = await self.verifier.verify_token(access.token)
        if verified is None:
            raise TokenInvalid("the bearer token stopped verifying")
        # A verified token names an active agent and its current charter.
        cache_key = (verified.client_id, str((verified.claims or {})["charter"]))
        agent = self._agents.get(cache_key)
        if agent is None:
            agent = load_agent(self.verifier.home, verified.client_id)
            self._agents[(agent.name, agent.charter.hash)] = agent
        return dataclasses.replace(agent, token_scopes=tuple(verified.scopes))


def build_http_app(
    home: Home,
    *,
    issuer_url: str,
    introspection_secret: bytes | None = None,
    required_scopes: Sequence[str] = (),
) -> Starlette:
    """The ASGI app serving MCP and the token endpoints for ``issuer_url``.

    ``issuer_url`` must be the home's issuer (see :func:`charter.tools.tokens.set_issuer`).
    """
    issuer_url = tokens.normalize_issuer(issuer_url)
    resource = tokens.resource_url(issuer_url)
    verifier = CharterTokenVerifier(home, resource)
    server = build_server(
        Deps(home=home, resolve_agent=TokenAgentResolver(verifier)),
        token_verifier=verifier,
        auth=AuthSettings(
            issuer_url=issuer_url,  # pydantic parses (and keeps) the URL
            resource_server_url=resource,
            required_scopes=list(required_scopes) or None,
            validate_token_resource=True,
        ),
    )
    metadata = issuer_metadata(issuer_url)
    secret_digest = None if not introspection_secret else _digest(introspection_secret)

    async def jwks(_request: Request) -> Response:
        return JSONResponse(tokens.jwks(home), headers={"Cache-Control": "max-age=60"})

    async def issuer_configuration(_request: Request) -> Response:
        return JSONResponse(metadata)

    async def introspect(request: Request) -> Response:
        if not _may_introspect(request, secret_digest):
            return _error(401, "invalid_client", "authenticate with a bearer credential")
        body = await _read_limited(request, MAX_INTROSPECT_BODY)
        if body is None:
            return _error(413, "invalid_request", "request body too large")
        form = parse_qs(body.decode("utf-8", "replace"))
        token = form.get("token", [""])[0]
        if not token:
            return _error(400, "invalid_request", "the form must carry `token`")
        return JSONResponse(tokens.introspect(home, token), headers={"Cache-Control": "no-store"})

    app = server.streamable_http_app(transport_security=_transport_security(issuer_url))
    app.router.routes.extend(
        [
            Route("/.well-known/jwks.json", jwks, methods=["GET"]),
            Route("/.well-known/openid-configuration", issuer_configuration, methods=["GET"]),
            Route("/.well-known/oauth-authorization-server", issuer_configuration, methods=["GET"]),
            Route("/introspect", introspect, methods=["POST"]),
        ]
    )
    return app


def issuer_metadata(issuer_url: str) -> dict[str, Any]:
    """The issuer's metadata document (served as OpenID and RFC 8414 configuration)."""
    return {
        "issuer": issuer_url,
        "jwks_uri": f"{issuer_url}/.well-known/jwks.json",
        "introspection_endpoint": f"{issuer_url}/introspect",
        "introspection_endpoint_auth_methods_supported": ["bearer"],
        # Access tokens are RFC 9068 JWTs signed with Ed25519 only.
        "access_token_signing_alg_values_supported": [tokens.ALGORITHM],
        "scopes_supported": sorted(PLAIN_SCOPES),
        "protected_resources": [tokens.resource_url(issuer_url)],
        "grant_types_supported": [],
        "response_types_supported": [],
    }


def _may_introspect(request: Request, secret_digest: bytes | None) -> bool:
    # A valid Charter token for this server was already recognized by the SDK's middleware.
    if isinstance(request.scope.get("user"), AuthenticatedUser):
        return True
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if secret_digest is None or scheme.lower() != "bearer" or not credential:
        return False
    return hmac.compare_digest(_digest(credential.strip().encode()), secret_digest)


def _digest(secret: bytes) -> bytes:
    # Comparing fixed-length digests keeps the comparison's time independent of the length.
    return hashlib.sha256(secret).digest()


async def _read_limited(request: Request, limit: int) -> bytes | None:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return body


def _error(status: int, error: str, description: str) -> Response:
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = f'Bearer error="{error}"'
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


def _transport_security(issuer_url: str) -> TransportSecuritySettings:
    """DNS-rebinding protection: loopback names plus the issuer's own host."""
    parts = urlsplit(issuer_url)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*_LOOPBACK_HOSTS, parts.netloc],
        allowed_origins=[*_LOOPBACK_ORIGINS, f"{parts.scheme}://{parts.netloc}"],
    )


def serve_http(
    home: Home,
    *,
    host: str,
    port: int,
    issuer_url: str,
    introspection_secret: bytes | None = None,
    required_scopes: Sequence[str] = (),
    log_level: str = "warning",
) -> None:
    """Run the HTTP server until interrupted.

    Raises:
        InvalidInput: for a bad issuer URL (before anything is bound).
    """
    import uvicorn

    app = build_http_app(
        home,
        issuer_url=issuer_url,
        introspection_secret=introspection_secret,
        required_scopes=required_scopes,
    )
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level.lower())
    uvicorn.Server(config).run()
