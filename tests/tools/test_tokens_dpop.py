"""DPoP binding and checking of Charter tokens (issue 20), at the service and the CLI.

A token issued with a client's public JWK carries that key's RFC 7638 thumbprint as
``cnf.jkt`` (computed independently by joserfc here), its row says it is DPoP-bound, and it
verifies only with a proof signed by that key; each proof is accepted once across every
handle on the home (the replay cache is in storage).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc.jwk import ECKey, OKPKey

from charter.cli import cli
from charter.config import Settings
from charter.errors import InvalidInput
from charter.evidence.entries import Entry
from charter.evidence.jwk import b64url, b64url_decode
from charter.home import Home
from charter.testing import FrozenClock, make_home, raw_tx
from charter.tools import identity, tokens
from charter.tools.tokens.dpop import make_proof
from charter.tools.tokens.proof import ProofMissing, ProofReplayed, ProofRequired

API = "https://api.example.com"
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def p256_jwk(key: ec.EllipticCurvePrivateKey, private: bool = False) -> dict[str, str]:
    numbers = key.private_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.public_numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.public_numbers.y.to_bytes(32, "big")),
    }
    return jwk | ({"d": b64url(numbers.private_value.to_bytes(32, "big"))} if private else {})


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
async def clocked(tmp_path: Path) -> AsyncIterator[Home]:
    home = await make_home(tmp_path / "home", clock=FrozenClock(NOW))
    await identity.add_agent(home, "bot", scopes=["audit:read"], audiences=[API])
    yield home
    await home.close()


async def bound(home: Home, key: ec.EllipticCurvePrivateKey) -> str:
    return (await tokens.issue_for_owner(home, "bot", audience=API, dpop_jwk=p256_jwk(key))).token


def claims(token: str) -> dict[str, Any]:
    return dict(json.loads(b64url_decode(token.split(".")[1])))


# -- binding ---------------------------------------------------------------------------------


async def test_cnf_jkt_is_the_rfc_7638_thumbprint_of_the_given_key(
    clocked: Home, key: ec.EllipticCurvePrivateKey
) -> None:
    issued = await tokens.issue_for_owner(clocked, "bot", audience=API, dpop_jwk=p256_jwk(key))
    jkt = ECKey.import_key(key.public_key()).thumbprint()  # computed by joserfc
    assert claims(issued.token)["cnf"] == {"jkt": jkt}
    assert issued.token_type == "DPoP"
    assert raw_tx(clocked).tokens.get_with_agent(issued.jti).dpop_jkt == jkt  # type: ignore[union-attr]
    ed = ed25519.Ed25519PrivateKey.generate()
    raw = ed.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    ed_jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
    issued = await tokens.issue_for_owner(clocked, "bot", audience=API, dpop_jwk=ed_jwk)
    assert claims(issued.token)["cnf"]["jkt"] == OKPKey.import_key(ed.public_key()).thumbprint()
    plain = await tokens.issue_for_owner(clocked, "bot", audience=API)
    assert plain.token_type == "Bearer"
    assert raw_tx(clocked).tokens.get_with_agent(plain.jti).dpop_jkt is None  # type: ignore[union-attr]
    entry = Entry.from_body(list(raw_tx(clocked).ledger.iter_bodies())[-3]).fields
    assert entry["action"] == "token.issue" and entry["args"]["dpop_jkt"] == jkt


@pytest.mark.parametrize(
    ("jwk", "says"),
    [
        ("private", "private key material"),
        ({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}, "P-256 public key"),
        ({"kty": "RSA", "n": "AQAB", "e": "AQAB"}, "P-256 or OKP Ed25519"),
        ({"kty": "oct", "k": "c2VjcmV0"}, "private key material"),
        ("not a key", "JSON object"),
    ],
)
async def test_a_private_or_malformed_key_is_refused(
    clocked: Home, key: ec.EllipticCurvePrivateKey, jwk: Any, says: str
) -> None:
    value = p256_jwk(key, private=True) if jwk == "private" else jwk
    with pytest.raises(InvalidInput, match=says) as refused:
        await tokens.issue_for_owner(clocked, "bot", audience=API, dpop_jwk=value)
    assert "\n" not in str(refused.value)
    assert raw_tx(clocked).tokens.count_live_for_charter("x", "") == 0


# -- checking --------------------------------------------------------------------------------


async def test_a_dpop_token_verifies_only_with_a_proof_of_its_key(
    clocked: Home, key: ec.EllipticCurvePrivateKey
) -> None:
    token = (
        await tokens.issue_for_owner(clocked, "bot", audience=API, dpop_jwk=p256_jwk(key))
    ).token
    url = API + "/things"
    with pytest.raises(ProofRequired):
        tokens.require_proof(await tokens.verify(clocked, token, audience=API))
    with pytest.raises(ProofMissing):
        await tokens.verify_with_proof(clocked, token, None, method="GET", url=url, audience=API)
    proof = make_proof(key, method="GET", url=url, now=NOW, access_token=token)
    verified = await tokens.verify_with_proof(
        clocked, token, proof, method="GET", url=url, audience=API
    )
    assert verified.dpop_jkt == claims(token)["cnf"]["jkt"]
    with pytest.raises(ProofReplayed):
        await tokens.verify_with_proof(clocked, token, proof, method="GET", url=url, audience=API)
    with pytest.raises(tokens.dpop.WrongMethod):
        await tokens.verify_with_proof(
            clocked,
            token,
            make_proof(key, method="GET", url=url, now=NOW, access_token=token),
            method="POST",
            url=url,
            audience=API,
        )


async def test_the_replay_cache_is_shared_by_every_handle_and_pruned(
    clocked: Home, key: ec.EllipticCurvePrivateKey
) -> None:
    """Two servers of one home: a proof the first accepted is a replay at the second."""
    token = (
        await tokens.issue_for_owner(clocked, "bot", audience=API, dpop_jwk=p256_jwk(key))
    ).token
    other = await Home.open(Settings(home=clocked.settings.home), clock=FrozenClock(NOW))
    try:
        proof = make_proof(key, method="POST", url=API, now=NOW, access_token=token)
        await tokens.verify_with_proof(clocked, token, proof, method="POST", url=API, audience=API)
        with pytest.raises(ProofReplayed):
            await tokens.verify_with_proof(
                other, token, proof, method="POST", url=API, audience=API
            )
    finally:
        await other.close()
    repo = raw_tx(clocked).dpop
    assert repo.count() == 1
    later = "2098-01-01T00:00:00.000Z"
    assert repo.remember("k", "j", expires_at="2099-01-01T00:00:00.000Z", now=later)
    assert repo.count() == 1  # the 2026 entry was pruned: it had expired at `now`
    assert not repo.remember("k", "j", expires_at="2099-01-01T00:00:00.000Z", now=later)


# -- the CLI ---------------------------------------------------------------------------------


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args], env={"CHARTER_HOME": str(home)})


async def test_cli_issue_dpop_jwk_and_verify_dpop(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    home = await make_home(tmp_path / "home")
    await identity.add_agent(home, "bot", scopes=["audit:read"], audiences=[API])
    await home.close()
    path = home.settings.home
    jwk_file = tmp_path / "client.jwk"
    jwk_file.write_text(json.dumps(p256_jwk(key)))
    issued = run(path, "token", "issue", "--agent", "bot", "--audience", API,
                 "--dpop-jwk", str(jwk_file))  # fmt: skip
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip()
    assert claims(token)["cnf"]["jkt"] == ECKey.import_key(key.public_key()).thumbprint()
    assert "DPoP token" in issued.stderr

    bare = run(path, "token", "verify", token, "--audience", API)
    assert bare.exit_code == 5 and "DPoP-bound" in bare.stderr
    url = API + "/x?y=1"
    proof = make_proof(key, method="PUT", url=url, now=dt.datetime.now(dt.UTC), access_token=token)
    args = ("token", "verify", token, "--audience", API, "--dpop", proof, "--method", "PUT")
    good = run(path, *args, "--url", url, "--json")
    assert good.exit_code == 0, good.output
    assert json.loads(good.stdout)["claims"]["cnf"]["jkt"] == claims(token)["cnf"]["jkt"]
    replay = run(path, *args, "--url", url, "--json")
    assert replay.exit_code == 5 and json.loads(replay.stdout)["error"] == "dpop_replayed"
    other_url = run(path, *args, "--url", API + "/elsewhere")
    assert other_url.exit_code == 5 and "'htu' is not the request's URL" in other_url.stderr
    assert run(path, *args).exit_code == 2  # --dpop without --url

    for bad, says in (
        (json.dumps(p256_jwk(key, private=True)), "private key material"),
        ("{not json", "holding one JWK"),
        ("[1]", "one JWK"),
    ):
        jwk_file.write_text(bad)
        refused = run(path, "token", "issue", "--agent", "bot", "--audience", API,
                      "--dpop-jwk", str(jwk_file))  # fmt: skip
        assert refused.exit_code != 0 and says in refused.stderr, refused.output
        assert "Traceback" not in refused.output
