"""Scoped tokens: issue and verify rates against raw PyJWT EdDSA encode/decode, same run.

* Issue: Charter checks the request against the charter, signs the RFC 9068 token (with
  PyJWT, through the signer seam) and records its row (what makes revocation and
  introspection possible); the baseline is ``jwt.encode`` of the same claims with the same
  Ed25519 key.
* Verify: Charter pins EdDSA, the token type, a published key id, issuer, audience and every
  required claim (PyJWT's decode does part of it), then looks up the token's row
  (revocation) and its agent (revocation, charter); the baseline is ``jwt.decode`` pinning
  the algorithm, issuer, audience and the registered claims, with no revocation lookups.

Charter's side runs as the services do, on the event loop: signing reads the issuer key's id
from the home's store, and verifying is one read unit of work there (each a hop to the
store's thread and back, counted in the figures).

Run alone with ``python -m bench.bench_tokens [--quick]``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench._common import (
    INFO,
    Row,
    ainterleave,
    arate,
    median,
    pick,
    rate,
    ratio_of_rounds,
    row,
    scratch_dir,
)
from bench._ledgers import AGENT, new_home
from charter.home import Home
from charter.keys.files import read_key_file
from charter.storage.ports import Tx
from charter.tools import identity, tokens

AUDIENCE = "https://api.example.com"
#: Issuing writes the token's row, which revocation needs: most of the gap to a bare encode.
#: The tool commits the row with its outcome entry (``Call.on_success``), so the commit is the
#: ledger's and counted in the append rows; here each round's rows commit together.
ISSUE_TARGET = ">= 0.7x"
VERIFY_TARGET = ">= 0.8x"
_REGISTERED = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]


def run(quick: bool) -> list[Row]:
    """Three rows: token issue, token verify and a DPoP-bound request's checks, each as a
    ratio to raw PyJWT."""
    return asyncio.run(_run(quick))


async def _run(quick: bool) -> list[Row]:
    n = pick(quick, full=2000, quick_n=500, tiny_n=20)
    rounds = pick(quick, full=9, quick_n=5, tiny_n=2)
    home = await new_home(scratch_dir("tokens") / "home")
    try:
        return await _measure(home, n, rounds)
    finally:
        await home.close()


async def _measure(home: Home, n: int, rounds: int) -> list[Row]:
    agent = await identity.load_agent(home, AGENT)
    sample = await _issue(home, agent)
    claims = (await tokens.verify(home, sample, audience=AUDIENCE)).claims
    key = read_key_file(home.layout.issuer_key(home.meta["issuer_kid"]))
    private = Ed25519PrivateKey.from_private_bytes(bytes(key.signing_key))
    public = private.public_key()
    headers = {"kid": key.kid, "typ": tokens.TOKEN_TYPE}
    issuer = await tokens.issuer(home)

    def raw_encode() -> None:
        for _ in range(n):
            jwt.encode(claims, private, algorithm="EdDSA", headers=headers)

    async def raw_issue_rate() -> float:
        return rate(n, raw_encode)

    async def charter_issue() -> None:
        signed = []
        for _ in range(n):
            request = tokens.prepare(home, agent.name, agent.charter, audience=AUDIENCE)
            signed.append((request, await tokens.sign(home, request)))

        def rows_of(tx: Tx) -> None:  # as the tool: rows committed with the ledger's entry
            for request, issued in signed:
                tokens.record(tx, request, issued)

        await home.write(rows_of)

    base, subj = await ainterleave(rounds, raw_issue_rate, lambda: arate(n, charter_issue))
    rows = [
        row(
            "tokens: issue (check, sign, record row)",
            median(subj),
            median(base),
            "tokens/s",
            ISSUE_TARGET,
            f"{rounds} interleaved rounds of {n}, each round's rows in one transaction (the "
            "tool commits a row with its outcome entry); baseline = PyJWT EdDSA encode",
            ratio=ratio_of_rounds(subj, base),
        )
    ]
    batch = [await _issue(home, agent) for _ in range(n)]

    def raw_decode() -> None:
        for token in batch:
            jwt.decode(
                token,
                public,
                algorithms=["EdDSA"],
                audience=AUDIENCE,
                issuer=issuer,
                options={"require": _REGISTERED},
            )

    async def raw_verify_rate() -> float:
        return rate(n, raw_decode)

    async def charter_verify() -> None:
        for token in batch:
            await tokens.verify(home, token, audience=AUDIENCE)

    base, subj = await ainterleave(rounds, raw_verify_rate, lambda: arate(n, charter_verify))
    rows.append(
        row(
            "tokens: verify (all checks + revocation)",
            median(subj),
            median(base),
            "tokens/s",
            VERIFY_TARGET,
            f"{rounds} interleaved rounds of {n}; baseline = PyJWT EdDSA decode, no lookups",
            ratio=ratio_of_rounds(subj, base),
        )
    )
    rows.append(await _dpop_row(home, batch, public, issuer, n, rounds))
    return rows


async def _dpop_row(
    home: Home, batch: list[str], issuer_key: Any, issuer: str, n: int, rounds: int
) -> Row:
    """A DPoP request's checks (RFC 9449) against PyJWT decoding the same token and proof.

    Charter: every token check, every proof check (typ, alg, signature with the proof's own
    key, method, URL, iat window, ath, the key's thumbprint against ``cnf.jkt``) and the
    proof's jti recorded in the shared replay cache (a write to the store: each request's
    proof is new). Baseline: ``jwt.decode`` of the token (as above) and of the proof with
    the key from its header, no replay cache."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from charter.tools.tokens.dpop import make_proof

    client = ec.generate_private_key(ec.SECP256R1())
    url = "https://charter.example.com/mcp"
    # Tokens bound to the client's key, and one fresh proof per request and round.
    agent = await identity.load_agent(home, AGENT)
    jwk = _p256_jwk(client)
    bound = []
    for _ in range(n):
        request = tokens.prepare(home, agent.name, agent.charter, audience=AUDIENCE, dpop_jwk=jwk)
        bound.append((await tokens.issue(home, request)).token)

    def proofs() -> list[str]:
        now = home.clock.now()
        return [make_proof(client, method="POST", url=url, now=now, access_token=t) for t in bound]

    public = client.public_key()

    async def raw_rate() -> float:
        fresh = proofs()
        t0 = time.perf_counter()
        for token, proof in zip(bound, fresh, strict=True):
            jwt.decode(token, issuer_key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=issuer)
            jwt.decode(proof, public, algorithms=["ES256"], options={"verify_aud": False})
        return n / (time.perf_counter() - t0)

    async def charter_rate() -> float:
        fresh = proofs()
        t0 = time.perf_counter()
        for token, proof in zip(bound, fresh, strict=True):
            await tokens.verify_with_proof(
                home, token, proof, method="POST", url=url, audience=AUDIENCE
            )
        return n / (time.perf_counter() - t0)

    base, subj = await ainterleave(rounds, raw_rate, charter_rate)
    return row(
        "tokens: verify with a DPoP proof (token, proof, replay cache)",
        median(subj),
        median(base),
        "requests/s",
        INFO,
        f"{rounds} interleaved rounds of {n} ES256 proofs; Charter records each proof's jti "
        "in the storage replay cache (one committed write per request, shared by every server "
        "of a deployment); baseline = PyJWT decode of the token and of the proof, no cache",
        ratio=ratio_of_rounds(subj, base),
    )


def _p256_jwk(key: Any) -> dict[str, str]:
    from charter.evidence.jwk import b64url

    numbers = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }


async def _issue(home: Home, agent: identity.AgentContext) -> str:
    """Check, sign and record one token, as ``tokens.issue`` does (its own committed
    transaction)."""
    request = tokens.prepare(home, agent.name, agent.charter, audience=AUDIENCE)
    return (await tokens.issue(home, request)).token


def _print(rows: list[dict[str, Any]]) -> None:
    print(f"{'benchmark':44} {'charter':>12} {'baseline':>12} {'ratio':>7}  target   ok")
    for r in rows:
        print(
            f"{r['name']:44} {r['charter']:>12,.0f} {r['baseline']:>12,.0f} "
            f"{r['ratio']:>6.2f}x  {r['target']:8} {'yes' if r['passed'] else 'NO'}"
        )


if __name__ == "__main__":
    _print(run(quick="--quick" in sys.argv))
