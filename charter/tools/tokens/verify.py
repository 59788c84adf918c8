"""Verifying Charter tokens: every check, each refusal a typed reason, and introspection.

A token is accepted only if its signature, algorithm, type, key id, issuer, audience, time
claims and every required claim check out, it is exactly the token issued under its id (its
row holds the SHA-256 of its claim set, so the row is authoritative for every claim and
nothing, ``exp`` included, can be re-signed), it is not revoked, and its agent is still
active under the same charter. PyJWT checks the signature, the algorithm, the required
claims, ``iss`` and ``aud`` (:mod:`charter.tools.tokens.codec`); the header, the time claims
(against Charter's clock) and the row are checked here. A refusal raises one of the reasons
in :mod:`charter.tools.tokens.errors`; ``reason`` carries the exact detail for the owner.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from charter.clock import parse_rfc3339, rfc3339
from charter.errors import TokenInvalid
from charter.evidence.jwk import b64url_decode
from charter.home import Home
from charter.storage.ports import Tx
from charter.storage.tokens import TokenRepo
from charter.tools.tokens import errors as why
from charter.tools.tokens.codec import ALGORITHM, TOKEN_TYPE, decode, json_object
from charter.tools.tokens.keys import issuer_in

#: ``typ`` values RFC 9068 §4 tells a resource server to accept.
_ACCEPTED_TYPES = ("at+jwt", "application/at+jwt")
MAX_TTL_SECONDS = 3600
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
#: Clock skew tolerated on ``exp``, ``nbf`` and ``iat`` (PyJWT's ``leeway``): none, since the
#: issuer and every verifier of these tokens share one clock.
LEEWAY_SECONDS = 0


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A token that passed every check."""

    claims: dict[str, Any]
    agent_name: str
    kid: str
    #: The client key thumbprint of a DPoP-bound token (RFC 9449): such a token is accepted
    #: only with a proof signed by that key (:mod:`charter.tools.tokens.proof`). None for a
    #: token bound to the agent's own key, which may be used as a bearer token.
    dpop_jkt: str | None = None

    @property
    def token_type(self) -> str:
        """``DPoP`` for a DPoP-bound token, else ``Bearer``."""
        return "Bearer" if self.dpop_jkt is None else "DPoP"

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


class VerifiedTokens:
    """The claim sets of tokens one verifier has checked completely, by their exact text.

    A token seen again (the same string, for the same audience and issuer) skips what cannot
    change for that string: parsing, the signature and the claims' shape. What can change is
    checked again on every use, in one unit of work, by the same code as a first verification:
    the time claims against the clock, that its issuer key is still published, its row (the
    digest of the claim set, revocation), its agent and that agent's chain. So a token revoked
    (or whose agent was revoked, re-chartered, or whose lifetime ended) is refused at its next
    use, exactly as without the cache. Entries are the canonical claim text the token's row
    pins by its digest, so the check on a hit is against what was issued, not against a copy
    that could have been changed in memory. At most ``capacity`` entries (least recently used
    dropped); an entry is dropped when its token is refused.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, str | None, str | None], tuple[str, str]] = (
            OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, str | None, str | None]) -> tuple[str, str] | None:
        """(canonical claims text, key id) of ``key`` (token, audience, issuer), or None."""
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
        return hit

    def put(self, key: tuple[str, str | None, str | None], verified: VerifiedToken) -> None:
        """Remember a token that passed every check."""
        self._entries[key] = (_canonical(verified.claims), verified.kid)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def drop(self, key: tuple[str, str | None, str | None]) -> None:
        """Forget ``key`` (its token was refused)."""
        self._entries.pop(key, None)


# -- verifying -------------------------------------------------------------------------------


async def verify(
    home: Home,
    token: str,
    *,
    audience: str | None,
    issuer_url: str | None = None,
    cache: VerifiedTokens | None = None,
) -> VerifiedToken:
    """Check ``token`` completely; ``audience=None`` accepts any audience (introspection).

    ``issuer_url`` is the issuer to accept (a server passes the one it advertises); by default
    the home's. The header is read here; the rest (key lookup, signature, claims, the token's
    row and its agent) is one unit of work on the store's thread. With ``cache`` (a server's)
    and ``issuer_url``, a token it verified before is checked again for everything that can
    change, in one unit of work, without parsing it or checking its signature again (see
    :class:`VerifiedTokens`).

    Raises:
        TokenInvalid: one of the typed reasons in :mod:`charter.tools.tokens.errors`, with
        ``reason`` saying exactly which check failed (and ``jti`` once the payload is read).
    """
    now = home.clock.now().timestamp()
    if cache is None or issuer_url is None:  # the home's issuer can change: check it each time
        return await _verify(home, token, now, audience, issuer_url)
    key = (token, audience, issuer_url)
    hit = cache.get(key)
    try:
        if hit is None:
            verified = await _verify(home, token, now, audience, issuer_url)
            cache.put(key, verified)
            return verified
        return await home.read(lambda tx: _recheck_in(tx, hit, now))
    except TokenInvalid:
        cache.drop(key)
        raise


async def _verify(
    home: Home, token: str, now: float, audience: str | None, issuer_url: str | None
) -> VerifiedToken:
    header = _header(token)
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise why.Malformed(f"algorithm {alg!r} is not accepted (only {ALGORITHM})")
    if "crit" in header:
        raise why.Malformed("the header has critical extensions this verifier does not support")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYPES:
        raise why.Malformed(f"token type {typ!r} is not an access token (want {TOKEN_TYPE!r})")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise why.Malformed("the header names no key id")
    return await home.read(lambda tx: _verify_in(tx, token, kid, now, audience, issuer_url))


def _verify_in(
    tx: Tx, token: str, kid: str, now: float, audience: str | None, issuer_url: str | None
) -> VerifiedToken:
    public_key = _published_key(tx.tokens, kid, now)
    claims = decode(
        token,
        public_key,
        required=REQUIRED_CLAIMS,
        audience=audience,
        issuer=issuer_url or issuer_in(tx),
    )
    return _check_current(tx, claims, kid, claims_digest(claims), now)


def _recheck_in(tx: Tx, entry: tuple[str, str], now: float) -> VerifiedToken:
    """A cached token (see :class:`VerifiedTokens`): everything that can change, again."""
    text, kid = entry
    _published_key(tx.tokens, kid, now)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return _check_current(tx, json.loads(text), kid, digest, now)


def _published_key(repo: TokenRepo, kid: str, now: float) -> bytes:
    public_key = repo.published_key(kid, rfc3339(_from_epoch(now)))
    if public_key is None:
        raise why.UnknownKey(
            f"key id {kid!r} was retired and every token it signed has expired"
            if repo.issuer_key_exists(kid)
            else f"key id {kid!r} is not a published issuer key"
        )
    return public_key


def _check_current(
    tx: Tx, claims: dict[str, Any], kid: str, digest: str, now: float
) -> VerifiedToken:
    """The checks of a decoded token that depend on the clock and the home's state."""
    repo = tx.tokens
    try:
        _check_claims(claims, now)
        name, dpop_jkt = _check_state(repo, claims, kid, digest)
        # A sub-agent's token stops with any ancestor (issue 21): the same one-query walk
        # the gate runs (for an agent the owner chartered it repeats _check_state's check).
        refusal = tx.agent_refusal(name, claims["charter"])
        if refusal is not None:
            raise why.AgentRevokedToken(refusal.public_message)
    except TokenInvalid as exc:
        jti = claims.get("jti")
        exc.jti = jti if isinstance(jti, str) else None
        raise
    return VerifiedToken(claims=claims, agent_name=name, kid=kid, dpop_jkt=dpop_jkt)


async def introspect(
    home: Home,
    token: str,
    *,
    issuer_url: str | None = None,
    on_refusal: Callable[[TokenInvalid], None] | None = None,
) -> dict[str, Any]:
    """RFC 7662 introspection: the token's claims with ``active: true``, else only ``false``.

    RFC 7662 §2.2 says not to tell why a token is inactive: the reason goes to
    ``on_refusal`` (the HTTP server logs it), never into the answer.
    """
    try:
        verified = await verify(home, token, audience=None, issuer_url=issuer_url)
    except TokenInvalid as exc:
        if on_refusal is not None:
            on_refusal(exc)
        return {"active": False}
    claims = verified.claims
    return {
        "active": True,
        "token_type": verified.token_type,
        **{k: claims[k] for k in REQUIRED_CLAIMS},
    }


def _header(token: str) -> dict[str, Any]:
    """The header of a compact JWS, read before PyJWT is given the token (it names the key)."""
    if len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise why.Malformed("not a compact JWT")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise why.Malformed("not a compact JWT (want three dot-separated parts)")
    try:
        raw = b64url_decode(parts[0])
    except ValueError:
        raise why.Malformed("the header is not base64url JSON without duplicate keys") from None
    return json_object(raw, "header")


def _check_claims(claims: dict[str, Any], now: float) -> None:
    """What PyJWT left: the claims' types, the time claims against ``now``, the lifetime."""
    for name in _STRING_CLAIMS:
        if not isinstance(claims[name], str):
            raise why.Malformed(f"claim {name!r} must be a string")
    for name in _TIME_CLAIMS:
        value = claims[name]
        if not isinstance(value, int) or isinstance(value, bool):
            raise why.Malformed(f"claim {name!r} must be an integer (seconds since the epoch)")
    cnf = claims["cnf"]
    if not isinstance(cnf, dict) or not isinstance(cnf.get("jkt"), str):
        raise why.Malformed("claim 'cnf' must hold the agent key thumbprint 'jkt'")
    if not isinstance(claims["aud"], str):
        raise why.Malformed("claim 'aud' must be a single string")
    if claims["exp"] <= now - LEEWAY_SECONDS:
        raise why.TokenExpired(f"expired at {_when(claims['exp'])}")
    if claims["nbf"] > now + LEEWAY_SECONDS:
        raise why.TokenNotYetValid(f"not valid before {_when(claims['nbf'])}")
    if claims["iat"] > now + LEEWAY_SECONDS:
        raise why.TokenNotYetValid("issued in the future")
    if claims["exp"] - claims["iat"] > MAX_TTL_SECONDS:
        raise why.Malformed(f"lifetime exceeds the maximum of {MAX_TTL_SECONDS} seconds")


def claims_digest(claims: dict[str, Any]) -> str:
    """SHA-256 (hex) of a token's full claim set (sorted keys, no spaces): what its row pins.

    Any change to any claim, even re-signed with the issuer key, changes it.
    """
    return hashlib.sha256(_canonical(claims).encode("utf-8")).hexdigest()


def _canonical(claims: dict[str, Any]) -> str:
    return json.dumps(claims, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _check_state(
    repo: TokenRepo, claims: dict[str, Any], kid: str, digest: str
) -> tuple[str, str | None]:
    """Check the token against its row, and its agent; return the agent's name and the
    client key a DPoP-bound token is bound to.

    The row is authoritative for every claim: the token must be byte for byte the one issued
    under its id (its claims' digest), so no claim, ``exp`` included, can be re-signed.
    """
    row = repo.get_with_agent(claims["jti"])
    if row is None:
        raise why.NotIssued(f"token id {claims['jti']!r} was never issued by this home")
    name = row.agent_name
    # Rows from before the digest was stored still pin every claim they hold.
    iat, exp = (int(parse_rfc3339(t).timestamp()) for t in (row.issued_at, row.expires_at))
    if (row.kid, row.agent_id, row.charter, row.audience, row.scope, iat, iat, exp) != (
        kid,
        claims["sub"],
        claims["charter"],
        claims["aud"],
        claims["scope"],
        claims["iat"],
        claims["nbf"],
        claims["exp"],
    ) or (row.digest is not None and row.digest != digest):
        raise why.NotIssued("the token does not match what was issued under its id")
    if row.dpop_jkt is not None and row.dpop_jkt != claims["cnf"]["jkt"]:
        raise why.NotIssued("the token does not match what was issued under its id")
    if row.revoked_at is not None:
        raise why.TokenRevoked(f"token {claims['jti']!r} was revoked at {row.revoked_at}")
    if row.agent_status != "active":
        raise why.AgentRevokedToken(f"agent {name!r} has been revoked")
    if row.agent_charter != row.charter:
        raise why.CharterSuperseded(f"agent {name!r} has a new charter since this token was issued")
    return name, row.dpop_jkt


def _from_epoch(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _when(seconds: int) -> str:
    """``seconds`` since the epoch as RFC 3339, or as the number if out of the calendar."""
    try:
        return rfc3339(_from_epoch(seconds))
    except (ValueError, OverflowError, OSError):
        return f"{seconds} (seconds since the epoch)"
