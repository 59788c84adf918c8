"""``token_http_request``: call a service with a fresh DPoP-bound Charter token the model never
sees (issue 20 item 4).

The agent names an audience its charter allows and a URL under it. Charter, server-side:

1. checks the request (audience, scopes, URL under the audience, https except on loopback,
   headers) before any intent;
2. in the intent's transaction (after any approval), mints a token bound to the agent's own
   key (``cnf.jkt`` = its thumbprint, ``token_type`` DPoP: refused as a bearer token) valid
   for :data:`TTL_SECONDS`, and stores its row there, so the token exists exactly when its
   intent does and verifies (and introspects) while the request is under way;
3. signs a DPoP proof for this method and URL with the agent's key through the signer seam
   (:class:`~charter.keys.signer.KeyHandle`), sends ``Authorization: DPoP <token>`` and
   ``DPoP: <proof>``, follows no redirect, and returns the response with every occurrence
   of the token, its signature or the proof replaced by ``[REDACTED:token]`` /
   ``[REDACTED:dpop_proof]``.

The ledger records the token's id, audience, scopes, binding and the target (method, scheme,
host, port), never the token or the proof; the tool's result never holds either.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from charter.errors import AgentRevoked, InvalidInput, ScopeDenied, ServiceError
from charter.evidence.jwk import public_jwk
from charter.storage.vault import SecretValue
from charter.storage.vault_hosts import DEFAULT_PORTS, is_loopback, normalize_host
from charter.tools.plan import Plan
from charter.tools.tokens.dpop import make_proof
from charter.tools.tokens.issue import IssuedToken, TokenRequest, prepare, record, sign_as
from charter.tools.tokens.keys import current_kid, ensure_issuer_keys, issuer_in
from charter.tools.vault import replies
from charter.tools.vault.redact import Redactor

if TYPE_CHECKING:
    import httpx2

    from charter.evidence.entries import Entry
    from charter.home import Home
    from charter.storage.ports import Tx
    from charter.tools.identity import AgentContext

#: Lifetime of the token minted for one request (seconds).
TTL_SECONDS = 60
MAX_RESPONSE_BYTES = 1024 * 1024
#: Seconds for the whole exchange, and for any single connect, read or write.
TOTAL_TIMEOUT, IO_TIMEOUT = 30.0, 10.0
#: Request headers an agent may not set: the credentials are Charter's, and the rest would
#: route or frame the request differently from what was checked (or ask for an encoding
#: Charter cannot decode, and so cannot redact).
_FORBIDDEN_HEADERS = frozenset(
    {
        *("authorization", "dpop", "host", "content-length", "transfer-encoding"),
        *("connection", "te", "upgrade", "trailer", "accept-encoding"),
    }
)
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class ResponseHeader(BaseModel):
    """One response header (redacted)."""

    name: str
    value: str


class TokenHttpResponseOut(BaseModel):
    """The service's response, with the token and the proof redacted wherever they appear."""

    status: int
    reason: str
    headers: list[ResponseHeader]
    body: str
    body_encoding: Literal["utf-8", "base64"] = Field(
        description="'base64' when the body is not UTF-8 text."
    )
    truncated: bool = Field(description=f"True when the body was cut at {MAX_RESPONSE_BYTES} B.")
    token_jti: str = Field(description="The id of the token Charter minted for this request.")


@dataclass
class _Minted:
    """The token minted in the intent's transaction (for the act that follows it)."""

    issued: IssuedToken | None = None


async def token_request_plan(
    home: Home,
    agent: AgentContext,
    *,
    audience: str,
    method: str,
    url: str,
    headers: dict[str, str] | None,
    body: str | None,
    scopes: Sequence[str] | None,
) -> Plan[TokenHttpResponseOut]:
    """Check a request to ``url`` (under ``audience``); return the plan that mints a token
    bound to ``agent``'s key, signs its proof and sends it.

    Raises:
        InvalidInput: a URL not under the audience, plain http off loopback, a header the
            agent may not set, or bad scopes.
        ScopeDenied: an audience or scope the charter (or the calling token) does not grant.
        AgentRevoked: the charter has expired.
    The act raises ServiceError: connection failure, timeout, an undecodable response.
    """

    request = prepare(
        home,
        agent.name,
        agent.charter,
        audience=audience,
        scopes=scopes,
        ttl_seconds=TTL_SECONDS,
        limit=agent.token_scopes,
        dpop_jwk=public_jwk(agent.key.public_key),
    )
    target = _check_url(audience, url)
    request_headers = _check_headers(headers or {})
    await ensure_issuer_keys(home)  # a new home's first token: register its issuer key
    minted = _Minted()

    def mint(tx: Tx) -> None:
        minted.issued = _mint(home, tx, request)

    async def act(_intent: Entry) -> TokenHttpResponseOut:
        issued = minted.issued
        assert issued is not None  # the intent (and so the mint) is committed
        proof = make_proof(
            agent.key,
            method=method,
            url=str(target),
            now=home.clock.now(),
            access_token=issued.token,
        )
        values = [
            SecretValue("token", 0, issued.token.encode("ascii")),
            SecretValue("token", 1, issued.token.rpartition(".")[2].encode("ascii")),
            SecretValue("dpop_proof", 0, proof.encode("ascii")),
        ]
        # NOTE: literal forms only (per-character patterns of fresh ~750-byte values take
        # ~0.5 s to compile): the token and proof are base64url and dots, which encoders
        # leave alone. Redaction catches a careless echo; a service that wants the model to
        # see the token can always transform it (it holds the token anyway).
        redactor = Redactor(values, literal=True)
        sent = [*request_headers, ("Authorization", f"DPoP {issued.token}"), ("DPoP", proof)]
        sent.append(("Accept-Encoding", "identity"))
        content = None if body is None else body.encode("utf-8")
        return await _send((method, target, sent, content), redactor, issued.jti)

    def outcome(out: TokenHttpResponseOut) -> dict[str, Any]:
        issued = minted.issued
        assert issued is not None
        facts = {"kid": issued.kid, "expires_at": issued.expires_at}
        return facts | {"status": out.status, "truncated": out.truncated}

    # The expiry is fixed when the token is minted, with the intent: its ttl is recorded.
    details = {k: v for k, v in request.ledger_details().items() if k != "expires_at"}
    return Plan(
        details=details | {"ttl_seconds": TTL_SECONDS, "method": method} | _where(target),
        act=act,
        intent_effects=(mint,),
        outcome=outcome,
    )


def _mint(home: Home, tx: Tx, request: TokenRequest) -> IssuedToken:
    """Sign ``request`` re-timed to now and store its row (inside the intent's transaction)."""
    now = int(home.clock.now().timestamp())
    expires = min(now + TTL_SECONDS, int(request.charter.not_after.timestamp()))
    if expires <= now:
        raise AgentRevoked("the agent's charter has expired; no token can be issued under it")
    timed = dataclasses.replace(request, issued_at=now, expires_at=expires)
    issued = sign_as(home, current_kid(tx.tokens), issuer_in(tx), timed)
    record(tx, timed, issued)
    return issued


def _check_url(audience: str, url: str) -> httpx2.URL:
    """``url`` (fragment dropped) once it is under ``audience``: same scheme, host and port,
    and a path within the audience's; https unless the host is loopback."""
    import httpx2

    try:
        base, target = httpx2.URL(audience), httpx2.URL(url)
    except (httpx2.InvalidURL, ValueError, TypeError):
        raise InvalidInput("the URL (or the audience) cannot be parsed as a URL") from None
    if base.scheme not in DEFAULT_PORTS or not base.raw_host:
        raise InvalidInput(f"audience {audience!r} is not an http(s) URL: no request can go to it")
    if target.scheme not in DEFAULT_PORTS or not target.raw_host:
        raise InvalidInput("the URL must be an absolute http(s) URL")
    if target.userinfo:
        raise InvalidInput("the URL may not carry user info")

    def origin(u: httpx2.URL) -> tuple[str, str, int]:
        try:
            host = normalize_host(u.raw_host.decode("ascii"))
        except (InvalidInput, UnicodeDecodeError):
            raise InvalidInput("the URL's host is not a valid host name") from None
        return u.scheme, host, u.port or DEFAULT_PORTS[u.scheme]

    if origin(target) != origin(base):
        raise ScopeDenied(f"the URL is not on the audience {audience!r} (scheme, host and port)")
    if any(
        urllib.parse.unquote(part) in (".", "..")
        for part in target.raw_path.split(b"?")[0].decode("ascii", "replace").split("/")
    ):
        raise InvalidInput("the URL's path may not hold '.' or '..' segments")
    prefix = base.path.rstrip("/")
    if prefix and not (target.path == prefix or target.path.startswith(prefix + "/")):
        raise ScopeDenied(f"the URL's path is not under the audience {audience!r}")
    if target.scheme == "http" and not is_loopback(origin(target)[1]):
        raise InvalidInput("tokens are only sent over https (plain http only to loopback hosts)")
    return target.copy_with(fragment=None)


def _check_headers(headers: dict[str, str]) -> list[tuple[str, str]]:
    for key, value in headers.items():
        lower = key.lower()
        if not _HEADER_NAME.match(key) or lower in _FORBIDDEN_HEADERS or lower.startswith("proxy-"):
            raise InvalidInput(f"header {key[:100]!r} may not be set by an agent")
        if _CONTROL.search(value):
            raise InvalidInput(f"header {key!r} holds control characters")
    return list(headers.items())


def _where(url: httpx2.URL) -> dict[str, Any]:
    return {
        "scheme": url.scheme,
        "host": normalize_host(url.raw_host.decode("ascii")),
        "port": url.port or DEFAULT_PORTS[url.scheme],
    }


async def _send(
    request: tuple[str, httpx2.URL, list[tuple[str, str]], bytes | None],
    redactor: Redactor,
    jti: str,
) -> TokenHttpResponseOut:
    """Send once (no redirect followed), read at most the cap, redact."""
    import anyio
    import httpx2

    method, url, headers, content = request
    host = url.raw_host.decode("ascii", "replace")
    try:
        with anyio.fail_after(TOTAL_TIMEOUT):
            async with httpx2.AsyncClient(
                follow_redirects=False, trust_env=False, timeout=httpx2.Timeout(IO_TIMEOUT)
            ) as client:
                outgoing = client.build_request(method, url, headers=headers, content=content)
                response = await client.send(outgoing, stream=True)
                try:
                    compressed = replies.refuse_undecodable(response, host, "the token")
                    data, truncated = await replies.read_capped(
                        response, MAX_RESPONSE_BYTES, redactor.max_length
                    )
                finally:
                    await response.aclose()
    except TimeoutError:
        raise ServiceError(f"request to {host} timed out after {TOTAL_TIMEOUT:g}s") from None
    except httpx2.TimeoutException:
        raise ServiceError(f"request to {host} timed out") from None
    except httpx2.ConnectError:
        raise ServiceError(f"could not connect to {host}") from None
    except httpx2.HTTPError as exc:
        # NOTE: never the exception text: it may quote a header, and so the token.
        raise ServiceError(f"request to {host} failed ({type(exc).__name__})") from None
    text, encoding = replies.redacted_body(redactor, data, truncated, MAX_RESPONSE_BYTES)
    return TokenHttpResponseOut(
        status=response.status_code,
        reason=replies.redacted_reason(response, redactor),
        headers=[
            ResponseHeader(name=k, value=v)
            for k, v in replies.redacted_headers(response, redactor, compressed)
        ],
        body=text,
        body_encoding=encoding,
        truncated=truncated,
        token_jti=jti,
    )
