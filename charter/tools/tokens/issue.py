"""Issuing and revoking scoped agent tokens: EdDSA JWT access tokens (RFC 9068).

A token is a compact JWS signed by the home's current issuer key (made by PyJWT through the
signer seam, :mod:`charter.tools.tokens.codec`)::

    header  {"alg": "EdDSA", "kid": <RFC 7638 thumbprint>, "typ": "at+jwt"}
    claims  iss sub aud client_id owner charter scope iat nbf exp jti cnf.jkt

Every issued token has a row in ``tokens`` (never the token itself), which is what makes
revocation, introspection and key retirement possible; checks are in
:mod:`charter.tools.tokens.verify`, the issuer and its keys in :mod:`charter.tools.tokens.keys`.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from charter.clock import rfc3339
from charter.errors import AgentRevoked, InvalidInput, NotFound, ScopeDenied
from charter.evidence.charters import CharterView
from charter.evidence.jwk import b64url_decode, thumbprint
from charter.home import Home
from charter.scopes import is_subset, validate_scopes
from charter.storage.ports import Tx
from charter.storage.tokens import NewToken
from charter.tools.guards import check_reason
from charter.tools.identity import get_agent, load_agent
from charter.tools.plan import LocalPlan
from charter.tools.tokens.codec import encode
from charter.tools.tokens.dpop import DpopInvalid, binding_thumbprint
from charter.tools.tokens.keys import (
    current_kid,
    ensure_issuer_keys,
    issuer_in,
    register_issuer_key,
    signing_key,
)
from charter.tools.tokens.verify import MAX_TTL_SECONDS, claims_digest

if TYPE_CHECKING:
    from charter.evidence.entries import Entry

DEFAULT_TTL_SECONDS = 900

#: Scope never granted by default: a token that can mint tokens must be asked for by name.
_ISSUE_SCOPE = "token:issue"


class IssuedToken(BaseModel):
    """A freshly issued token and the facts about it (the token is shown once, never stored)."""

    token: str = Field(
        description="The JWT; send it as `Authorization: <token_type> <token>` (with a DPoP "
        "proof for a DPoP token)."
    )
    token_type: str = Field(
        default="Bearer",
        description="`Bearer`, or `DPoP` for a token bound to a client key (RFC 9449): it "
        "works only with a proof signed by that key.",
    )
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
    #: The RFC 7638 thumbprint of the client key a DPoP-bound token is bound to (else the
    #: token is bound to the agent's own key and may be used as a bearer token).
    dpop_jkt: str | None = None

    def ledger_details(self) -> dict[str, Any]:
        """What the ledger records about the token (never the token)."""
        details: dict[str, Any] = {
            "jti": self.jti,
            "agent": self.agent_name,
            "audience": self.audience,
            "scopes": list(self.scopes),
            "expires_at": rfc3339(_from_epoch(self.expires_at)),
        }
        if self.dpop_jkt is not None:
            details["dpop_jkt"] = self.dpop_jkt
        return details


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
    dpop_jwk: object = None,
) -> TokenRequest:
    """Check a token request against the agent's charter (and ``limit``) and fix its claims.

    ``limit`` is the scope of the token the request was made with, if any: a token can never
    mint a broader one. With no ``scopes`` requested, the token gets the ceiling's scopes
    minus ``token:issue``. The expiry is cut to the charter's ``not_after``. With
    ``dpop_jwk`` (a client's public JWK) the token is DPoP-bound to that key (RFC 9449).

    Raises:
        InvalidInput: unknown scope, ``ttl_seconds`` outside 1..3600, or a ``dpop_jwk`` that
            is no P-256 or Ed25519 public JWK (a private key is refused).
        ScopeDenied: the audience is not in the charter, or a scope exceeds the ceiling.
        AgentRevoked: the charter has expired.
    """
    if isinstance(ttl_seconds, bool) or not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise InvalidInput(f"ttl_seconds must be between 1 and {MAX_TTL_SECONDS}")
    dpop_jkt = None
    if dpop_jwk is not None:
        try:
            dpop_jkt = binding_thumbprint(dpop_jwk)
        except DpopInvalid as exc:
            raise InvalidInput(f"dpop_jwk: {exc.reason}") from None
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
        jti=new_jti(home.clock.now().timestamp()),
        issued_at=now,
        expires_at=expires_at,
        dpop_jkt=dpop_jkt,
    )


async def sign(home: Home, request: TokenRequest) -> IssuedToken:
    """Sign ``request`` with the current issuer key; nothing is written.

    The token verifies only once :func:`record` has stored its row: a caller commits that
    together with whatever makes the issuance official (the tool's outcome entry, the owner's
    ledger event), so a token whose issuance was not recorded never works.
    """

    def keys(tx: Tx) -> tuple[str, str] | None:
        if not tx.tokens.has_issuer_keys():
            return None
        return current_kid(tx.tokens), issuer_in(tx)

    found = await home.read(keys)
    if found is None:  # the first token of a new home: register the key `charter init` made
        await ensure_issuer_keys(home)
        found = await home.read(keys)
        assert found is not None
    kid, iss = found
    return sign_as(home, kid, iss, request)


def new_jti(at: float) -> str:
    """A new token id for a token issued at ``at`` (epoch seconds): 48 bits of milliseconds,
    then 80 random bits, in 32 hex digits (hex never starts with "-", which a shell would
    take for an option).

    Ids issued later sort later, so a new token's row lands at the end of the tokens table,
    one page per issue instead of a random one (a commit's cost grows with the pages it
    writes); the random part keeps ids unique and unpredictable.
    """
    return f"{int(at * 1000) & (1 << 48) - 1:012x}{secrets.token_hex(10)}"


def sign_as(home: Home, kid: str, iss: str, request: TokenRequest) -> IssuedToken:
    """Sign ``request`` as issuer ``iss`` with issuer key ``kid`` (see :func:`sign`)."""
    claims = _claims(iss, request)
    return IssuedToken(
        token=encode(claims, signing_key(home, kid)),
        token_type="Bearer" if request.dpop_jkt is None else "DPoP",
        jti=request.jti,
        audience=request.audience,
        scopes=list(request.scopes),
        issued_at=rfc3339(_from_epoch(request.issued_at)),
        expires_at=rfc3339(_from_epoch(request.expires_at)),
        kid=kid,
    )


def record(tx: Tx, request: TokenRequest, issued: IssuedToken) -> None:
    """Store the row of a token :func:`sign` made (inside the caller's transaction)."""
    tx.tokens.insert(
        NewToken(
            jti=request.jti,
            kid=issued.kid,
            agent_name=request.agent_name,
            agent_id=request.charter.agent_id,
            charter=request.charter.hash,
            audience=request.audience,
            scope=" ".join(request.scopes),
            issued_at=issued.issued_at,
            expires_at=issued.expires_at,
            digest=claims_digest(json.loads(b64url_decode(issued.token.split(".")[1]))),
            dpop_jkt=request.dpop_jkt,
        )
    )


def issue_plan(home: Home, request: TokenRequest) -> LocalPlan[IssuedToken]:
    """The ``token_issue`` tool's plan, a local effect: its intent (the request's ledger
    details), the signature and the token's row, and the ``ok`` outcome naming the issuer
    key (``kid``) commit in one transaction. The token leaves Charter only once all three are
    durable, and it verifies only while its row exists."""

    def apply(tx: Tx, _intent: Entry) -> IssuedToken:
        if not tx.tokens.has_issuer_keys():  # the first token of a new home
            register_issuer_key(tx, home)
        issued = sign_as(home, current_kid(tx.tokens), issuer_in(tx), request)
        record(tx, request, issued)
        return issued

    return LocalPlan(
        details=request.ledger_details(),
        apply=apply,
        outcome=lambda issued: {"kid": issued.kid},
    )


async def issue(
    home: Home, request: TokenRequest, *, on_commit: Callable[[Tx, str], None] | None = None
) -> IssuedToken:
    """Sign ``request`` and record its row in one transaction.

    ``on_commit(tx, kid)`` runs inside that transaction (the owner CLI records its ledger
    event there). The MCP tool instead commits :func:`record` with its outcome entry.
    """
    issued = await sign(home, request)

    def work(tx: Tx) -> None:
        record(tx, request, issued)
        if on_commit is not None:
            on_commit(tx, issued.kid)

    await home.write(work)
    return issued


async def issue_for_owner(
    home: Home,
    agent_name: str,
    *,
    audience: str,
    scopes: Sequence[str] | None = None,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    passphrase: bytes | None = None,
    dpop_jwk: object = None,
) -> IssuedToken:
    """The owner issues a token for one of their agents (``charter token issue``).

    Recorded as an owner-signed ``token.issue`` event in the same transaction as the row.

    Raises:
        NotFound / AgentRevoked: unknown, revoked (said as such) or expired agent.
        InvalidInput / ScopeDenied: as for :func:`prepare`.
    """
    if (await get_agent(home, agent_name)).status != "active":
        raise AgentRevoked(f"agent {agent_name!r} has been revoked: no token can be issued for it")
    agent = await load_agent(home, agent_name)
    request = prepare(
        home,
        agent.name,
        agent.charter,
        audience=audience,
        scopes=scopes,
        ttl_seconds=ttl_seconds,
        dpop_jwk=dpop_jwk,
    )
    home.owner_key(passphrase)  # a wrong passphrase fails before anything is signed

    def record(tx: Tx, kid: str) -> None:
        tx.ledger.append_one(
            home.owner_event(
                "token.issue",
                request.ledger_details() | {"agent_id": agent.agent_id, "kid": kid},
                passphrase=passphrase,
            )
        )

    return await issue(home, request, on_commit=record)


def _claims(iss: str, request: TokenRequest) -> dict[str, Any]:
    view = request.charter
    return {
        "iss": iss,
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
        "cnf": {"jkt": request.dpop_jkt or thumbprint(view.agent_key)},
    }


# -- revoking --------------------------------------------------------------------------------


async def revoke(
    home: Home, jti: str, *, reason: str = "", passphrase: bytes | None = None
) -> TokenRecord:
    """Revoke one token by id: an owner-signed ``token.revoke`` entry; it is refused at once.

    Raises:
        NotFound: unknown token id.  InvalidInput: already revoked, or reason too long.
    """
    record = await get_token(home, jti)
    if record.revoked_at is not None:
        raise InvalidInput(f"token {jti!r} is already revoked")
    check_reason(reason)
    now = rfc3339(home.clock.now())
    event = home.owner_event(
        "token.revoke",
        {"jti": jti, "agent": record.agent, "agent_id": record.agent_id, "reason": reason},
        passphrase=passphrase,
    )

    def work(tx: Tx) -> None:
        tx.tokens.mark_revoked(jti, now, reason or None)
        tx.ledger.append_one(event)

    await home.write(work)
    return await get_token(home, jti)


async def get_token(home: Home, jti: str) -> TokenRecord:
    """One token's row.

    Raises:
        NotFound: unknown token id.
    """
    row = await home.read(lambda tx: tx.tokens.get(jti))
    if row is None:
        raise NotFound(f"no token with id {jti!r}")
    return TokenRecord(
        jti=row.jti,
        kid=row.kid,
        agent=row.agent_name,
        agent_id=row.agent_id,
        audience=row.audience,
        scopes=row.scope.split(),
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        revoked_reason=row.revoked_reason,
    )


def _from_epoch(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)
