"""Scoped agent tokens: issuing, every refusal, revocation, introspection, key rotation.

The service is exercised directly (with a frozen clock) and through a real in-process MCP
client for the ``token_issue`` tool. Forged tokens are signed with the home's real issuer
key, so each test isolates exactly one broken property.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from mcp import Client

from charter.clock import rfc3339
from charter.errors import AgentRevoked, InvalidInput, ScopeDenied, TokenInvalid
from charter.evidence.entries import Entry
from charter.evidence.jwk import b64url, b64url_decode, thumbprint
from charter.home import Home
from charter.keys import KeyHandle, KeyPair, issuer_ref
from charter.keys.files import read_key_file
from charter.testing import FrozenClock, make_home, raw_db, raw_tx, server_for
from charter.tools import audit, identity, tokens
from charter.tools.tokens import codec
from charter.tools.tokens import errors as token_errors

API = "https://api.example.com"
MAIL = "https://mail.example.com"


@pytest.fixture
async def gamma(home: Home) -> identity.AgentContext:
    """An agent that may issue tokens, with two audiences and three scopes."""
    await identity.add_agent(
        home,
        "gamma",
        scopes=["token:issue", "audit:read", "secret:read:API_*"],
        audiences=[API, MAIL],
    )
    return await identity.load_agent(home, "gamma")


async def issue(
    home: Home,
    agent: identity.AgentContext,
    audience: str = API,
    scopes: list[str] | None = None,
    ttl: int = 900,
) -> tokens.IssuedToken:
    request = tokens.prepare(
        home, agent.name, agent.charter, audience=audience, scopes=scopes, ttl_seconds=ttl
    )
    return await tokens.issue(home, request)


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload))


def issuer_key(home: Home) -> KeyPair:
    return read_key_file(home.layout.issuer_key(home.meta["issuer_kid"]))


def forge(header: dict[str, Any], claims: dict[str, Any], key: KeyPair) -> str:
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    return signing_input + "." + b64url(key.sign(signing_input.encode()))


async def reason(home: Home, token: str, audience: str | None = API) -> str:
    with pytest.raises(TokenInvalid) as info:
        await tokens.verify(home, token, audience=audience)
    assert info.value.public_message == "invalid or expired token"  # opaque for remote callers
    return info.value.reason


def entries(home: Home) -> list[dict[str, Any]]:
    return [Entry.from_body(b).fields for b in raw_tx(home).ledger.iter_bodies()]


# -- the token -------------------------------------------------------------------------------


async def test_issued_token_has_the_rfc9068_header_and_every_claim(
    home: Home, gamma: identity.AgentContext, clock: FrozenClock
) -> None:
    issued = await issue(home, gamma, scopes=["audit:read"], ttl=600)
    header, claims = parts(issued.token)
    assert header == {"alg": "EdDSA", "kid": home.meta["issuer_kid"], "typ": "at+jwt"}
    now = int(clock.now().timestamp())
    assert claims == {
        "iss": tokens.DEFAULT_ISSUER,
        "sub": gamma.agent_id,
        "client_id": gamma.agent_id,
        "aud": API,
        "owner": "owner@example.com",
        "charter": gamma.charter.hash,
        "scope": "audit:read",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": issued.jti,
        "cnf": {"jkt": thumbprint(gamma.charter.agent_key)},
    }
    assert claims["cnf"]["jkt"] == gamma.key.kid
    verified = await tokens.verify(home, issued.token, audience=API)
    assert verified.agent_name == "gamma" and verified.scopes == ("audit:read",)
    # The row holds facts about the token, never the token.
    row = raw_db(home).execute("SELECT * FROM tokens WHERE jti = ?", (issued.jti,)).fetchone()
    assert issued.token not in json.dumps(row)


async def test_default_scopes_are_the_charter_minus_token_issue(
    home: Home, gamma: identity.AgentContext
) -> None:
    assert (await issue(home, gamma)).scopes == ["audit:read", "secret:read:API_*"]
    assert (await issue(home, gamma, scopes=["token:issue"])).scopes == ["token:issue"]
    assert (await issue(home, gamma, scopes=["secret:read:API_KEY"])).scopes == [
        "secret:read:API_KEY"
    ]
    # The row's own commit skips its fsync; the connection goes back to synchronous=FULL.
    if home.settings.database_url is None:  # a SQLite pragma
        assert raw_db(home).execute("PRAGMA synchronous").fetchone()[0] == 2


async def test_owner_issue_is_an_owner_signed_event_without_the_token(
    home: Home, gamma: identity.AgentContext
) -> None:
    issued = await tokens.issue_for_owner(
        home, "gamma", audience=MAIL, scopes=["audit:read"], ttl_seconds=60
    )
    last = entries(home)[-1]
    assert last["action"] == "token.issue" and last["phase"] == "event"
    assert last["actor"] == "owner@example.com"
    assert last["args"]["jti"] == issued.jti
    assert last["args"]["audience"] == MAIL and last["args"]["scopes"] == ["audit:read"]
    assert last["args"]["kid"] == issued.kid
    assert issued.token not in json.dumps(entries(home))
    await tokens.verify(home, issued.token, audience=MAIL)
    await audit.verify_home(home)


# -- bad input: issuing ----------------------------------------------------------------------


async def test_scope_escalation_is_refused(home: Home, gamma: identity.AgentContext) -> None:
    with pytest.raises(ScopeDenied, match="'email:send' is not granted by this agent's charter"):
        await issue(home, gamma, scopes=["email:send"])
    with pytest.raises(ScopeDenied, match="'secret:read:\\*'"):
        await issue(home, gamma, scopes=["secret:read:*"])  # a wider glob than the charter's
    with pytest.raises(InvalidInput, match="unknown scope"):
        await issue(home, gamma, scopes=["admin"])
    assert raw_db(home).execute("SELECT count(*) FROM tokens").fetchone()[0] == 0


def test_a_token_cannot_mint_a_broader_token(home: Home, gamma: identity.AgentContext) -> None:
    limit = ("token:issue", "secret:read:API_KEY")
    with pytest.raises(ScopeDenied, match="'audit:read' is not granted by the calling token"):
        tokens.prepare(
            home, "gamma", gamma.charter, audience=API, scopes=["audit:read"], limit=limit
        )
    request = tokens.prepare(home, "gamma", gamma.charter, audience=API, limit=limit)
    assert request.scopes == ("secret:read:API_KEY",)


async def test_audience_outside_the_charter_is_refused(
    home: Home, gamma: identity.AgentContext
) -> None:
    with pytest.raises(ScopeDenied, match=r"audience 'https://evil\.example' is not allowed"):
        await issue(home, gamma, audience="https://evil.example")


@pytest.mark.parametrize("ttl", [0, -5, tokens.MAX_TTL_SECONDS + 1, 86400])
async def test_ttl_outside_the_limits_is_refused(
    home: Home, gamma: identity.AgentContext, ttl: int
) -> None:
    with pytest.raises(InvalidInput, match="ttl_seconds must be between 1 and 3600"):
        await issue(home, gamma, ttl=ttl)


# -- bad input: verifying --------------------------------------------------------------------


async def test_alg_none_is_refused(home: Home, gamma: identity.AgentContext) -> None:
    header, claims = parts((await issue(home, gamma)).token)
    unsigned = forge(header | {"alg": "none"}, claims, issuer_key(home)).rsplit(".", 1)[0] + "."
    assert await reason(home, unsigned) == "algorithm 'none' is not accepted (only EdDSA)"


@pytest.mark.parametrize("secret_form", ["raw", "jwk-x", "jwk-json"])
async def test_hs256_signed_with_the_public_key_is_refused(
    home: Home, gamma: identity.AgentContext, secret_form: str
) -> None:
    header, claims = parts((await issue(home, gamma)).token)
    public = issuer_key(home).public_key
    secret = {
        "raw": public,
        "jwk-x": b64url(public).encode(),
        "jwk-json": json.dumps((await tokens.jwks(home))["keys"][0]).encode(),
    }[secret_form]
    signing_input = (
        b64url(json.dumps(header | {"alg": "HS256"}).encode())
        + "."
        + b64url(json.dumps(claims).encode())
    )
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    assert await reason(home, signing_input + "." + b64url(mac)) == (
        "algorithm 'HS256' is not accepted (only EdDSA)"
    )


async def test_unknown_kid_is_refused(home: Home, gamma: identity.AgentContext) -> None:
    header, claims = parts((await issue(home, gamma)).token)
    stranger = KeyPair.generate()
    token = forge(header | {"kid": stranger.kid}, claims, stranger)
    assert await reason(home, token) == f"key id {stranger.kid!r} is not a published issuer key"
    # A foreign key claiming our kid fails on the signature.
    assert await reason(home, forge(header, claims, stranger)) == "the signature does not verify"
    assert await reason(
        home, forge({"alg": "EdDSA", "typ": "at+jwt"}, claims, issuer_key(home))
    ) == ("the header names no key id")


async def test_expired_token_is_refused(
    home: Home, gamma: identity.AgentContext, clock: FrozenClock
) -> None:
    issued = await issue(home, gamma, ttl=60)
    clock.advance(seconds=59)
    await tokens.verify(home, issued.token, audience=API)
    clock.advance(seconds=1)
    assert (await reason(home, issued.token)).startswith("expired at ")


async def test_nbf_in_the_future_is_refused(home: Home, gamma: identity.AgentContext) -> None:
    header, claims = parts((await issue(home, gamma)).token)
    token = forge(header, claims | {"nbf": claims["nbf"] + 30}, issuer_key(home))
    assert (await reason(home, token)).startswith("not valid before ")
    token = forge(header, claims | {"iat": claims["iat"] + 30}, issuer_key(home))
    assert await reason(home, token) == "issued in the future"


async def test_wrong_audience_is_refused(home: Home, gamma: identity.AgentContext) -> None:
    issued = await issue(home, gamma, audience=MAIL)
    assert await reason(home, issued.token, audience=API) == f"audience {MAIL!r} is not {API!r}"
    header, claims = parts(issued.token)
    listed = forge(header, claims | {"aud": [API, MAIL]}, issuer_key(home))
    assert await reason(home, listed) == "claim 'aud' must be a single string"


async def test_wrong_issuer_is_refused(home: Home, gamma: identity.AgentContext) -> None:
    issued = await issue(home, gamma)
    assert await tokens.set_issuer(home, "https://charter.example.org/")
    assert await tokens.issuer(home) == "https://charter.example.org"
    assert await reason(home, issued.token) == (
        f"issuer {tokens.DEFAULT_ISSUER!r} is not this issuer ('https://charter.example.org')"
    )
    fresh = await issue(home, gamma)
    assert parts(fresh.token)[1]["iss"] == "https://charter.example.org"
    await tokens.verify(home, fresh.token, audience=API)


@pytest.mark.parametrize("claim", tokens.REQUIRED_CLAIMS)
async def test_missing_claims_are_refused(
    home: Home, gamma: identity.AgentContext, claim: str
) -> None:
    header, claims = parts((await issue(home, gamma)).token)
    del claims[claim]
    assert await reason(home, forge(header, claims, issuer_key(home))) == f"missing claims: {claim}"


@pytest.mark.parametrize(
    ("claim", "value", "why"),
    [
        ("exp", "9999999999", "claim 'exp' must be an integer (seconds since the epoch)"),
        ("nbf", True, "claim 'nbf' must be an integer (seconds since the epoch)"),
        ("sub", 7, "claim 'sub' must be a string"),
        ("cnf", {}, "claim 'cnf' must hold the agent key thumbprint 'jkt'"),
    ],
)
async def test_claims_of_the_wrong_type_are_refused(
    home: Home, gamma: identity.AgentContext, claim: str, value: Any, why: str
) -> None:
    header, claims = parts((await issue(home, gamma)).token)
    token = forge(header, claims | {claim: value}, issuer_key(home))
    assert await reason(home, token) == why


async def test_tampered_payload_is_refused(home: Home, gamma: identity.AgentContext) -> None:
    token = (await issue(home, gamma, scopes=["audit:read"])).token
    header_b64, _, sig = token.split(".")
    _, claims = parts(token)
    wider = b64url(json.dumps(claims | {"scope": "audit:read token:issue"}).encode())
    assert await reason(home, f"{header_b64}.{wider}.{sig}") == "the signature does not verify"
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert await reason(home, flipped) == "the signature does not verify"


@pytest.mark.parametrize(
    "change",
    [
        {"scope": "audit:read token:issue"},  # wider than issued
        {"aud": "https://other.example.com"},
        {"sub": "spiffe://charter.local/agent/owner/beta"},
    ],
)
async def test_a_token_reusing_an_issued_id_must_match_its_record(
    home: Home, gamma: identity.AgentContext, change: dict[str, str]
) -> None:
    """Whoever holds the issuer key still cannot stretch a real token id: claims are checked
    against the row recorded when that id was issued."""
    header, claims = parts((await issue(home, gamma, scopes=["audit:read"])).token)
    forged = forge(header, claims | change, issuer_key(home))
    assert await reason(home, forged, audience=None) == (
        "the token does not match what was issued under its id"
    )


@pytest.mark.parametrize(
    "garbage",
    ["", "abc", "a.b", "a.b.c.d", "é.é.é", "x" * 9000, "eyJhbGciOiJFZERTQSJ9..sig"],
)
async def test_garbage_is_refused_cleanly(home: Home, garbage: str) -> None:
    assert await reason(home, garbage)


async def test_duplicate_json_keys_are_refused(home: Home, gamma: identity.AgentContext) -> None:
    token = (await issue(home, gamma)).token
    header_b64, payload_b64, _ = token.split(".")
    raw = b64url_decode(payload_b64).decode()
    doubled = raw[:-1] + ',"scope":"token:issue"}'
    signing_input = f"{header_b64}.{b64url(doubled.encode())}"
    forged = signing_input + "." + b64url(issuer_key(home).sign(signing_input.encode()))
    assert "duplicate keys" in await reason(home, forged)


async def test_token_of_a_revoked_agent_is_refused(
    home: Home, gamma: identity.AgentContext
) -> None:
    issued = await issue(home, gamma)
    await identity.revoke_agent(home, "gamma", reason="compromised")
    assert await reason(home, issued.token) == "agent 'gamma' has been revoked"
    assert await tokens.introspect(home, issued.token) == {"active": False}


async def test_revoked_jti_is_refused(home: Home, gamma: identity.AgentContext) -> None:
    issued = await issue(home, gamma)
    other = await issue(home, gamma)
    record = await tokens.revoke(home, issued.jti, reason="leaked in a log")
    assert record.revoked_at is not None
    assert (await reason(home, issued.token)).startswith(f"token {issued.jti!r} was revoked at ")
    await tokens.verify(home, other.token, audience=API)  # only that one
    last = entries(home)[-1]
    assert (last["action"], last["args"]["jti"]) == ("token.revoke", issued.jti)
    with pytest.raises(InvalidInput, match="already revoked"):
        await tokens.revoke(home, issued.jti)
    await audit.verify_home(home)


async def test_replacing_the_charter_retires_its_tokens(
    home: Home, gamma: identity.AgentContext
) -> None:
    issued = await issue(home, gamma)
    await identity.update_agent(home, "gamma", scopes=["token:issue"])
    assert (
        await reason(home, issued.token)
        == "agent 'gamma' has a new charter since this token was issued"
    )


async def test_signed_but_never_issued_token_is_refused(
    home: Home, gamma: identity.AgentContext
) -> None:
    header, claims = parts((await issue(home, gamma)).token)
    token = forge(header, claims | {"jti": "made-up"}, issuer_key(home))
    assert await reason(home, token) == "token id 'made-up' was never issued by this home"


async def test_lifetime_above_the_maximum_is_refused(
    home: Home, gamma: identity.AgentContext
) -> None:
    header, claims = parts((await issue(home, gamma)).token)
    token = forge(header, claims | {"exp": claims["iat"] + 3601}, issuer_key(home))
    assert await reason(home, token) == "lifetime exceeds the maximum of 3600 seconds"


async def test_wrong_token_type_is_refused(home: Home, gamma: identity.AgentContext) -> None:
    header, claims = parts((await issue(home, gamma)).token)
    assert await reason(home, forge(header | {"typ": "JWT"}, claims, issuer_key(home))) == (
        "token type 'JWT' is not an access token (want 'at+jwt')"
    )
    assert "critical" in await reason(
        home, forge(header | {"crit": ["b64"]}, claims, issuer_key(home))
    )
    # RFC 9068 §4: the media type form is accepted.
    await tokens.verify(
        home,
        forge(header | {"typ": "application/at+jwt"}, claims, issuer_key(home)),
        audience=API,
    )


async def test_foreign_home_token_is_refused(
    home: Home, gamma: identity.AgentContext, tmp_path: Path, clock: FrozenClock
) -> None:
    other = await make_home(tmp_path / "other", clock=clock)
    await identity.add_agent(other, "gamma", scopes=["token:issue"], audiences=[API])
    foreign = await issue(other, await identity.load_agent(other, "gamma"))
    assert "is not a published issuer key" in await reason(home, foreign.token)
    assert await tokens.introspect(home, foreign.token) == {"active": False}
    await other.close()


# -- introspection ---------------------------------------------------------------------------


async def test_introspection_reports_active_tokens_and_hides_everything_else(
    home: Home, gamma: identity.AgentContext, clock: FrozenClock
) -> None:
    issued = await issue(home, gamma, audience=MAIL, ttl=60)
    info = await tokens.introspect(home, issued.token)
    assert info["active"] is True and info["token_type"] == "Bearer"
    assert (info["sub"], info["aud"], info["jti"]) == (gamma.agent_id, MAIL, issued.jti)
    assert info["scope"] == "audit:read secret:read:API_*"
    clock.advance(seconds=60)
    assert await tokens.introspect(home, issued.token) == {"active": False}
    assert await tokens.introspect(home, "not a token") == {"active": False}


# -- rotation --------------------------------------------------------------------------------


async def test_rotation_keeps_old_tokens_valid_until_they_expire(
    home: Home, gamma: identity.AgentContext, clock: FrozenClock
) -> None:
    first_kid = home.meta["issuer_kid"]
    old = await issue(home, gamma, ttl=600)
    clock.advance(seconds=100)
    later_old = await issue(home, gamma, ttl=900)  # the last token the old key signs
    result = await tokens.rotate(home)
    assert result.retired_kid == first_kid and result.kid != first_kid
    assert result.retired_published_until == later_old.expires_at
    assert home.meta["issuer_kid"] == result.kid
    new = await issue(home, gamma, ttl=3600)
    assert parts(new.token)[0]["kid"] == result.kid
    assert [k["kid"] for k in (await tokens.jwks(home))["keys"]] == [result.kid, first_kid]
    for token in (old, later_old, new):
        await tokens.verify(home, token.token, audience=API)

    clock.advance(seconds=600)  # `old` has expired, `later_old` has not
    assert (await reason(home, old.token)).startswith("expired at ")
    await tokens.verify(home, later_old.token, audience=API)
    assert len((await tokens.jwks(home))["keys"]) == 2

    clock.advance(seconds=300)  # the retired key's last token has expired
    assert [k["kid"] for k in (await tokens.jwks(home))["keys"]] == [result.kid]
    assert await reason(home, later_old.token) == (
        f"key id {first_kid!r} was retired and every token it signed has expired"
    )
    await tokens.verify(home, new.token, audience=API)

    rotate = [e for e in entries(home) if e["action"] == "keys.rotate"]
    assert len(rotate) == 1 and rotate[0]["actor"] == "owner@example.com"
    assert rotate[0]["args"]["kid"] == result.kid
    assert rotate[0]["args"]["retired_kid"] == first_kid
    await audit.verify_home(home)


async def test_a_retired_key_cannot_sign_new_tokens(
    home: Home, gamma: identity.AgentContext
) -> None:
    first_kid = home.meta["issuer_kid"]
    await tokens.rotate(home)
    await tokens.rotate(home)
    kids = [k["kid"] for k in (await tokens.jwks(home))["keys"]]
    assert first_kid not in kids and len(kids) == 1  # no tokens: retired keys leave at once
    assert (await issue(home, gamma)).kid == kids[0]


async def test_jwks_holds_okp_keys_only(home: Home) -> None:
    (key,) = (await tokens.jwks(home))["keys"]
    assert set(key) == {"kty", "crv", "x", "kid", "use", "alg"}
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert key["kid"] == thumbprint(b64url_decode(key["x"])) == home.meta["issuer_kid"]
    seed = b64url(bytes(issuer_key(home).signing_key))
    assert seed not in json.dumps(await tokens.jwks(home))  # the private half is never published


# -- the token_issue tool --------------------------------------------------------------------


async def test_token_issue_tool_records_the_token_facts_never_the_token(
    home: Home, gamma: identity.AgentContext, mode: str
) -> None:
    async with Client(await server_for(home, "gamma"), mode=mode) as client:
        result = await client.call_tool(
            "token_issue", {"audience": API, "scopes": ["audit:read"], "ttl_seconds": 120}
        )
    assert not result.is_error
    out = result.structured_content
    assert out is not None and out["scopes"] == ["audit:read"]
    verified = await tokens.verify(home, out["token"], audience=API)
    assert verified.subject == gamma.agent_id
    intent, outcome = entries(home)[-2:]
    assert (intent["phase"], outcome["phase"]) == ("intent", "outcome")
    assert intent["action"] == "token.issue" and intent["actor"] == gamma.agent_id
    assert intent["kid"] == gamma.key.kid  # signed by the agent's own key
    details = intent["args"]["details"]
    assert details == {
        "jti": out["jti"],
        "agent": "gamma",
        "audience": API,
        "scopes": ["audit:read"],
        "expires_at": out["expires_at"],
    }
    assert outcome["outcome"] == "ok" and outcome["args"]["details"] == {"kid": out["kid"]}
    assert outcome["result_hash"]
    everything = json.dumps(entries(home))
    assert out["token"] not in everything
    assert out["token"].split(".")[2] not in everything  # not even the signature
    await audit.verify_home(home)


async def test_token_issue_tool_refusals_are_recorded(
    home: Home, gamma: identity.AgentContext, mode: str
) -> None:
    async with Client(await server_for(home, "gamma"), mode=mode) as client:
        escalate = await client.call_tool(
            "token_issue", {"audience": API, "scopes": ["email:send"]}
        )
        outside = await client.call_tool("token_issue", {"audience": "https://evil.example"})
        too_long = await client.call_tool("token_issue", {"audience": API, "ttl_seconds": 7200})
    async with Client(await server_for(home, "alpha"), mode=mode) as client:
        no_scope = await client.call_tool("token_issue", {"audience": API})
    texts = [r.content[0].text for r in (escalate, outside, too_long, no_scope)]  # type: ignore[union-attr]
    assert all(r.is_error for r in (escalate, outside, too_long, no_scope))
    assert "'email:send' is not granted by this agent's charter" in texts[0]
    assert "audience 'https://evil.example' is not allowed" in texts[1]
    assert "ttl_seconds" in texts[2] and "3600" in texts[2]
    assert "does not grant 'token:issue'" in texts[3]
    denied = [e for e in entries(home) if e["action"] == "token.issue"]
    assert [e["outcome"] for e in denied] == ["denied"] * 4
    assert all(e["phase"] == "call" for e in denied)  # refused before any intent
    assert raw_db(home).execute("SELECT count(*) FROM tokens").fetchone()[0] == 0
    await audit.verify_home(home)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x.example",
        "https://x.example/charter",
        "https://u:p@x.example",
        "x.example",
        "http://x:99999",
        "https://x.example?a=1",
    ],
)
async def test_issuer_must_be_an_http_origin(home: Home, url: str) -> None:
    with pytest.raises(InvalidInput):
        await tokens.set_issuer(home, url)
    assert await tokens.issuer(home) == tokens.DEFAULT_ISSUER
    assert tokens.normalize_issuer(" https://X.example:8443/ ") == "https://X.example:8443"


async def test_a_token_never_outlives_its_charter(home: Home, clock: FrozenClock) -> None:
    await identity.add_agent(
        home, "brief", scopes=["audit:read"], audiences=[API], valid_for=dt.timedelta(minutes=5)
    )
    agent = await identity.load_agent(home, "brief")
    issued = await issue(home, agent, ttl=3600)
    assert issued.expires_at == rfc3339(agent.charter.not_after.replace(microsecond=0))
    clock.advance(minutes=5)
    with pytest.raises(AgentRevoked, match="charter has expired"):
        tokens.prepare(home, "brief", agent.charter, audience=API)


# -- the issued row is authoritative (issue 16.5) --------------------------------------------


@pytest.mark.parametrize("pre_digest_row", [False, True])
async def test_a_token_re_signed_with_a_later_expiry_is_refused(
    home: Home, gamma: identity.AgentContext, clock: FrozenClock, pre_digest_row: bool
) -> None:
    """The attack: an expired token's claims, re-signed with the issuer key and every time
    moved an hour on (the lifetime stays legal), under the same jti."""
    issued = await issue(home, gamma, ttl=60)
    if pre_digest_row:  # a row written before migration 0008 still pins the times
        raw_db(home).execute("UPDATE tokens SET digest = NULL")
    clock.advance(seconds=120)
    assert (await reason(home, issued.token)).startswith("expired at ")
    header, claims = parts(issued.token)
    only_exp = forge(header, claims | {"exp": claims["exp"] + 600}, issuer_key(home))
    assert await reason(home, only_exp) == "the token does not match what was issued under its id"
    later = {k: claims[k] + 3600 for k in ("iat", "nbf", "exp")}
    clock.advance(seconds=3600 - 120)  # now inside the moved window
    resigned = forge(header, claims | later, issuer_key(home))
    with pytest.raises(token_errors.NotIssued) as info:
        await tokens.verify(home, resigned, audience=API)
    assert info.value.reason == "the token does not match what was issued under its id"
    assert info.value.jti == issued.jti  # for the logs
    assert await tokens.introspect(home, resigned) == {"active": False}


@pytest.mark.parametrize(
    "change",
    [
        {"owner": "mallory@example.com"},
        {"cnf": {"jkt": "another-key"}},
        {"extra": "claim"},
    ],
)
async def test_every_claim_is_pinned_by_the_row(
    home: Home, gamma: identity.AgentContext, change: dict[str, Any]
) -> None:
    header, claims = parts((await issue(home, gamma)).token)
    forged = forge(header, claims | change, issuer_key(home))
    assert await reason(home, forged) == "the token does not match what was issued under its id"


async def test_each_refusal_has_a_typed_reason_and_a_safe_description(
    home: Home, gamma: identity.AgentContext
) -> None:
    issued = await issue(home, gamma)
    header, claims = parts(issued.token)
    stranger = KeyPair.generate()
    cases: list[tuple[str, type[TokenInvalid]]] = [
        ("garbage", token_errors.Malformed),
        (forge(header | {"kid": stranger.kid}, claims, stranger), token_errors.UnknownKey),
        (forge(header, claims, stranger), token_errors.BadSignature),
        (forge(header, claims | {"iss": "https://x.example"}, issuer_key(home)),
         token_errors.WrongIssuer),
        (forge(header, claims | {"jti": "made-up"}, issuer_key(home)), token_errors.NotIssued),
    ]  # fmt: skip
    for token, kind in cases:
        with pytest.raises(kind) as info:
            await tokens.verify(home, token, audience=API)
        description = info.value.description
        assert description != TokenInvalid.description and token not in description
        for value in (claims["jti"], claims["sub"], stranger.kid):
            assert value not in description


# -- scopes by glob semantics (issue 16.6) ---------------------------------------------------


async def test_token_issue_refuses_a_glob_wider_than_the_charter(home: Home, mode: str) -> None:
    await identity.add_agent(
        home,
        "globber",
        scopes=["token:issue", "secret:use:A?", "secret:use:[!X]*"],
        audiences=[API],
    )
    wider = ["secret:use:[X]*", "secret:use:*", "secret:use:?*", "secret:use:X?"]
    async with Client(await server_for(home, "globber"), mode=mode) as client:
        refused = [
            await client.call_tool("token_issue", {"audience": API, "scopes": [s]}) for s in wider
        ]
        narrower = await client.call_tool(
            "token_issue", {"audience": API, "scopes": ["secret:use:A*", "secret:use:Y*"]}
        )  # A* is inside [!X]*: the union of the charter's globs counts
    for scope, result in zip(wider, refused, strict=True):
        assert result.is_error
        assert f"requested scope {scope!r} is not granted by this agent's charter" in (
            result.content[0].text  # type: ignore[union-attr]
        )
    assert not narrower.is_error and narrower.structured_content is not None
    assert narrower.structured_content["scopes"] == ["secret:use:A*", "secret:use:Y*"]
    assert raw_db(home).execute("SELECT count(*) FROM tokens").fetchone()[0] == 1
    await audit.verify_home(home)


# -- PyJWT -----------------------------------------------------------------------------------


async def test_a_token_verifies_with_plain_pyjwt_given_the_jwks(
    home: Home, gamma: identity.AgentContext
) -> None:
    """Made by PyJWT through the signer: any PyJWT relying party reads it with the JWKS."""
    issued = await issue(home, gamma, scopes=["audit:read"])
    key = jwt.PyJWK((await tokens.jwks(home))["keys"][0])
    claims = jwt.decode(
        issued.token,
        key,
        algorithms=["EdDSA"],
        audience=API,
        issuer=tokens.DEFAULT_ISSUER,
        # The frozen clock is not the system clock PyJWT reads; times are Charter's to check.
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    assert claims["jti"] == issued.jti and claims["scope"] == "audit:read"
    assert jwt.get_unverified_header(issued.token)["typ"] == "at+jwt"


def test_pyjwt_never_receives_a_private_key(home: Home) -> None:
    """The signing algorithm takes only a key handle (the signer signs); a key pair, the form
    a private key takes in memory, is refused before anything is signed."""
    with pytest.raises(TypeError, match="KeyHandle"):
        codec.encode({"jti": "x"}, issuer_key(home))  # type: ignore[arg-type]
    handle = KeyHandle.of(home.signer, issuer_ref(home.meta["issuer_kid"]))
    header, claims = parts(codec.encode({"jti": "x"}, handle))
    assert header == {"alg": "EdDSA", "kid": handle.kid, "typ": "at+jwt"} and claims == {"jti": "x"}
