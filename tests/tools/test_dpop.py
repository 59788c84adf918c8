"""DPoP proofs (RFC 9449 §4.3): every check refuses a proof that breaks it, and only that.

Each refusal test starts from a valid proof and changes one thing, re-signing it with the
proof's real key (so the signature stays valid unless the signature is what is broken), and
expects the typed reason of the check it breaks: with that check removed, the proof would be
accepted or refused for another reason, and the test fails. Proofs made by independent JOSE
libraries (joserfc, PyJWT, and panva's ``jose`` under Node) are accepted; ours verify with
joserfc.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jws as jose_jws
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey, OKPKey

from charter.errors import TokenInvalid
from charter.evidence.jwk import thumbprint
from charter.keys import KeyPair
from charter.tools.tokens import dpop

NOW = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
URL = "https://charter.example.com/mcp"
TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJl"
JTI = "jti-7f3a9c-unique"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: Any) -> str:
    return b64(json.dumps(value).encode("utf-8"))


# -- an independent minimal signer, so each test controls every header and claim -----------


@pytest.fixture(scope="module")
def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ed() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def ec_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64(numbers.x.to_bytes(32, "big")),
        "y": b64(numbers.y.to_bytes(32, "big")),
    }


def ed_jwk(key: ed25519.Ed25519PrivateKey) -> dict[str, str]:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}


def es256(key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def good_parts(key: ec.EllipticCurvePrivateKey) -> tuple[dict[str, Any], dict[str, Any]]:
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": ec_jwk(key)}
    claims = {
        "jti": JTI,
        "htm": "POST",
        "htu": URL,
        "iat": int(NOW.timestamp()),
        "ath": b64(hashlib.sha256(TOKEN.encode("ascii")).digest()),
    }
    return header, claims


def signed(
    key: ec.EllipticCurvePrivateKey,
    header: dict[str, Any],
    claims: dict[str, Any],
    sign: Callable[[bytes], bytes] | None = None,
) -> str:
    signing_input = f"{b64json(header)}.{b64json(claims)}"
    signature = (sign or (lambda m: es256(key, m)))(signing_input.encode("ascii"))
    return f"{signing_input}.{b64(signature)}"


def check(proof: str, **kwargs: Any) -> dpop.DpopProof:
    args: dict[str, Any] = {"method": "POST", "url": URL, "now": NOW, "access_token": TOKEN}
    return dpop.check_proof(proof, **{**args, **kwargs})


# -- accepted --------------------------------------------------------------------------------


def test_a_valid_es256_proof_is_accepted_and_described(p256: ec.EllipticCurvePrivateKey) -> None:
    header, claims = good_parts(p256)
    proof = check(signed(p256, header, claims))
    assert proof == dpop.DpopProof(
        jkt=ECKey.import_key(p256.public_key()).thumbprint(),  # computed by joserfc
        jti=JTI,
        iat=NOW.replace(microsecond=0),
        htm="POST",
        htu=URL,
    )


def test_make_proof_es256_and_ed25519_are_accepted(
    p256: ec.EllipticCurvePrivateKey, ed: ed25519.Ed25519PrivateKey
) -> None:
    for key, jwk in ((p256, ec_jwk(p256)), (ed, ed_jwk(ed))):
        made = dpop.make_proof(key, method="POST", url=URL, access_token=TOKEN, now=NOW)
        result = check(made, expected_jkt=dpop.jwk_thumbprint(jwk))
        assert result.htu == URL
        assert result.htm == "POST"


def test_make_proof_with_a_charter_key_is_bound_to_its_key_id() -> None:
    """The agent's own key (any Charter signer, e.g. a key handle) signs proofs whose
    thumbprint is its kid: a token bound to the agent's key is checked the same way."""
    agent = KeyPair.generate()
    made = dpop.make_proof(agent, method="GET", url=URL, now=NOW, nonce="n-1")
    assert check(made, method="GET", access_token=None, nonce="n-1").jkt == agent.kid


def test_make_proof_leaves_out_query_and_fragment_and_draws_a_fresh_jti(
    p256: ec.EllipticCurvePrivateKey,
) -> None:
    a = dpop.make_proof(p256, method="GET", url=URL + "?x=1#f", now=NOW)
    b = dpop.make_proof(p256, method="GET", url=URL, now=NOW)
    claims = json.loads(base64.urlsafe_b64decode(a.split(".")[1] + "=="))
    assert claims["htu"] == URL
    assert "ath" not in claims
    assert "nonce" not in claims
    assert (
        check(a, method="GET", access_token=None).jti
        != check(b, method="GET", access_token=None).jti
    )


def test_replay_is_left_to_the_caller_who_gets_the_jti(p256: ec.EllipticCurvePrivateKey) -> None:
    made = dpop.make_proof(p256, method="POST", url=URL, access_token=TOKEN, now=NOW, jti=JTI)
    assert check(made).jti == check(made).jti == JTI


@pytest.mark.parametrize(
    ("request_url", "htu"),
    [
        (URL, URL + "?q=1#frag"),  # query and fragment ignored
        (URL + "?session=abc", URL),
        (URL, "HTTPS://Charter.Example.COM/mcp"),  # scheme and host case
        ("https://CHARTER.example.com/mcp", URL),
        (URL, "https://charter.example.com:443/mcp"),  # default port
        ("http://charter.example.com:80/mcp", "http://charter.example.com/mcp"),
        ("https://charter.example.com", "https://charter.example.com/"),  # empty path
        (URL, "https://charter.example.com/a/../mcp"),  # dot segments
        (URL, "https://charter.example.com/%6Dcp"),  # percent-encoded unreserved
        ("https://h.example/a%2fb", "https://h.example/a%2Fb"),  # percent-encoding case
        ("http://[::1]:8080/mcp", "http://[::1]:8080/mcp"),
    ],
)
def test_htu_is_compared_normalised(
    p256: ec.EllipticCurvePrivateKey, request_url: str, htu: str
) -> None:
    header, claims = good_parts(p256)
    claims["htu"] = htu
    assert check(signed(p256, header, claims), url=request_url).htu == htu


def test_iat_at_the_edges_of_the_window_is_accepted(p256: ec.EllipticCurvePrivateKey) -> None:
    header, claims = good_parts(p256)
    now = int(NOW.timestamp())
    for iat in (now - dpop.MAX_AGE_S - dpop.LEEWAY_S, now + dpop.LEEWAY_S):
        claims["iat"] = iat
        assert check(signed(p256, header, claims)).iat.timestamp() == iat


# -- refused: one mutation of a valid proof each ----------------------------------------------

Mutation = Callable[[dict[str, Any], dict[str, Any]], None]
NOW_S = int(NOW.timestamp())
OLDEST = NOW_S - dpop.MAX_AGE_S - dpop.LEEWAY_S
OTHER_ATH = b64(hashlib.sha256(b"another token").digest())


def _set(where: str, name: str, value: Any) -> Mutation:
    def mutate(header: dict[str, Any], claims: dict[str, Any]) -> None:
        (header if where == "header" else claims)[name] = value

    return mutate


def _drop(where: str, name: str) -> Mutation:
    def mutate(header: dict[str, Any], claims: dict[str, Any]) -> None:
        del (header if where == "header" else claims)[name]

    return mutate


def _private_jwk(header: dict[str, Any], claims: dict[str, Any]) -> None:
    header["jwk"] = {**header["jwk"], "d": b64(b"\x01" * 32)}


def _okp_jwk_for_es256(header: dict[str, Any], claims: dict[str, Any]) -> None:
    header["jwk"] = ed_jwk(ed25519.Ed25519PrivateKey.generate())


def _point_off_the_curve(header: dict[str, Any], claims: dict[str, Any]) -> None:
    header["jwk"] = {**header["jwk"], "y": b64(b"\x01" * 32)}


MUTATIONS: dict[str, tuple[Mutation, type[dpop.DpopInvalid]]] = {
    "typ JWT": (_set("header", "typ", "JWT"), dpop.WrongProofType),
    "typ at+jwt": (_set("header", "typ", "at+jwt"), dpop.WrongProofType),
    "no typ": (_drop("header", "typ"), dpop.WrongProofType),
    "alg none": (_set("header", "alg", "none"), dpop.AlgorithmRefused),
    "alg ES384": (_set("header", "alg", "ES384"), dpop.AlgorithmRefused),
    "alg RS256": (_set("header", "alg", "RS256"), dpop.AlgorithmRefused),
    "no alg": (_drop("header", "alg"), dpop.AlgorithmRefused),
    "crit header": (_set("header", "crit", ["exp"]), dpop.ProofMalformed),
    "no jwk": (_drop("header", "jwk"), dpop.BadProofKey),
    "private jwk (d)": (_private_jwk, dpop.BadProofKey),
    "OKP jwk for ES256": (_okp_jwk_for_es256, dpop.BadProofKey),
    "point off the curve": (_point_off_the_curve, dpop.BadProofKey),
    "other method": (_set("claims", "htm", "GET"), dpop.WrongMethod),
    "method case": (_set("claims", "htm", "post"), dpop.WrongMethod),
    "other path": (_set("claims", "htu", URL + "/x"), dpop.WrongUrl),
    "other host": (_set("claims", "htu", "https://evil.example.com/mcp"), dpop.WrongUrl),
    "other scheme": (_set("claims", "htu", "http://charter.example.com/mcp"), dpop.WrongUrl),
    "other port": (_set("claims", "htu", "https://charter.example.com:8443/mcp"), dpop.WrongUrl),
    "path case": (_set("claims", "htu", "https://charter.example.com/MCP"), dpop.WrongUrl),
    "htu not a URL": (_set("claims", "htu", "mcp"), dpop.WrongUrl),
    "old iat": (
        _set("claims", "iat", NOW_S - dpop.MAX_AGE_S - dpop.LEEWAY_S - 1),
        dpop.ProofTooOld,
    ),
    "future iat": (_set("claims", "iat", NOW_S + dpop.LEEWAY_S + 1), dpop.ProofFromFuture),
    "far future iat": (_set("claims", "iat", 10**20), dpop.ProofFromFuture),
    "no jti": (_drop("claims", "jti"), dpop.ProofMalformed),
    "empty jti": (_set("claims", "jti", ""), dpop.ProofMalformed),
    "numeric jti": (_set("claims", "jti", 7), dpop.ProofMalformed),
    "huge jti": (_set("claims", "jti", "j" * 257), dpop.ProofMalformed),
    "no htm": (_drop("claims", "htm"), dpop.ProofMalformed),
    "no htu": (_drop("claims", "htu"), dpop.ProofMalformed),
    "no iat": (_drop("claims", "iat"), dpop.ProofMalformed),
    "iat a string": (_set("claims", "iat", str(NOW_S)), dpop.ProofMalformed),
    "iat true": (_set("claims", "iat", True), dpop.ProofMalformed),
    "wrong ath": (
        _set("claims", "ath", b64(hashlib.sha256(b"other").digest())),
        dpop.WrongTokenHash,
    ),
    "no ath": (_drop("claims", "ath"), dpop.WrongTokenHash),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_each_check_refuses_its_mutation(p256: ec.EllipticCurvePrivateKey, name: str) -> None:
    mutate, reason = MUTATIONS[name]
    header, claims = good_parts(p256)
    check(signed(p256, header, claims))  # valid before the mutation
    mutate(header, claims)
    proof = signed(p256, header, claims)
    with pytest.raises(reason) as caught:
        check(proof)
    assert type(caught.value) is reason
    assert caught.value.error == "invalid_dpop_proof"
    _assert_safe(str(caught.value), proof, claims)


def _assert_safe(message: str, proof: str, claims: dict[str, Any]) -> None:
    """A refusal's message is one line and holds neither the proof, the token nor a value
    taken from the proof."""
    assert message.startswith(("malformed DPoP", "DPoP proof", "invalid DPoP"))
    assert "\n" not in message
    for part in proof.split("."):
        assert part not in message
    assert TOKEN not in message
    assert JTI not in message
    assert str(claims.get("htu", URL)) not in message


def test_hs256_with_the_public_key_as_secret_is_refused(p256: ec.EllipticCurvePrivateKey) -> None:
    """The classic algorithm confusion: an HMAC keyed with the (public) jwk."""
    header, claims = good_parts(p256)
    header["alg"] = "HS256"
    pem = p256.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (pem, json.dumps(header["jwk"]).encode()):
        forged = signed(p256, header, claims, lambda m: hmac.digest(secret, m, "sha256"))  # noqa: B023
        with pytest.raises(dpop.AlgorithmRefused):
            check(forged)


def test_an_unsecured_proof_is_refused(p256: ec.EllipticCurvePrivateKey) -> None:
    header, claims = good_parts(p256)
    header["alg"] = "none"
    with pytest.raises(dpop.ProofMalformed):
        check(f"{b64json(header)}.{b64json(claims)}.")


def padded(signature: bytes) -> bytes:
    return signature[:32] + b"\0" + signature[32:]


def test_a_bad_signature_is_refused(p256: ec.EllipticCurvePrivateKey) -> None:
    header, claims = good_parts(p256)
    other = ec.generate_private_key(ec.SECP256R1())
    cases = {
        "signed by another key": signed(other, header, claims),
        "wrong length": signed(p256, header, claims, lambda m: es256(p256, m)[:63]),
        # r || 0x00 || s: the same integers, but not the 64 octets RFC 7518 §3.4 requires
        "padded": signed(p256, header, claims, lambda m: padded(es256(p256, m))),
        "zero": signed(p256, header, claims, lambda m: bytes(64)),
    }
    good = signed(p256, header, claims)
    claims["htm"] = "GET"  # a claim changed after signing
    cases["tampered payload"] = f"{good.split('.')[0]}.{b64json(claims)}.{good.split('.')[2]}"
    for name, proof in cases.items():
        with pytest.raises(dpop.ProofBadSignature):
            check(proof, method="GET" if name == "tampered payload" else "POST")


def test_a_bad_ed25519_signature_is_refused(ed: ed25519.Ed25519PrivateKey) -> None:
    made = dpop.make_proof(ed, method="POST", url=URL, now=NOW)
    head, body, sig = made.split(".")
    flipped = bytearray(base64.urlsafe_b64decode(sig + "=="))
    flipped[0] ^= 1
    with pytest.raises(dpop.ProofBadSignature):
        check(f"{head}.{body}.{b64(bytes(flipped))}", access_token=None)
    okp_header = json.loads(base64.urlsafe_b64decode(head + "=="))
    okp_header["jwk"]["crv"] = "X25519"  # not a signing key
    with pytest.raises(dpop.BadProofKey):
        check(f"{b64json(okp_header)}.{body}.{sig}", access_token=None)


DUPLICATE_HEADER = b64(b'{"typ":1,"typ":2}') + "." + b64(b"{}") + "." + b64(b"x")


@pytest.mark.parametrize(
    "proof",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "a.b.c.d.e",  # a JWE
        "!!.??.**",
        f"{b64(b'[1]')}.{b64(b'{}')}.{b64(b'x')}",  # header not an object
        DUPLICATE_HEADER,  # duplicate keys
        f"{b64(b'{}')}.{b64(b'not json')}.{b64(b'x')}",
        f"{b64(b'{}')}.{b64(b'{}')}.{b64(b'x')}" + "A" * dpop.MAX_PROOF_CHARS,
    ],
)
def test_not_one_compact_jwt_is_malformed(proof: str) -> None:
    with pytest.raises(dpop.ProofMalformed):
        check(proof)


def test_a_duplicate_claim_is_malformed(p256: ec.EllipticCurvePrivateKey) -> None:
    """A verifier that reads the last ``htm`` would see another request than one that reads
    the first."""
    header, _ = good_parts(p256)
    body = b64(
        (
            json.dumps({"jti": JTI, "htm": "GET", "htu": URL, "iat": NOW_S})[:-1] + ',"htm":"POST"}'
        ).encode()
    )
    signing_input = f"{b64json(header)}.{body}"
    proof = f"{signing_input}.{b64(es256(p256, signing_input.encode()))}"
    with pytest.raises(dpop.ProofMalformed):
        check(proof, access_token=None)


def test_the_token_binding_is_checked(p256: ec.EllipticCurvePrivateKey) -> None:
    header, claims = good_parts(p256)
    proof = signed(p256, header, claims)
    own = dpop.jwk_thumbprint(ec_jwk(p256))
    assert check(proof, expected_jkt=own).jkt == own
    other = dpop.jwk_thumbprint(ec_jwk(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(dpop.KeyMismatch):
        check(proof, expected_jkt=other)


def test_the_server_nonce_is_checked(p256: ec.EllipticCurvePrivateKey) -> None:
    header, claims = good_parts(p256)
    with pytest.raises(dpop.NonceRequired) as caught:
        check(signed(p256, header, claims), nonce="server-nonce-1")
    assert caught.value.error == "use_dpop_nonce"
    claims["nonce"] = "server-nonce-0"
    with pytest.raises(dpop.NonceRequired):
        check(signed(p256, header, claims), nonce="server-nonce-1")
    claims["nonce"] = "server-nonce-1"
    assert check(signed(p256, header, claims), nonce="server-nonce-1").jti == JTI
    assert check(signed(p256, header, claims)).jti == JTI  # a nonce nobody asked for is fine


def test_a_proof_without_a_token_needs_no_ath(p256: ec.EllipticCurvePrivateKey) -> None:
    """At a token endpoint no token is presented yet: ``ath`` is only checked with one."""
    header, claims = good_parts(p256)
    del claims["ath"]
    assert check(signed(p256, header, claims), access_token=None).jti == JTI


def test_refusals_are_token_refusals_with_a_safe_message() -> None:
    """A transport that maps :class:`TokenInvalid` to a 401 handles these too."""
    with pytest.raises(TokenInvalid) as caught:
        check("a.b")
    assert isinstance(caught.value, dpop.DpopInvalid)
    assert caught.value.public_message == str(caught.value)
    assert caught.value.code == "dpop_malformed"


def test_caller_mistakes_are_value_errors(p256: ec.EllipticCurvePrivateKey) -> None:
    header, claims = good_parts(p256)
    proof = signed(p256, header, claims)
    with pytest.raises(ValueError, match="timezone"):
        check(proof, now=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="absolute"):
        check(proof, url="/mcp")


# -- RFC 7638 thumbprints ----------------------------------------------------------------------

RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJE"
    "CPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Q"
    "vzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6"
    "WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)


def test_thumbprint_of_the_rfc_7638_example() -> None:
    """RFC 7638 §3.1 (an RSA key, with members the thumbprint leaves out)."""
    jwk = {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
    assert dpop.jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_thumbprint_of_the_rfc_8037_example() -> None:
    """RFC 8037 Appendix A.3 (Ed25519)."""
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert dpop.jwk_thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_thumbprints_agree_with_joserfc_and_charter_key_ids() -> None:
    for _ in range(5):
        ec_key = ECKey.generate_key("P-256")
        public = {**ec_key.as_dict(private=False), "use": "sig", "kid": "x", "alg": "ES256"}
        assert dpop.jwk_thumbprint(public) == ec_key.thumbprint()
        okp = OKPKey.generate_key("Ed25519")
        assert dpop.jwk_thumbprint(okp.as_dict(private=False)) == okp.thumbprint()
        agent = KeyPair.generate()
        assert dpop.jwk_thumbprint(agent.jwk()) == thumbprint(agent.public_key) == agent.kid


@pytest.mark.parametrize(
    "jwk",
    [{"kty": "oct", "k": "c2VjcmV0"}, {"kty": "EC", "crv": "P-256", "x": "AA"}, {"crv": "x"}],
)
def test_thumbprint_refuses_unknown_or_incomplete_keys(jwk: dict[str, str]) -> None:
    with pytest.raises(dpop.BadProofKey):
        dpop.jwk_thumbprint(jwk)


# -- interop with independent libraries ------------------------------------------------------


def test_a_joserfc_proof_is_accepted() -> None:
    claims = {"jti": "j-joserfc", "htm": "GET", "htu": URL, "iat": NOW_S}
    ec_key = ECKey.generate_key("P-256")
    okp = OKPKey.generate_key("Ed25519")
    for key, alg in ((ec_key, "ES256"), (okp, "Ed25519"), (okp, "EdDSA")):
        header = {"typ": "dpop+jwt", "alg": alg, "jwk": key.as_dict(private=False)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joserfc flags "EdDSA" as superseded by RFC 9864
            proof = jose_jwt.encode(
                header, {**claims, "ath": dpop.access_token_hash(TOKEN)}, key, algorithms=[alg]
            )
        result = check(proof, method="GET", expected_jkt=key.thumbprint())
        assert result.jkt == key.thumbprint()


def test_a_pyjwt_proof_is_accepted(p256: ec.EllipticCurvePrivateKey) -> None:
    claims = {"jti": "j-pyjwt", "htm": "POST", "htu": URL, "iat": NOW_S}
    proof = pyjwt.encode(
        claims, p256, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": ec_jwk(p256)}
    )
    assert check(proof, access_token=None).jti == "j-pyjwt"


def test_our_proofs_verify_with_joserfc(
    p256: ec.EllipticCurvePrivateKey, ed: ed25519.Ed25519PrivateKey
) -> None:
    cases: list[tuple[ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey, ECKey | OKPKey]]
    cases = [
        (p256, ECKey.import_key(p256.public_key())),
        (ed, OKPKey.import_key(ed.public_key())),
    ]
    for key, public in cases:
        made = dpop.make_proof(key, method="POST", url=URL, access_token=TOKEN, now=NOW)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = jose_jws.deserialize_compact(made, public, algorithms=["ES256", "EdDSA"])
        assert obj.headers()["typ"] == "dpop+jwt"
        assert json.loads(obj.payload)["ath"] == b64(hashlib.sha256(TOKEN.encode()).digest())


# Proofs from Node: panva's `jose`, which .ci/install-inspector brings with the MCP Inspector.
NODE_MODULES = Path(__file__).resolve().parents[2] / ".ci" / "node" / "node_modules"
JOSE_SCRIPT = """
import { createRequire } from "node:module";
const require = createRequire(process.env.NODE_MODULES + "/");
const jose = await import(require.resolve("jose"));
const [htm, htu, iat, ath] = process.argv.slice(2);
const out = [];
for (const alg of ["ES256", "EdDSA"]) {
  const { publicKey, privateKey } = await jose.generateKeyPair(alg, { extractable: true });
  const jwk = await jose.exportJWK(publicKey);
  const proof = await new jose.SignJWT({ htm, htu, ath, jti: crypto.randomUUID() })
    .setProtectedHeader({ alg, typ: "dpop+jwt", jwk })
    .setIssuedAt(Number(iat))
    .sign(privateKey);
  out.push({ alg, proof, jkt: await jose.calculateJwkThumbprint(jwk, "sha256") });
}
console.log(JSON.stringify(out));
"""


def test_proofs_made_by_node_jose_are_accepted(tmp_path: Path) -> None:
    node = NODE_MODULES / ".bin" / "node"
    if not (node.exists() and (NODE_MODULES / "jose" / "package.json").exists()):
        why = "Node or the npm jose package missing under .ci/node"
        if os.environ.get("CI"):
            pytest.fail(f"{why}: .ci/install-inspector should have installed them")
        pytest.skip(f"{why}; run `bash .ci/install-inspector` to enable this test")
    script = tmp_path / "proofs.mjs"
    script.write_text(JOSE_SCRIPT)
    ath = b64(hashlib.sha256(TOKEN.encode("ascii")).digest())
    out = subprocess.run(
        [str(node), str(script), "POST", URL + "?q=1", str(NOW_S), ath],
        env={**os.environ, "NODE_MODULES": str(NODE_MODULES)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    made = json.loads(out)
    assert [m["alg"] for m in made] == ["ES256", "EdDSA"]
    for m in made:
        result = check(m["proof"], expected_jkt=m["jkt"])
        assert result.jkt == m["jkt"]
        with pytest.raises(dpop.WrongUrl):
            check(m["proof"], url=URL + "/other")
