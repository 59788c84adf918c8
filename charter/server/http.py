"""Streamable HTTP transport: MCP at ``/mcp`` for many agents, behind Charter bearer tokens.

Endpoints (all relative to the issuer, an origin such as ``http://127.0.0.1:8765``):

* ``/mcp``: MCP streamable HTTP. A request needs ``Authorization: Bearer <token>`` with a
  Charter token whose ``iss`` is this server's issuer and ``aud`` is ``<issuer>/mcp``;
  otherwise 401 (RFC 6750: ``WWW-Authenticate`` points at the resource metadata and, for a
  refused token, carries ``error="invalid_token"`` and an ``error_description`` naming the
  reason; a malformed ``Authorization`` header gets 400 ``invalid_request``). The calling
  agent is the token's ``sub``; its calls are signed with that agent's key, exactly as over
  stdio, and may use only what both its charter and the token's ``scope`` grant. With
  ``required_scopes``, a token lacking one gets 403 ``insufficient_scope``.
  DPoP (RFC 9449): ``Authorization: DPoP <token>`` with one ``DPoP`` proof header is checked
  by :func:`charter.tools.tokens.verify_with_proof` (``htm`` the request's method, ``htu``
  the issuer's origin and the request's path, ``ath`` the token's hash, the key the token's
  ``cnf.jkt``; each ``jti`` accepted once, in a replay cache in the home's storage shared by
  every server). A token bound to a client key (``--dpop-jwk``) is refused as a bearer token.
  A refused DPoP request gets 401 with ``WWW-Authenticate: DPoP error="invalid_dpop_proof"``
  (or ``invalid_token`` for the token itself) and the accepted ``algs``. With ``dpop_nonce``
  (``charter serve --http --dpop-nonce``) proofs must carry a current server nonce, handed
  out in ``DPoP-Nonce`` on every answer; without one: 401 ``use_dpop_nonce``.
* ``/.well-known/jwks.json``: the issuer's public keys (RFC 8037 OKP JWKS).
* ``/.well-known/openid-configuration`` and ``/.well-known/oauth-authorization-server``:
  issuer metadata (issuer, jwks_uri, introspection_endpoint, algorithms).
* ``/.well-known/oauth-protected-resource/mcp``: RFC 9728 protected-resource metadata.
* ``POST /token``: RFC 8693 token exchange for sub-agents (issue 21): ``subject_token`` the
  parent's token, ``actor_token`` the sub-agent's; the result (``sub`` the parent, ``act.sub``
  the sub-agent) serves ``/mcp`` as the sub-agent (:mod:`charter.tools.tokens.exchange`).
* ``POST /introspect``: RFC 7662. The caller authenticates with ``Authorization: Bearer``
  carrying either the owner's introspection secret (for relying parties) or a valid Charter
  token for this server; anything else gets 401, so nobody can probe tokens anonymously.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from charter.errors import LedgerUnavailable, TokenInvalid
from charter.home import Home
from charter.scopes import PLAIN_SCOPES
from charter.server.deps import Deps
from charter.server.http_transport import handshake_sessions_on_sse, transport_security
from charter.server.wiring import build_server
from charter.tools import tokens
from charter.tools.identity import AgentContext, load_agent
from charter.tools.tokens import exchange

log = logging.getLogger("charter.http")

#: Largest introspection request body read (a form with one token).
MAX_INTROSPECT_BODY = 16 * 1024


#: The refusals of the current request's bearer token, for its 401 (see BearerChallenge).
_refusals: ContextVar[list[TokenInvalid] | None] = ContextVar("charter_refusals", default=None)
#: The token whose DPoP proof the transport accepted for the current request, if any.
_proven: ContextVar[str | None] = ContextVar("charter_dpop_proven", default=None)
#: The token this request's authentication verified, and what it found: the agent resolver
#: of the same request uses it instead of verifying the same token a second time.
_verified: ContextVar[tuple[str, tokens.VerifiedToken] | None] = ContextVar(
    "charter_verified", default=None
)


class CharterTokenVerifier(TokenVerifier):
    """Accepts a bearer token only if :func:`charter.tools.tokens.verify` does, for this
    server's ``audience`` and the ``issuer`` it advertises (not whatever the home says now).

    A token seen before is not parsed nor its signature checked again, but everything that can
    change (time, revocation, its agent and charter) is checked at every request
    (:class:`charter.tools.tokens.VerifiedTokens`).
    """

    def __init__(self, home: Home, audience: str, issuer: str | None = None) -> None:
        self.home = home
        self.audience = audience
        self.issuer = issuer
        self.cache = tokens.VerifiedTokens()

    async def check(self, token: str) -> tokens.VerifiedToken:
        """Verify ``token``; a refusal is logged (reason and jti, never the token).

        Raises:
            TokenInvalid: the typed reason.
        """
        try:
            return await tokens.verify(
                self.home, token, audience=self.audience, issuer_url=self.issuer, cache=self.cache
            )
        except TokenInvalid as exc:
            log_refusal("bearer token", exc)
            raise

    async def verify_token(self, token: str) -> AccessToken | None:
        """The token's access grant, or None (the SDK answers 401; the reason goes with it)."""
        try:
            verified = await self.check(token)
            if _proven.get() != token:
                tokens.require_proof(verified)  # a DPoP-bound token without its proof
            _verified.set((token, verified))
        except TokenInvalid as exc:
            if isinstance(exc, tokens.dpop.DpopInvalid):
                log_refusal("bearer token", exc)
            refusals = _refusals.get()
            if refusals is not None:
                refusals.append(exc)
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
            raise tokens.errors.MissingToken("no bearer token reached the call")
        seen = _verified.get()
        if seen is not None and seen[0] == access.token:
            verified = seen[1]  # checked by this request's authentication, moments ago
        else:
            verified = await self.verifier.check(access.token)  # raises the typed reason
        # A verified token names an active agent and its current charter.
        cache_key = (verified.agent_name, str(verified.claims["charter"]))
        agent = self._agents.get(cache_key)
        if agent is None:
            agent = await load_agent(self.verifier.home, verified.agent_name)
            self._agents[(agent.name, agent.charter.hash)] = agent
        return dataclasses.replace(agent, token_scopes=verified.scopes)


def build_http_app(
    home: Home,
    *,
    issuer_url: str,
    introspection_secret: bytes | None = None,
    required_scopes: Sequence[str] = (),
    dpop_nonce: bool = False,
) -> Starlette:
    """The ASGI app serving MCP and the token endpoints for ``issuer_url``.

    ``issuer_url`` must be the home's issuer (see :func:`charter.tools.tokens.set_issuer`).
    With ``dpop_nonce``, DPoP proofs must carry a server nonce (RFC 9449 §8,
    :mod:`charter.tools.tokens.nonce`): every ``/mcp`` answer hands out the current one in
    ``DPoP-Nonce``, and a proof without a current one gets 401 ``use_dpop_nonce``.
    """
    issuer_url = tokens.normalize_issuer(issuer_url)
    resource = tokens.resource_url(issuer_url)
    verifier = CharterTokenVerifier(home, resource, issuer_url)
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
        return JSONResponse(await tokens.jwks(home), headers={"Cache-Control": "max-age=60"})

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
        # RFC 7662 §2.2: an inactive token's answer says nothing more; the reason is logged.
        answer = await tokens.introspect(
            home,
            token,
            issuer_url=issuer_url,
            on_refusal=lambda exc: log_refusal("introspected token", exc),
        )
        return JSONResponse(answer, headers={"Cache-Control": "no-store"})

    async def token_endpoint(request: Request) -> Response:
        return await _token_exchange(home, request, issuer_url)

    app = server.streamable_http_app(
        transport_security=transport_security(issuer_url), json_response=True
    )
    handshake_sessions_on_sse(server.session_manager)
    # Outermost, so it sees the SDK's 401 and the verifier's reasons for the same request.
    app.add_middleware(
        BearerChallenge,
        path=tokens.MCP_PATH,
        resource=resource,
        verifier=verifier,
        nonces=_nonce_loader(home) if dpop_nonce else None,
    )
    app.router.routes.extend(
        [
            Route("/.well-known/jwks.json", jwks, methods=["GET"]),
            Route("/.well-known/openid-configuration", issuer_configuration, methods=["GET"]),
            Route("/.well-known/oauth-authorization-server", issuer_configuration, methods=["GET"]),
            Route("/introspect", introspect, methods=["POST"]),
            Route("/token", token_endpoint, methods=["POST"]),
        ]
    )
    return app


def log_refusal(what: str, exc: TokenInvalid) -> None:
    """Log why a token was refused, with its id when known (never the token)."""
    log.warning("refused a %s (jti %r): %s: %s", what, exc.jti, exc.code, exc.reason)


class BearerChallenge:
    """RFC 6750 §3 answers on ``path``, naming why a bearer token was refused; and the DPoP
    check (RFC 9449 §7) of ``Authorization: DPoP`` requests.

    * no ``Authorization: Bearer`` credential: 401 with a bare challenge (no error code);
    * a malformed ``Bearer`` credential (empty, or not one b64token): 400 ``invalid_request``;
    * a refused token: 401 ``invalid_token`` with an ``error_description`` naming the reason
      (its caller-safe description: never the token, a claim value or a secret).

    The challenge always points at the RFC 9728 resource metadata. Everything else, and
    every request with a valid token, passes through untouched, except that a request whose
    DPoP token and proof were accepted goes on as ``Bearer`` with the token marked proven.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        resource: str,
        verifier: CharterTokenVerifier,
        nonces: Callable[[], Awaitable[tokens.nonce.DpopNonces]] | None = None,
    ) -> None:
        self.app = app
        self.nonces = nonces
        self.path = path
        self.metadata = f'resource_metadata="{_metadata_url(resource)}"'
        self.verifier = verifier
        parts = urlsplit(resource)
        self.origin = f"{parts.scheme}://{parts.netloc}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self.path:
            await self.app(scope, receive, send)
            return
        nonces = None if self.nonces is None else await self.nonces()
        if nonces is not None:
            send = _with_nonce(send, nonces)
        header = Request(scope).headers.get("authorization")
        scheme, _, credential = (header or "").strip().partition(" ")
        if scheme.lower() == "dpop":
            proven = await self._check_dpop(scope, credential.strip(), nonces)
            if isinstance(proven, Response):
                await proven(scope, receive, send)
                return
            scope, handle = proven, _proven.set(credential.strip())
            try:
                await self._bearer(scope, receive, send, has_token=True)
            finally:
                _proven.reset(handle)
            return
        has_token = scheme.lower() == "bearer"  # no credential: a 401 without an error code
        if has_token and not _is_b64token(credential.strip()):
            response = _challenge_response(
                400,
                "invalid_request",
                "the Authorization header must be `Bearer <token>`",
                self.metadata,
            )
            await response(scope, receive, send)
            return
        await self._bearer(scope, receive, send, has_token=has_token)

    async def _check_dpop(
        self, scope: Scope, token: str, nonces: tokens.nonce.DpopNonces | None
    ) -> Scope | Response:
        """The request's scope with ``Authorization: Bearer <token>`` once its DPoP token and
        proof are accepted; else the 400 or 401 to answer."""
        if not _is_b64token(token):
            return _challenge_response(
                400,
                "invalid_request",
                "the Authorization header must be `DPoP <token>`",
                self.metadata,
                scheme="DPoP",
            )
        request = Request(scope)
        proofs = request.headers.getlist("dpop")
        verifier = self.verifier
        try:
            await tokens.verify_with_proof(
                verifier.home,
                token,
                proofs[0] if len(proofs) == 1 else None,
                method=request.method,
                url=self.origin + scope["path"],
                audience=verifier.audience,
                issuer_url=verifier.issuer,
                nonces=nonces,
            )
        except TokenInvalid as exc:
            log_refusal("DPoP request", exc)
            error = exc.error if isinstance(exc, tokens.dpop.DpopInvalid) else "invalid_token"
            return _challenge_response(401, error, exc.description, self.metadata, scheme="DPoP")
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"authorization", b"dpop")]
        headers.append((b"authorization", b"Bearer " + token.encode("ascii")))
        return {**scope, "headers": headers}

    async def _bearer(self, scope: Scope, receive: Receive, send: Send, *, has_token: bool) -> None:
        refusals: list[TokenInvalid] = []
        handle = _refusals.set(refusals)
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            rewrite = self._rewrite_401(scope, receive, watched, has_token, refusals)
            await self.app(scope, receive, rewrite)
        except LedgerUnavailable as exc:
            if started:
                raise
            # The database is down (PostgreSQL restarting): a clear 503, not a 500.
            log.warning("refused a request: %s", exc)
            await _error(503, "temporarily_unavailable", str(exc))(scope, receive, send)
        finally:
            _refusals.reset(handle)

    def _rewrite_401(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        has_token: bool,
        refusals: list[TokenInvalid],
    ) -> Send:
        replaced = False

        async def send_wrapper(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] == 401:
                replaced = True
                if not has_token:
                    response = _challenge_response(401, None, None, self.metadata)
                else:
                    refusal = refusals[-1] if refusals else TokenInvalid("refused")
                    dpop = isinstance(refusal, tokens.dpop.DpopInvalid)
                    response = _challenge_response(
                        401,
                        getattr(refusal, "error", "invalid_token"),
                        refusal.description,
                        self.metadata,
                        scheme="DPoP" if dpop else "Bearer",
                    )
                await response(scope, receive, send)
                return
            if replaced and message["type"] == "http.response.body":
                return  # the SDK's own 401 body: already answered
            await send(message)

        return send_wrapper


def _nonce_loader(home: Home) -> Callable[[], Awaitable[tokens.nonce.DpopNonces]]:
    """The home's DPoP nonces, loaded (their key made if need be) at the first request."""
    loaded: list[tokens.nonce.DpopNonces] = []

    async def load() -> tokens.nonce.DpopNonces:
        if not loaded:
            loaded.append(await tokens.nonce.DpopNonces.for_home(home))
        return loaded[0]

    return load


def _with_nonce(send: Send, nonces: tokens.nonce.DpopNonces) -> Send:
    """``send`` adding ``DPoP-Nonce: <current nonce>`` to the response (RFC 9449 §8.1)."""

    async def send_with_nonce(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"dpop-nonce"]
            headers.append((b"dpop-nonce", nonces.current().encode("ascii")))
            message = {**message, "headers": headers}
        await send(message)

    return send_with_nonce


#: RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def _is_b64token(value: str) -> bool:
    return _B64TOKEN.fullmatch(value) is not None


def _challenge_response(
    status: int,
    error: str | None,
    description: str | None,
    metadata: str,
    *,
    scheme: str = "Bearer",
) -> Response:
    params = [] if error is None else [f'error="{error}"', f'error_description="{description}"']
    if scheme == "DPoP":  # RFC 9449 §7.1: the algorithms a proof may use
        params.append(f'algs="{" ".join(tokens.dpop.ALGORITHMS)}"')
    body: dict[str, str] = {}
    if error is not None and description is not None:
        body = {"error": error, "error_description": description}
    return Response(
        json.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={
            "WWW-Authenticate": f"{scheme} " + ", ".join([*params, metadata]),
            "Cache-Control": "no-store",
        },
    )


def _metadata_url(resource: str) -> str:
    # RFC 9728 §3.1: the well-known suffix goes between the host and the resource's path.
    parts = urlsplit(resource)
    return f"{parts.scheme}://{parts.netloc}/.well-known/oauth-protected-resource{parts.path}"


def issuer_metadata(issuer_url: str) -> dict[str, Any]:
    """The issuer's metadata document (served as OpenID and RFC 8414 configuration)."""
    return {
        "issuer": issuer_url,
        "jwks_uri": f"{issuer_url}/.well-known/jwks.json",
        "introspection_endpoint": f"{issuer_url}/introspect",
        "introspection_endpoint_auth_methods_supported": ["bearer"],
        # Access tokens are RFC 9068 JWTs signed with Ed25519 only.
        "access_token_signing_alg_values_supported": [tokens.ALGORITHM],
        # RFC 9449 §5.1: the algorithms a DPoP proof may be signed with.
        "dpop_signing_alg_values_supported": list(tokens.dpop.ALGORITHMS),
        "scopes_supported": sorted(PLAIN_SCOPES),
        "protected_resources": [tokens.resource_url(issuer_url)],
        # RFC 8693 token exchange for sub-agents (issue 21): see _token_exchange.
        "token_endpoint": f"{issuer_url}/token",
        "token_endpoint_auth_methods_supported": ["none"],
        "grant_types_supported": [exchange.GRANT_TYPE],
        "response_types_supported": [],
    }


async def _token_exchange(home: Home, request: Request, issuer_url: str) -> Response:
    """``POST /token``: RFC 8693 token exchange (the only grant). The actor token
    authenticates the sub-agent; errors are RFC 6749 §5.2 JSON with status 400."""
    body = await _read_limited(request, MAX_INTROSPECT_BODY)
    if body is None:
        return _error(413, "invalid_request", "request body too large")
    pairs = parse_qs(body.decode("utf-8", "replace"))
    if any(len(values) > 1 for values in pairs.values()):
        return _error(400, "invalid_request", "a parameter was given more than once")
    form = {k: v[0] for k, v in pairs.items()}
    if form.get("grant_type") != exchange.GRANT_TYPE:
        return _error(400, "unsupported_grant_type", f"only {exchange.GRANT_TYPE} is supported")
    try:
        issued = await exchange.exchange(home, form, issuer_url=issuer_url)
    except exchange.ExchangeRefused as exc:
        log.info("token exchange refused: %s (%s)", exc.error, exc.description)
        return _error(400, exc.error, exc.description)
    return JSONResponse(issued.response(), headers={"Cache-Control": "no-store"})


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


async def serve_http(
    home: Home,
    *,
    host: str,
    port: int,
    issuer_url: str,
    introspection_secret: bytes | None = None,
    required_scopes: Sequence[str] = (),
    log_level: str = "warning",
    dpop_nonce: bool = False,
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
        dpop_nonce=dpop_nonce,
    )
    level = log_level.lower()
    # The access log (one line per request, at INFO) only where it would be shown: building
    # each line costs the event loop CPU under load even when it is filtered out (issue 26).
    access_log = level in ("info", "debug", "trace")
    config = uvicorn.Config(app, host=host, port=port, log_level=level, access_log=access_log)
    await uvicorn.Server(config).serve()
