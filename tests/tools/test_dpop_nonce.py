"""Server DPoP nonces (RFC 9449 §8; issue 20 item 2): stateless HMAC time-window nonces whose
key is in the home's storage, so every server of a deployment accepts the others' nonces.

With nonces required, a proof without one, with a stale one or with one made under another
key is refused with ``use_dpop_nonce`` and is not recorded as used; one with a current nonce is
accepted once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec
from dpophttp import public_jwk

from charter.cli import cli
from charter.config import Settings
from charter.home import Home
from charter.testing import FrozenClock, make_home, raw_tx
from charter.tools import identity, tokens
from charter.tools.tokens.dpop import NonceRequired, make_proof
from charter.tools.tokens.nonce import META_KEY, WINDOW_S, DpopNonces
from charter.tools.tokens.proof import ProofReplayed

API = "https://api.example.com"
NOW = dt.datetime(2026, 3, 1, 12, 0, 30, tzinfo=dt.UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
async def clocked(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[Home]:
    home = await make_home(tmp_path / "home", clock=clock)
    await identity.add_agent(home, "bot", scopes=["audit:read"], audiences=[API])
    yield home
    await home.close()


async def test_a_nonce_lives_one_to_two_windows_and_only_under_its_key(
    clocked: Home, clock: FrozenClock, tmp_path: Path
) -> None:
    nonces = await DpopNonces.for_home(clocked)
    nonce = nonces.current()
    assert nonces.accepts(nonce)
    clock.advance(seconds=WINDOW_S)  # the next window: still accepted
    assert nonces.accepts(nonce) and nonces.current() != nonce
    clock.advance(seconds=WINDOW_S)  # two windows on: stale
    assert not nonces.accepts(nonce)
    # A nonce made under another home's key, however fresh, is not this home's.
    other = await make_home(tmp_path / "other", clock=clock)
    try:
        foreign = (await DpopNonces.for_home(other)).current()
    finally:
        await other.close()
    assert not nonces.accepts(foreign)
    # Tampered, truncated, padded or not a nonce at all.
    current = nonces.current()
    flipped = current[:-2] + ("AA" if not current.endswith("AA") else "BB")
    for bad in (flipped, current[:-1], current + "=", "", "not a nonce", "é" * 20, None):
        assert not nonces.accepts(bad), bad


async def test_every_handle_on_the_home_shares_one_key(clocked: Home, clock: FrozenClock) -> None:
    second = await Home.open(Settings(home=clocked.settings.home), clock=clock)
    try:
        first_nonces = await DpopNonces.for_home(clocked)
        second_nonces = await DpopNonces.for_home(second)
    finally:
        await second.close()
    assert second_nonces.accepts(first_nonces.current())
    assert first_nonces.accepts(second_nonces.current())
    assert len(bytes.fromhex(raw_tx(clocked).meta.get(META_KEY) or "")) == 32


async def test_with_nonces_required_a_proof_needs_a_current_one(
    clocked: Home, clock: FrozenClock
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(key)
    issued = await tokens.issue_for_owner(clocked, "bot", audience=API, dpop_jwk=jwk)
    token = issued.token
    nonces = await DpopNonces.for_home(clocked)

    def proof(nonce: str | None) -> str:
        return make_proof(
            key, method="POST", url=API, now=clock.now(), access_token=token, nonce=nonce
        )

    async def check(p: str) -> tokens.VerifiedToken:
        return await tokens.verify_with_proof(
            clocked, token, p, method="POST", url=API, audience=API, nonces=nonces
        )

    stale = nonces.current()
    clock.advance(seconds=2 * WINDOW_S)
    for refused in (proof(None), proof(stale), proof("made-up")):
        with pytest.raises(NonceRequired) as caught:
            await check(refused)
        assert caught.value.error == "use_dpop_nonce"
    assert raw_tx(clocked).dpop.count() == 0  # refused proofs are not remembered
    good = proof(nonces.current())
    assert (await check(good)).dpop_jkt == tokens.dpop.jwk_thumbprint(jwk)
    with pytest.raises(ProofReplayed):
        await check(good)
    # Without nonces required, a proof without one is fine (the default).
    await tokens.verify_with_proof(
        clocked, token, proof(None), method="POST", url=API, audience=API
    )


def test_dpop_nonce_without_http_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["serve", "--agent", "bot", "--dpop-nonce", "--home", str(tmp_path / "none")]
    )
    assert result.exit_code != 0
    assert "--dpop-nonce is for --http" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_servers_starting_at_once_agree_on_one_key(
    tmp_path: Path, clock: FrozenClock, backend: str, request: pytest.FixtureRequest
) -> None:
    url = str(request.getfixturevalue("pg_database")) if backend == "postgresql" else None
    settings = Settings(home=tmp_path / "home", database_url=url)
    first = await Home.init(settings, owner="owner@example.com", clock=clock, cheap_kdf=True)
    others = [await Home.open(settings, clock=clock) for _ in range(3)]
    try:
        made = await asyncio.gather(*(DpopNonces.for_home(h) for h in (first, *others)))
    finally:
        for h in (first, *others):
            await h.close()
    assert len({n.current() for n in made}) == 1  # one key: each server's nonce is everyone's
    assert all(n.accepts(made[-1].current()) for n in made)
