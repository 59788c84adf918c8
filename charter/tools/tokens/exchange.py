"""RFC 8693 token exchange for sub-agents (issue 21): the parent's access token (the subject)
and the sub-agent's own token (the actor) become one token that says the sub-agent acts for
the parent.

The new token has ``sub`` = the subject token's ``sub`` (the parent), ``act`` = ``{"sub": <the
sub-agent's id>}`` (with the subject token's own ``act`` nested inside it, for deeper chains:
RFC 8693 §4.1), the sub-agent's ``charter`` and key (``cnf.jkt``), the intersection of both
tokens' scopes (or a requested subset of it), the subject's audience, and the shortest
lifetime of the two tokens, the sub-agent's charter and :data:`MAX_TTL_SECONDS`. Its row names
the sub-agent, so it works only while the sub-agent (and, at each call, its ancestors) is
active; it is recorded as a ``token.exchange`` entry signed by the sub-agent's key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from charter.clock import rfc3339
from charter.errors import CharterError, InvalidInput, TokenInvalid
from charter.evidence.jwk import b64url_decode, thumbprint
from charter.home import Home
from charter.scopes import is_subset, validate_scopes
from charter.storage.ports import Draft, Tx
from charter.storage.tokens import NewToken
from charter.tools.identity import AgentContext, load_agent
from charter.tools.tokens.codec import encode
from charter.tools.tokens.issue import _from_epoch, new_jti
from charter.tools.tokens.keys import current_kid, ensure_issuer_keys, issuer_in, signing_key
from charter.tools.tokens.verify import MAX_TTL_SECONDS, VerifiedToken, claims_digest, verify

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a URN
#: Nesting of ``act`` accepted in a subject token (deeper is refused: a chain is at most 8).
MAX_ACT_DEPTH = 8


class ExchangeRefused(Exception):
    """An RFC 8693 §2.2.2 / RFC 6749 §5.2 error: ``error`` code and a safe description."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True, slots=True)
class Exchanged:
    """The RFC 8693 §2.2.1 response."""

    access_token: str
    expires_in: int
    scope: str

    def response(self) -> dict[str, Any]:
        """The JSON body of the token endpoint's answer."""
        return {
            "access_token": self.access_token,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


async def exchange(
    home: Home,
    form: dict[str, str],
    *,
    issuer_url: str,
) -> Exchanged:
    """Run one token exchange request (``form``: the decoded POST parameters).

    Raises:
        ExchangeRefused: ``invalid_request`` (missing or invalid tokens, an actor that is not
            a sub-agent of the subject), ``invalid_target`` (an audience the subject token or
            the sub-agent's charter does not have), ``invalid_scope`` (wider than both tokens).
    """
    for name in ("subject_token", "subject_token_type", "actor_token", "actor_token_type"):
        if not form.get(name):
            raise ExchangeRefused("invalid_request", f"the request must carry `{name}`")
    for name in ("subject_token_type", "actor_token_type", "requested_token_type"):
        if form.get(name, ACCESS_TOKEN_TYPE) != ACCESS_TOKEN_TYPE:
            raise ExchangeRefused("invalid_request", f"`{name}` must be {ACCESS_TOKEN_TYPE}")
    subject = await _verified(home, form["subject_token"], "subject_token", issuer_url)
    actor = await _verified(home, form["actor_token"], "actor_token", issuer_url)
    try:
        child = await load_agent(home, actor.agent_name)
    except CharterError as exc:
        raise ExchangeRefused("invalid_request", f"actor: {exc.public_message}") from None
    below = await home.read(lambda tx: tx.agents.descendants(subject.agent_name))
    if child.name not in below:
        raise ExchangeRefused(
            "invalid_request", "the actor_token's agent is not a sub-agent of the subject's"
        )
    audience = form.get("audience") or subject.audience
    if audience != subject.audience or audience not in child.charter.audiences:
        raise ExchangeRefused(
            "invalid_target",
            f"audience {audience!r} is not the subject token's or not in the sub-agent's charter",
        )
    scopes = _scopes(subject, actor, form.get("scope"))
    now = int(home.clock.now().timestamp())
    exp = min(
        subject.expires_at,
        actor.expires_at,
        now + MAX_TTL_SECONDS,
        int(child.charter.not_after.timestamp()),
    )
    if exp <= now:
        raise ExchangeRefused("invalid_request", "the tokens or the charter expire now")
    act: dict[str, Any] = {"sub": child.agent_id}
    if "act" in subject.claims:
        act["act"] = _prior_act(subject.claims["act"])
    claims = {
        "sub": subject.subject,
        "client_id": child.agent_id,
        "aud": audience,
        "owner": child.owner_id,
        "charter": child.charter.hash,
        "scope": " ".join(scopes),
        "iat": now,
        "nbf": now,
        "exp": exp,
        "jti": new_jti(now),
        "cnf": {"jkt": thumbprint(child.charter.agent_key)},
        "act": act,
    }
    token = await _sign_and_record(home, child, claims, subject, actor)
    return Exchanged(access_token=token, expires_in=exp - now, scope=" ".join(scopes))


async def _verified(home: Home, token: str, what: str, issuer_url: str) -> VerifiedToken:
    try:
        verified = await verify(home, token, audience=None, issuer_url=issuer_url)
    except TokenInvalid as exc:
        raise ExchangeRefused("invalid_request", f"{what} is not valid: {exc.reason}") from None
    if verified.dpop_jkt is not None:
        raise ExchangeRefused("invalid_request", f"{what} is DPoP-bound and cannot be exchanged")
    return verified


def _scopes(subject: VerifiedToken, actor: VerifiedToken, requested: str | None) -> list[str]:
    """The intersection of both tokens' scopes (each kept scope is within both, by glob
    containment), or the requested scopes if they are within it."""
    granted = sorted(
        {s for s in actor.scopes if is_subset([s], subject.scopes)}
        | {s for s in subject.scopes if is_subset([s], actor.scopes)}
    )
    if requested is None:
        if not granted:
            raise ExchangeRefused("invalid_scope", "the two tokens have no scope in common")
        return granted
    try:
        wanted = validate_scopes(requested.split())
    except InvalidInput as exc:
        raise ExchangeRefused("invalid_scope", exc.public_message) from None
    beyond = [s for s in wanted if not is_subset([s], granted)]
    if beyond or not wanted:
        raise ExchangeRefused(
            "invalid_scope",
            f"scope {beyond[0]!r} is wider than the subject and actor tokens grant together"
            if beyond
            else "ask for at least one scope",
        )
    return wanted


def _prior_act(value: Any, depth: int = 0) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("sub"), str):
        raise ExchangeRefused("invalid_request", "the subject token's `act` is malformed")
    if depth >= MAX_ACT_DEPTH:
        raise ExchangeRefused("invalid_request", "the delegation chain is too deep")
    out: dict[str, Any] = {"sub": value["sub"]}
    if "act" in value:
        out["act"] = _prior_act(value["act"], depth + 1)
    return out


async def _sign_and_record(
    home: Home,
    child: AgentContext,
    claims: dict[str, Any],
    subject: VerifiedToken,
    actor: VerifiedToken,
) -> str:
    def keys(tx: Tx) -> tuple[str, str] | None:
        if not tx.tokens.has_issuer_keys():
            return None
        return current_kid(tx.tokens), issuer_in(tx)

    found = await home.read(keys)
    if found is None:
        await ensure_issuer_keys(home)
        found = await home.read(keys)
        assert found is not None
    kid, iss = found
    claims = {"iss": iss, **claims}
    token = encode(claims, signing_key(home, kid))
    signed = json.loads(b64url_decode(token.split(".")[1]))
    row = NewToken(
        jti=claims["jti"],
        kid=kid,
        agent_name=child.name,
        agent_id=claims["sub"],  # what the token's `sub` is checked against
        charter=child.charter.hash,
        audience=claims["aud"],
        scope=claims["scope"],
        issued_at=rfc3339(_from_epoch(claims["iat"])),
        expires_at=rfc3339(_from_epoch(claims["exp"])),
        digest=claims_digest(signed),
        dpop_jkt=None,
    )
    draft = Draft(
        actor=child.agent_id,
        owner=child.owner_id,
        action="token.exchange",
        phase="call",
        signer=child.key,
        charter=child.charter.hash,
        args={
            "jti": claims["jti"],
            "subject_jti": subject.jti,
            "actor_jti": actor.jti,
            "sub": claims["sub"],
            "act": claims["act"],
            "audience": claims["aud"],
            "scopes": claims["scope"].split(),
            "expires_at": row.expires_at,
            "kid": kid,
        },
        outcome="ok",
        require_agent=child.name,
        charter_view=child.charter,
        effects=(lambda tx: tx.tokens.insert(row),),
    )
    try:
        await home.write(lambda tx: tx.ledger.append_one(draft))
    except CharterError as exc:
        raise ExchangeRefused("invalid_request", f"actor: {exc.public_message}") from None
    return token
