"""Scoped agent tokens: EdDSA JWT access tokens (RFC 9068), their keys, checks and revocation.

A token is a compact JWS signed by the home's current issuer key::

    header  {"alg": "EdDSA", "kid": <RFC 7638 thumbprint>, "typ": "at+jwt"}
    claims  iss sub aud client_id owner charter scope iat nbf exp jti cnf.jkt

Every issued token has a row in ``tokens`` (never the token itself), which is what makes
revocation, introspection and key retirement possible. A token is accepted only if its
signature, algorithm, type, key id, issuer, audience, time claims and every required claim
check out, its row exists and is not revoked, and its agent is still active under the same
charter. :class:`TokenInvalid` carries the exact reason for the owner; remote callers only
ever see its opaque public message.

Issuer keys rotate: the signing key is the one ``issuer_keys`` row that is not retired, and a
retired key stays published (JWKS) while a token it signed has not expired.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from charter.clock import rfc3339
from charter.errors import (
    AgentRevoked,
    ConfigError,
    InvalidInput,
    NotFound,
    ScopeDenied,
    TokenInvalid,
)
from charter.evidence.charters import CharterView
from charter.evidence.jwk import b64url, b64url_decode, public_jwk, thumbprint, verify_signature
from charter.home import Home
from charter.keys import KeyHandle, compact_jws, issuer_ref
from charter.scopes import is_subset, validate_scopes
from charter.storage.db import transaction
from charter.tools.identity import check_reason, load_agent

ALGORITHM = "EdDSA"
TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret
#: ``typ`` values RFC 9068 §4 tells a resource server to accept.
_ACCEPTED_TYPES = ("at+jwt", "application/at+jwt")
DEFAULT_TTL_SECONDS = 900
MAX_TTL_SECONDS = 3600
#: The issuer when ``charter serve --http`` has never recorded one (its default address).
DEFAULT_ISSUER = "http://127.0.0.1:8765"
MCP_PATH = "/mcp"
#: Claims every Charter token carries; a token missing any of them is refused.
REQUIRED_CLAIMS = (
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "scope",
    "owner",
    "charter",
    "cnf",
)
_STRING_CLAIMS = ("iss", "sub", "jti", "client_id", "scope", "owner", "charter")
_TIME_CLAIMS = ("exp", "nbf", "iat")
#: Longest token accepted for parsing (ours are ~700 characters).
MAX_TOKEN_CHARS = 8192
#: Scope never granted by default: a token that can mint tokens must be asked for by name.
_ISSUE_SCOPE = "token:issue"


class IssuedToken(BaseModel):
    """A freshly issued token and the facts about it (the token is shown once, never stored)."""

    token: str = Field(description="The JWT; send it as `Authorization: Bearer <token>`.")
    jti: str = Field(description="Token id: what the owner revokes with `charter token revoke`.")
    audience: str = Field(description="The one service this token is for (`aud`).")
    scopes: list[str] = Field(description="What the token grants (`scope`).")
    issued_at: str
    expires_at: str
    kid: str = Field(description="Issuer key id (RFC 7638 thumbprint) that signed it.")


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """A checked request for a token: everything but the signature (see :func:`prepare`)."""

    agent_name: str
    charter: CharterView
    audience: str
    scopes: tuple[str, ...]
    jti: str
    issued_at: int
    expires_at: int

    def ledger_details(self) -> dict[str, Any]:
        """What the ledger records about the token (never the token)."""
        return {
            "jti": self.jti,
            "agent": self.agent_name,
            "audience": self.audience,
            "scopes": list(self.scopes),
            "expires_at": rfc3339(_from_epoch(self.expires_at)),
        }


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A token that passed every check."""

    claims: dict[str, Any]
    agent_name: str
    kid: str

    @property
    def jti(self) -> str:
        """Token id."""
        return str(self.claims["jti"])

    @property
    def subject(self) -> str:
        """The agent's SPIFFE ID."""
        return str(self.claims["sub"])

    @property
    def audience(self) -> str:
        """The audience the token was issued for."""
        return str(self.claims["aud"])

    @property
    def scopes(self) -> tuple[str, ...]:
        """Granted scopes."""
        return tuple(str(self.claims["scope"]).split())

    @property
    def expires_at(self) -> int:
        """``exp`` (seconds since the epoch)."""
        return int(self.claims["exp"])


class RotationResult(BaseModel):
    """What ``charter keys rotate`` did."""

    kid: str = Field(description="The new signing key.")
    retired_kid: str
    retired_published_until: str = Field(
        description="The retired key leaves the JWKS after this (its last token's expiry)."
    )


class TokenRecord(BaseModel):
    """A token's stored row (what revocation and listings show)."""

    jti: str
    kid: str
    agent: str
    agent_id: str
    audience: str
    scopes: list[str]
    issued_at: str
    expires_at: str
    revoked_at: str | None = None
    revoked_reason: str | None = None


# -- issuer and audience ---------------------------------------------------------------------


def issuer(home: Home) -> str:
    """The home's issuer identifier (``iss``): recorded by ``charter serve --http``."""
    row = home.conn.execute("SELECT value FROM meta WHERE key = 'issuer'").fetchone()
    return str(row[0]) if row else DEFAULT_ISSUER


def normalize_issuer(url: str) -> str:
    """Return ``url`` as an issuer identifier: an http(s) origin such as ``https://host:port``.

    The HTTP server's endpoints (``/mcp``, ``/.well-known/...``) hang off it, so it has no path.

    Raises:
        InvalidInput: otherwise.
    """
    url = url.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise InvalidInput(f"issuer is not a valid URL: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"issuer must be an http(s) URL with a host, got {url!r}")
    if parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        raise InvalidInput(
            f"issuer must be an origin like https://charter.example.com, got {url!r}"
        )
    return url


def set_issuer(home: Home, url: str) -> bool:
    """Record the issuer identifier; return True if it changed.

    Tokens issued under a previous issuer stop verifying (their ``iss`` no longer matches).
    """
    url = normalize_issuer(url)
    if url == issuer(home):
        return False
    with transaction(home.conn):
        home.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('issuer', ?)", (url,))
    home.meta["issuer"] = url
    return True


def resource_url(issuer_url: str) -> str:
    """The MCP resource (and token audience) of the HTTP server for ``issuer_url``."""
    return issuer_url.rstrip("/") + MCP_PATH


# -- issuing ---------------------------------------------------------------------------------


def prepare(
    home: Home,
    agent_name: str,
    charter: CharterView,
    *,
    audience: str,
    scopes: Sequence[str] | None = None,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    limit: Sequence[str] | None = None,
) -> TokenRequest:
    """Check a token request against the agent's charter (and ``limit``) and fix its claims.

    ``limit`` is the scope of the token the request was made with, if any: a token can never
    mint a broader one. With no ``scopes`` requested, the token gets the ceiling's scopes
    minus ``token:issue``. The expiry is cut to the charter's ``not_after``.

    Raises:
        InvalidInput: unknown scope or ``ttl_seconds`` outside 1..3600.
        ScopeDenied: the audience is not in the charter, or a scope exceeds the ceiling.
        AgentRevoked: the charter has expired.
    """
    if isinstance(ttl_seconds, bool) or not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise InvalidInput(f"ttl_seconds must be between 1 and {MAX_TTL_SECONDS}")
    if audience not in charter.audiences:
        allowed = ", ".join(charter.audiences) or "none"
        raise ScopeDenied(
            f"audience {audience!r} is not allowed by this agent's charter (allowed: {allowed})"
        )
    base = charter.scopes if limit is None else tuple(limit)
    wanted = (
        validate_scopes(scopes)
        if scopes is not None
        else sorted({s for s in base if s != _ISSUE_SCOPE})
    )
    for ceiling, what in ((charter.scopes, "this agent's charter"), (limit, "the calling token")):
        if ceiling is None:
            continue
        beyond = [s for s in wanted if not is_subset([s], ceiling)]
        if beyond:
            raise ScopeDenied(f"requested scope {beyond[0]!r} is not granted by {what}")
    now = int(home.clock.now().timestamp())
    # A token never outlives the charter it was issued under.
    expires_at = min(now + ttl_seconds, int(charter.not_after.timestamp()))
    if expires_at <= now:
        raise AgentRevoked("the agent's charter has expired; no token can be issued under it")
    return TokenRequest(
        agent_name=agent_name,
        charter=charter,
        audience=audience,
        scopes=tuple(wanted),
        jti=b64url(secrets.token_bytes(16)),
        issued_at=now,
        expires_at=expires_at,
    )


def sign(home: Home, request: TokenRequest) -> IssuedToken:
    """Sign ``request`` with the current issuer key; nothing is written.

    The token verifies only once :func:`record` has stored its row: a caller commits that
    together with whatever makes the issuance official (the tool's outcome entry, the owner's
    ledger event), so a token whose issuance was not recorded never works.
    """
    ensure_issuer_keys(home)
    kid = _current_kid(home.conn)
    claims = _claims(home, request)
    return IssuedToken(
        token=encode(claims, _signing_key(home, kid)),
        jti=request.jti,
        audience=request.audience,
        scopes=list(request.scopes),
        issued_at=rfc3339(_from_epoch(request.issued_at)),
        expires_at=rfc3339(_from_epoch(request.expires_at)),
        kid=kid,
    )


def record(conn: sqlite3.Connection, request: TokenRequest, issued: IssuedToken) -> None:
    """Store the row of a token :func:`sign` made (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO tokens(jti, kid, agent_name, agent_id, charter, audience, scopes,"
        " issued_at, expires_at) VALUES (?,?,?,?,?,?,?,?,?)",
        (
            request.jti,
            issued.kid,
            request.agent_name,
            request.charter.agent_id,
            request.charter.hash,
            request.audience,
            " ".join(request.scopes),
            issued.issued_at,
            issued.expires_at,
        ),
    )


def issue(
    home: Home, request: TokenRequest, *, on_commit: Callable[[str], None] | None = None
) -> IssuedToken:
    """Sign ``request`` and record its row in one transaction on the home's connection.

    ``on_commit(kid)`` runs inside that transaction (the owner CLI records its ledger event
    there). The MCP tool instead commits :func:`record` with its outcome entry.
    """
    with transaction(home.conn):
        issued = sign(home, request)
        record(home.conn, request, issued)
        if on_commit is not None:
            on_commit(issued.kid)
    return issued


def issue_for_owner(
    home: Home,
    agent_name: str,
    *,
    audience: str,
    scopes: Sequence[str] | None = None,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    passphrase: bytes | None = None,
) -> IssuedToken:
    """The owner issues a token for one of their agents (``charter token issue``).

    Recorded as an owner-signed ``token.issue`` event in the same transaction as the row.

    Raises:
        NotFound / AgentRevoked: unknown, revoked or expired agent.
        InvalidInput / ScopeDenied: as for :func:`prepare`.
    """
    agent = load_agent(home, agent_name)
    request = prepare(
        home,
        agent.name,
        agent.charter,
        audience=audience,
        scopes=scopes,
        ttl_seconds=ttl_seconds,
    )
    home.owner_key(passphrase)  # a wrong passphrase fails before anything is signed

    def record(kid: str) -> None:
        home.record_owner_event(
            "token.issue",
            request.ledger_details() | {"agent_id": agent.agent_id, "kid": kid},
            passphrase=passphrase,
        )

    return issue(home, request, on_commit=record)


def encode(claims: dict[str, Any], key: KeyHandle) -> str:
    """Sign ``claims`` as a compact JWS with header ``{alg: EdDSA, kid, typ: at+jwt}``."""
    return compact_jws(claims, key, TOKEN_TYPE)


def _claims(home: Home, request: TokenRequest) -> dict[str, Any]:
    view = request.charter
    return {
        "iss": issuer(home),
        "sub": view.agent_id,
        # RFC 9068 §2.2: with no resource owner involved, client_id and sub name the client.
        "client_id": view.agent_id,
        "aud": request.audience,
        "owner": view.owner_id,
        "charter": view.hash,
        "scope": " ".join(request.scopes),
        "iat": request.issued_at,
        "nbf": request.issued_at,
        "exp": request.expires_at,
        "jti": request.jti,
        "cnf": {"jkt": thumbprint(view.agent_key)},
    }


# -- verifying -------------------------------------------------------------------------------


def verify(
    home: Home,
    token: str,
    *,
    audience: str | None,
    issuer_url: str | None = None,
) -> VerifiedToken:
    """Check ``token`` completely; ``audience=None`` accepts any audience (introspection).

    Raises:
        TokenInvalid: with ``reason`` saying exactly which check failed.
    """
    now = home.clock.now().timestamp()
    header, signing_input, payload_b64, signature = _split(token)
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise TokenInvalid(f"algorithm {alg!r} is not accepted (only {ALGORITHM})")
    if "crit" in header:
        raise TokenInvalid("the header has critical extensions this verifier does not support")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYPES:
        raise TokenInvalid(f"token type {typ!r} is not an access token (want {TOKEN_TYPE!r})")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise TokenInvalid("the header names no key id")
    public_key = _published_key(home.conn, kid, now)
    if public_key is None:
        raise TokenInvalid(_unpublished_reason(home.conn, kid))
    if not verify_signature(public_key, signing_input, signature):
        raise TokenInvalid("the signature does not verify")
    claims = _json_object(payload_b64, "payload")
    _check_claims(claims, now, audience=audience, issuer_url=issuer_url or issuer(home))
    return VerifiedToken(claims=claims, agent_name=_check_state(home, claims, kid), kid=kid)


def introspect(home: Home, token: str) -> dict[str, Any]:
    """RFC 7662 introspection: the token's claims with ``active: true``, else only ``false``."""
    try:
        verified = verify(home, token, audience=None)
    except TokenInvalid:
        return {"active": False}
    claims = verified.claims
    return {
        "active": True,
        "token_type": "Bearer",
        **{k: claims[k] for k in REQUIRED_CLAIMS},
    }


def _split(token: str) -> tuple[dict[str, Any], bytes, str, bytes]:
    if len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise TokenInvalid("not a compact JWT")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise TokenInvalid("not a compact JWT (want three dot-separated parts)")
    header = _json_object(parts[0], "header")
    try:
        signature = b64url_decode(parts[2])
    except ValueError:
        raise TokenInvalid("the signature is not base64url") from None
    return header, f"{parts[0]}.{parts[1]}".encode("ascii"), parts[1], signature


def _json_object(part: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(part), object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError):
        raise TokenInvalid(f"the {what} is not base64url JSON without duplicate keys") from None
    if not isinstance(value, dict):
        raise TokenInvalid(f"the {what} is not a JSON object")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def _check_claims(
    claims: dict[str, Any], now: float, *, audience: str | None, issuer_url: str
) -> None:
    missing = [c for c in REQUIRED_CLAIMS if c not in claims]
    if missing:
        raise TokenInvalid(f"missing claims: {', '.join(missing)}")
    for name in _STRING_CLAIMS:
        if not isinstance(claims[name], str):
            raise TokenInvalid(f"claim {name!r} must be a string")
    for name in _TIME_CLAIMS:
        value = claims[name]
        if not isinstance(value, int) or isinstance(value, bool):
            raise TokenInvalid(f"claim {name!r} must be an integer (seconds since the epoch)")
    cnf = claims["cnf"]
    if not isinstance(cnf, dict) or not isinstance(cnf.get("jkt"), str):
        raise TokenInvalid("claim 'cnf' must hold the agent key thumbprint 'jkt'")
    if claims["iss"] != issuer_url:
        raise TokenInvalid(f"issuer {claims['iss']!r} is not this issuer ({issuer_url!r})")
    if not isinstance(claims["aud"], str):
        raise TokenInvalid("claim 'aud' must be a single string")
    if audience is not None and claims["aud"] != audience:
        raise TokenInvalid(f"audience {claims['aud']!r} is not {audience!r}")
    if now >= claims["exp"]:
        raise TokenInvalid(f"expired at {rfc3339(_from_epoch(claims['exp']))}")
    if now < claims["nbf"]:
        raise TokenInvalid(f"not valid before {rfc3339(_from_epoch(claims['nbf']))}")
    if now < claims["iat"]:
        raise TokenInvalid("issued in the future")
    if claims["exp"] - claims["iat"] > MAX_TTL_SECONDS:
        raise TokenInvalid(f"lifetime exceeds the maximum of {MAX_TTL_SECONDS} seconds")


def _check_state(home: Home, claims: dict[str, Any], kid: str) -> str:
    """Check the token's row and its agent; return the agent's name."""
    row = home.conn.execute(
        "SELECT t.kid, t.agent_name, t.agent_id, t.charter, t.audience, t.scopes, t.revoked_at,"
        " a.status, a.charter_hash FROM tokens t LEFT JOIN agents a ON a.name = t.agent_name"
        " WHERE t.jti = ?",
        (claims["jti"],),
    ).fetchone()
    if row is None:
        raise TokenInvalid(f"token id {claims['jti']!r} was never issued by this home")
    row_kid, name, agent_id, charter, aud, scopes, revoked_at, status, current = row
    if (row_kid, agent_id, charter, aud, scopes) != (
        kid,
        claims["sub"],
        claims["charter"],
        claims["aud"],
        claims["scope"],
    ):
        raise TokenInvalid("the token does not match what was issued under its id")
    if revoked_at is not None:
        raise TokenInvalid(f"token {claims['jti']!r} was revoked at {revoked_at}")
    if status != "active":
        raise TokenInvalid(f"agent {name!r} has been revoked")
    if current != charter:
        raise TokenInvalid(f"agent {name!r} has a new charter since this token was issued")
    return str(name)


# -- revoking --------------------------------------------------------------------------------


def revoke(
    home: Home, jti: str, *, reason: str = "", passphrase: bytes | None = None
) -> TokenRecord:
    """Revoke one token by id: an owner-signed ``token.revoke`` entry; it is refused at once.

    Raises:
        NotFound: unknown token id.  InvalidInput: already revoked, or reason too long.
    """
    record = get_token(home, jti)
    if record.revoked_at is not None:
        raise InvalidInput(f"token {jti!r} is already revoked")
    check_reason(reason)
    now = rfc3339(home.clock.now())
    with transaction(home.conn):
        home.conn.execute(
            "UPDATE tokens SET revoked_at = ?, revoked_reason = ? WHERE jti = ?",
            (now, reason or None, jti),
        )
        home.record_owner_event(
            "token.revoke",
            {"jti": jti, "agent": record.agent, "agent_id": record.agent_id, "reason": reason},
            passphrase=passphrase,
        )
    return get_token(home, jti)


def get_token(home: Home, jti: str) -> TokenRecord:
    """One token's row.

    Raises:
        NotFound: unknown token id.
    """
    row = home.conn.execute(
        "SELECT jti, kid, agent_name, agent_id, audience, scopes, issued_at, expires_at,"
        " revoked_at, revoked_reason FROM tokens WHERE jti = ?",
        (jti,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no token with id {jti!r}")
    return TokenRecord(
        jti=row[0],
        kid=row[1],
        agent=row[2],
        agent_id=row[3],
        audience=row[4],
        scopes=row[5].split(),
        issued_at=row[6],
        expires_at=row[7],
        revoked_at=row[8],
        revoked_reason=row[9],
    )


# -- issuer keys -----------------------------------------------------------------------------


def ensure_issuer_keys(home: Home) -> None:
    """Register the issuer key made by ``charter init`` if no issuer key is registered yet."""
    if home.conn.execute("SELECT 1 FROM issuer_keys LIMIT 1").fetchone():
        return
    kid = home.meta.get("issuer_kid")
    if not kid:
        raise ConfigError("this home has no issuer key: was `charter init` interrupted?")
    key = _signing_key(home, kid)
    with transaction(home.conn):
        home.conn.execute(
            "INSERT OR IGNORE INTO issuer_keys(kid, public_key, created_at) VALUES (?,?,?)",
            (kid, b64url(key.public_key), home.meta.get("created_at") or rfc3339(home.clock.now())),
        )


def jwks(home: Home) -> dict[str, Any]:
    """The JWKS (RFC 8037 OKP keys) of every published issuer key, the signing key first."""
    ensure_issuer_keys(home)
    rows = home.conn.execute(
        "SELECT kid, public_key FROM issuer_keys k WHERE k.retired_at IS NULL OR EXISTS"
        " (SELECT 1 FROM tokens t WHERE t.kid = k.kid AND t.expires_at > ?)"
        " ORDER BY retired_at IS NOT NULL, created_at DESC",
        (rfc3339(home.clock.now()),),
    ).fetchall()
    return {
        "keys": [
            public_jwk(b64url_decode(pk)) | {"kid": kid, "use": "sig", "alg": ALGORITHM}
            for kid, pk in rows
        ]
    }


def rotate(home: Home, *, passphrase: bytes | None = None) -> RotationResult:
    """Make a new signing key; the old one stays published until its last token expires.

    Recorded as an owner-signed ``keys.rotate`` event.
    """
    ensure_issuer_keys(home)
    home.owner_key(passphrase)  # fail before a key file is written
    new = KeyHandle.of(home.signer, home.signer.create(issuer_ref("")))
    now = rfc3339(home.clock.now())
    with transaction(home.conn):
        old = _current_kid(home.conn)
        row = home.conn.execute(
            "SELECT max(expires_at) FROM tokens WHERE kid = ? AND expires_at > ?", (old, now)
        ).fetchone()
        until = row[0] or now
        home.conn.execute("UPDATE issuer_keys SET retired_at = ? WHERE kid = ?", (now, old))
        home.conn.execute(
            "INSERT INTO issuer_keys(kid, public_key, created_at) VALUES (?,?,?)",
            (new.kid, b64url(new.public_key), now),
        )
        home.conn.execute("UPDATE meta SET value = ? WHERE key = 'issuer_kid'", (new.kid,))
        home.record_owner_event(
            "keys.rotate",
            {
                "kid": new.kid,
                "key": new.jwk(),
                "retired_kid": old,
                "retired_published_until": until,
            },
            passphrase=passphrase,
        )
    home.meta["issuer_kid"] = new.kid
    return RotationResult(kid=new.kid, retired_kid=old, retired_published_until=until)


def _published_key(conn: sqlite3.Connection, kid: str, now: float) -> bytes | None:
    """The key if it signs, or still has an unexpired token (the JWKS publishes the same)."""
    row = conn.execute(
        "SELECT public_key FROM issuer_keys k WHERE k.kid = ? AND (k.retired_at IS NULL"
        " OR EXISTS (SELECT 1 FROM tokens t WHERE t.kid = k.kid AND t.expires_at > ?))",
        (kid, rfc3339(_from_epoch(now))),
    ).fetchone()
    return None if row is None else b64url_decode(row[0])


def _unpublished_reason(conn: sqlite3.Connection, kid: str) -> str:
    if conn.execute("SELECT 1 FROM issuer_keys WHERE kid = ?", (kid,)).fetchone():
        return f"key id {kid!r} was retired and every token it signed has expired"
    return f"key id {kid!r} is not a published issuer key"


def _current_kid(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT kid FROM issuer_keys WHERE retired_at IS NULL").fetchone()
    if row is None:
        raise ConfigError("this home has no current issuer key")
    return str(row[0])


def _signing_key(home: Home, kid: str) -> KeyHandle:
    key = KeyHandle.of(home.signer, issuer_ref(kid))  # the signer keeps it loaded
    if key.kid != kid:
        raise ConfigError(f"issuer key file for {kid} holds a different key")
    return key


def _from_epoch(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)
