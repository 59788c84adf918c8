"""The HTTP server's cache of verified bearer tokens (issue 26: HTTP under load).

A token the server verified before is not parsed nor its signature checked again, but every
check that can change its answer runs at every request. Each test primes a cache exactly as
the server's verifier does, changes the home, and expects the next use refused with the
reason a cold verification gives: these fail if a cache hit skipped any of those checks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from mcp import Client

from charter.errors import TokenInvalid
from charter.home import Home
from charter.testing import FrozenClock, raw_db, server_for
from charter.tools import identity, tokens

API = "https://api.example.com"
ISSUER = tokens.DEFAULT_ISSUER  # a server's verifier always names the issuer it advertises


async def issue(home: Home, agent: str = "alpha", ttl: int = 300) -> str:
    return (await tokens.issue_for_owner(home, agent, audience=API, ttl_seconds=ttl)).token


async def primed(home: Home, token: str) -> tokens.VerifiedTokens:
    """A cache holding ``token``, verified twice (a miss, then a hit)."""
    cache = tokens.VerifiedTokens()
    first = await tokens.verify(home, token, audience=API, issuer_url=ISSUER, cache=cache)
    again = await tokens.verify(home, token, audience=API, issuer_url=ISSUER, cache=cache)
    assert len(cache) == 1 and again == first
    return cache


async def _revoke(home: Home, token: str, clock: FrozenClock) -> None:
    await tokens.revoke(home, (await tokens.verify(home, token, audience=API)).jti)


async def _revoke_agent(home: Home, token: str, clock: FrozenClock) -> None:
    await identity.revoke_agent(home, "alpha", reason="compromised")


async def _recharter(home: Home, token: str, clock: FrozenClock) -> None:
    await identity.update_agent(home, "alpha", scopes=["audit:read"], audiences=[API])


async def _expire(home: Home, token: str, clock: FrozenClock) -> None:
    clock.advance(seconds=301)


async def _tamper_row(home: Home, token: str, clock: FrozenClock) -> None:
    # What the row pins changes under the cached entry: the hit is checked against the row.
    raw_db(home).execute("UPDATE tokens SET scopes = 'audit:read token:issue'")


CHANGES: dict[str, tuple[Callable[[Home, str, FrozenClock], Awaitable[None]], str]] = {
    "token revoked": (_revoke, "revoked"),
    "agent revoked": (_revoke_agent, "agent_revoked"),
    "charter superseded": (_recharter, "charter_superseded"),
    "lifetime over": (_expire, "expired"),
    "row changed": (_tamper_row, "not_issued"),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_a_cached_token_is_refused_at_its_next_use_after_a_change(
    home: Home, clock: FrozenClock, change: str
) -> None:
    token = await issue(home)
    cache = await primed(home, token)
    apply, code = CHANGES[change]
    await apply(home, token, clock)
    with pytest.raises(TokenInvalid) as refused:
        await tokens.verify(home, token, audience=API, issuer_url=ISSUER, cache=cache)
    assert refused.value.code == code
    with pytest.raises(TokenInvalid) as cold:  # the same answer as without a cache
        await tokens.verify(home, token, audience=API)
    assert (cold.value.code, cold.value.reason) == (code, refused.value.reason)
    assert len(cache) == 0  # a refused token leaves the cache


async def test_a_cached_token_stops_with_its_parent_agent(home: Home) -> None:
    """A sub-agent's token is refused once an ancestor is revoked (the chain is re-walked)."""
    await identity.add_agent(
        home, "planner", scopes=["agent:delegate", "audit:read"], audiences=[API]
    )
    async with Client(await server_for(home, "planner")) as client:
        made = await client.call_tool(
            "agent_delegate",
            {"name": "helper", "scopes": ["audit:read"], "audiences": [API], "ttl_seconds": 600},
        )
    assert not made.is_error, made.content
    token = await issue(home, "helper")
    cache = await primed(home, token)
    await identity.revoke_agent(home, "planner", reason="compromised")
    with pytest.raises(TokenInvalid) as refused:
        await tokens.verify(home, token, audience=API, issuer_url=ISSUER, cache=cache)
    assert refused.value.code == "agent_revoked"


async def test_only_the_exact_text_hits_and_for_its_audience_only(home: Home) -> None:
    token = await issue(home)
    cache = await primed(home, token)
    tail = "AAAA" if token[-4:] != "AAAA" else "BBBB"
    with pytest.raises(TokenInvalid) as forged:  # same claims, another signature: a miss
        await tokens.verify(home, token[:-4] + tail, audience=API, issuer_url=ISSUER, cache=cache)
    assert forged.value.code == "bad_signature"
    with pytest.raises(TokenInvalid) as elsewhere:  # the same token for another audience
        await tokens.verify(
            home, token, audience="https://other.example.com", issuer_url=ISSUER, cache=cache
        )
    assert elsewhere.value.code == "wrong_audience"
    assert len(cache) == 1  # the refusals cached nothing; the good entry stays


async def test_what_a_caller_does_to_the_claims_does_not_reach_the_cache(home: Home) -> None:
    token = await issue(home)
    cache = await primed(home, token)
    seen = await tokens.verify(home, token, audience=API, issuer_url=ISSUER, cache=cache)
    seen.claims["scope"] = "audit:read token:issue"
    seen.claims["cnf"]["jkt"] = "someone-else"
    again = await tokens.verify(home, token, audience=API, issuer_url=ISSUER, cache=cache)
    assert again.scopes == ("audit:read",)
    assert again.claims == (await tokens.verify(home, token, audience=API)).claims


async def test_the_cache_is_bounded(home: Home) -> None:
    cache = tokens.VerifiedTokens(capacity=2)
    issued = [await issue(home) for _ in range(3)]
    for token in issued:
        await tokens.verify(home, token, audience=API, issuer_url=ISSUER, cache=cache)
    assert len(cache) == 2
    assert cache.get((issued[0], API, ISSUER)) is None  # the least recently used went


async def test_without_a_fixed_issuer_the_homes_issuer_is_checked_every_time(home: Home) -> None:
    """A verifier that accepts the home's issuer (whatever it is now) caches nothing."""
    token = await issue(home)
    cache = tokens.VerifiedTokens()
    await tokens.verify(home, token, audience=API, cache=cache)
    await tokens.set_issuer(home, "http://127.0.0.1:18765")
    with pytest.raises(TokenInvalid) as refused:
        await tokens.verify(home, token, audience=API, cache=cache)
    assert refused.value.code == "wrong_issuer"
    assert len(cache) == 0
