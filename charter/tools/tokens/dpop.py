"""DPoP proofs (RFC 9449): checked for a server, made for a client. A pure module: no storage,
no clock of its own, no HTTP.

* :func:`check_proof` does every check of RFC 9449 §4.3 on one ``DPoP`` header value and
  returns a :class:`DpopProof`; each failure raises a :class:`DpopInvalid` subclass.
* :func:`make_proof` signs a proof with an ES256 (P-256) or Ed25519 key, including a Charter
  key handle (the agent's own key, through the signer seam).
* :func:`jwk_thumbprint` is the RFC 7638 thumbprint a DPoP-bound token carries as ``cnf.jkt``.

Replay is the caller's: a ``jti`` must be refused the second time it is seen within the
window a proof is accepted, ``max_age_s + 2 * leeway_s`` after its ``iat`` (a cache every
server of a deployment shares, with the ``jkt`` as part of the key if it likes).

Proofs are signed by the client, so the algorithm and the key come from the proof itself:
the algorithm is pinned by an allow-list (never ``none``, never HMAC) and must match the key
type of the ``jwk`` header, which must be a public key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import math
import re
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from charter.errors import TokenInvalid
from charter.evidence.jwk import (
    Ed25519Signer,
    b64url,
    b64url_decode,
    public_jwk,
    public_key_from_jwk,
    verify_signature,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import (
        EllipticCurvePrivateKey,
        EllipticCurvePublicKey,
    )
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PROOF_TYPE = "dpop+jwt"
#: Accepted ``alg`` values: ES256 (P-256), and Ed25519 both by its RFC 8037 name ``EdDSA``
#: and its RFC 9864 fully specified name ``Ed25519``. For ``dpop_signing_alg_values_supported``.
ALGORITHMS: tuple[str, ...] = ("ES256", "EdDSA", "Ed25519")
#: A proof older than this (seconds, from its ``iat``) is refused.
MAX_AGE_S = 60
#: Clock skew tolerated either way (seconds): a proof may be this far in the future.
LEEWAY_S = 5
#: Longer header values are refused unread (a proof is a few hundred bytes).
MAX_PROOF_CHARS = 8192
#: Longest ``jti`` accepted (the caller keeps them in a replay cache).
MAX_JTI_CHARS = 256

#: JWK members that belong to a private or symmetric key (RFC 7518 §6).
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
#: The members of each key type that an RFC 7638 thumbprint covers, in lexicographic order.
_THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
    "RSA": ("e", "kty", "n"),
}
_DEFAULT_PORTS = {"http": 80, "https": 443}


# -- why a proof was refused -----------------------------------------------------------------


class DpopInvalid(TokenInvalid):
    """A DPoP proof failed a check of RFC 9449 §4.3.

    ``code`` names the check; ``error`` is the RFC 9449 error code for the
    ``WWW-Authenticate: DPoP`` challenge of a 401; the message (``public_message`` and
    ``reason``) is safe to show the client: it never holds the proof, the access token or a
    value taken from the proof.
    """

    code = "dpop_invalid"
    description = "invalid DPoP proof"
    #: The RFC 9449 ``error`` of the 401 challenge.
    error = "invalid_dpop_proof"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.public_message = f"{self.description}: {reason}"
        self.args = (self.public_message,)


class ProofMalformed(DpopInvalid):
    """Not one compact JWS of JSON objects, or a required claim is missing or ill-typed."""

    code = "dpop_malformed"
    description = "malformed DPoP proof"


class WrongProofType(DpopInvalid):
    """The ``typ`` header is not ``dpop+jwt``."""

    code = "dpop_wrong_type"
    description = "DPoP proof has the wrong type"


class AlgorithmRefused(DpopInvalid):
    """The ``alg`` header is not in :data:`ALGORITHMS` (``none`` and HMAC never are)."""

    code = "dpop_algorithm"
    description = "DPoP proof algorithm not accepted"


class BadProofKey(DpopInvalid):
    """The ``jwk`` header is missing, holds a private key, or is no key of the ``alg``."""

    code = "dpop_bad_key"
    description = "DPoP proof key not accepted"


class ProofBadSignature(DpopInvalid):
    """The signature does not verify with the proof's own ``jwk``."""

    code = "dpop_bad_signature"
    description = "DPoP proof signature does not verify"


class WrongMethod(DpopInvalid):
    """``htm`` is not the request's method."""

    code = "dpop_wrong_method"
    description = "DPoP proof is for another HTTP method"


class WrongUrl(DpopInvalid):
    """``htu`` is not the request's URL (compared normalised, without query and fragment)."""

    code = "dpop_wrong_url"
    description = "DPoP proof is for another URL"


class ProofTooOld(DpopInvalid):
    """``iat`` is older than the accepted window."""

    code = "dpop_too_old"
    description = "DPoP proof is too old"


class ProofFromFuture(DpopInvalid):
    """``iat`` is further in the future than the clock skew allows."""

    code = "dpop_from_future"
    description = "DPoP proof is not yet valid"


class WrongTokenHash(DpopInvalid):
    """``ath`` is missing or is not the hash of the access token presented with the proof."""

    code = "dpop_wrong_ath"
    description = "DPoP proof is for another access token"


class KeyMismatch(DpopInvalid):
    """The proof's key is not the key the access token is bound to (``cnf.jkt``)."""

    code = "dpop_key_mismatch"
    description = "DPoP proof key is not the token's key"


class NonceRequired(DpopInvalid):
    """The server requires a nonce and the proof has none, or another one."""

    code = "dpop_nonce"
    description = "DPoP proof nonce missing or stale"
    error = "use_dpop_nonce"


# -- checking --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DpopProof:
    """A proof that passed every check: its key's thumbprint (``jkt``), its id (``jti``, for
    the caller's replay cache), its creation time, the method and URL it was made for, and
    its nonce (for a caller that checks nonces of its own, such as
    :class:`~charter.tools.tokens.nonce.DpopNonces`)."""

    jkt: str
    jti: str
    iat: dt.datetime
    htm: str
    htu: str
    #: The ``nonce`` claim, when the proof carries one (RFC 9449 §8).
    nonce: str | None = None


def check_proof(
    proof: str,
    *,
    method: str,
    url: str,
    now: dt.datetime,
    access_token: str | None = None,
    expected_jkt: str | None = None,
    nonce: str | None = None,
    max_age_s: float = MAX_AGE_S,
    leeway_s: float = LEEWAY_S,
) -> DpopProof:
    """Check ``proof`` (a ``DPoP`` header value) for a request of ``method`` to ``url``.

    ``access_token`` is the token presented with it (``ath`` must be its hash),
    ``expected_jkt`` the token's ``cnf.jkt`` (the proof's key must have that thumbprint),
    ``nonce`` the server nonce the client was given, when the server requires one. ``iat``
    must lie in ``[now - max_age_s - leeway_s, now + leeway_s]``. Replay is not checked here.

    Raises:
        DpopInvalid: the subclass naming the failed check.
        ValueError: ``now`` is naive or ``url`` is not an absolute http(s) URL (the caller's
            mistake, not the client's).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    request_url = normalize_htu(url)
    if request_url is None:
        raise ValueError("url must be an absolute http(s) URL")

    header, payload, signing_input, signature = _split(proof)
    if header.get("typ") != PROOF_TYPE:
        raise WrongProofType(f"the 'typ' header must be {PROOF_TYPE!r}")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise AlgorithmRefused(f"the 'alg' header must be one of {', '.join(ALGORITHMS)}")
    if "crit" in header:
        raise ProofMalformed("the 'crit' header names extensions this server does not support")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise BadProofKey("the 'jwk' header must be a JSON object")
    if _PRIVATE_MEMBERS & jwk.keys():
        raise BadProofKey("the 'jwk' header must hold a public key, not a private one")
    if not _verify(alg, jwk, signing_input, signature):
        raise ProofBadSignature("the signature does not verify with the proof's key")

    jti, htm, htu, iat = _claims(payload)
    if htm != method:
        raise WrongMethod("'htm' is not the request's method")
    if normalize_htu(htu) != request_url:
        raise WrongUrl("'htu' is not the request's URL")
    if nonce is not None:
        claimed = payload.get("nonce")
        if not isinstance(claimed, str) or not _equal(claimed, nonce):
            raise NonceRequired("the proof must carry the nonce this server gave")
    issued = _issued_at(iat, now, max_age_s, leeway_s)
    if access_token is not None:
        ath = payload.get("ath")
        if not isinstance(ath, str) or not _equal(ath, access_token_hash(access_token)):
            raise WrongTokenHash("'ath' is not the hash of the access token presented")
    jkt = jwk_thumbprint(jwk)
    if expected_jkt is not None and not _equal(jkt, expected_jkt):
        raise KeyMismatch("the proof is not signed by the key the token is bound to")
    claimed_nonce = payload.get("nonce")
    return DpopProof(
        jkt=jkt,
        jti=jti,
        iat=issued,
        htm=htm,
        htu=htu,
        nonce=claimed_nonce if isinstance(claimed_nonce, str) else None,
    )


def _split(proof: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """The header, payload, signing input and signature of a compact JWS."""
    if len(proof) > MAX_PROOF_CHARS:
        raise ProofMalformed("the proof must be one compact JWT of reasonable size")
    parts = proof.split(".")
    if len(parts) != 3 or not all(parts):
        raise ProofMalformed("the proof must be one compact JWT (three non-empty parts)")
    try:
        signature = b64url_decode(parts[2])
        header = _json_object(b64url_decode(parts[0]))
        payload = _json_object(b64url_decode(parts[1]))
    except ValueError:
        raise ProofMalformed(
            "the proof's parts must be base64url JSON objects without duplicate keys"
        ) from None
    return header, payload, f"{parts[0]}.{parts[1]}".encode("ascii"), signature


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ValueError("not JSON") from exc
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def _claims(payload: dict[str, Any]) -> tuple[str, str, str, int | float]:
    """``jti``, ``htm``, ``htu`` and ``iat``, each present and of its type."""
    jti = payload.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_CHARS:
        raise ProofMalformed(f"'jti' must be a string of 1 to {MAX_JTI_CHARS} characters")
    htm, htu = payload.get("htm"), payload.get("htu")
    if not isinstance(htm, str) or not htm:
        raise ProofMalformed("'htm' must be a non-empty string")
    if not isinstance(htu, str) or not htu:
        raise ProofMalformed("'htu' must be a non-empty string")
    iat = payload.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int | float) or not math.isfinite(iat):
        raise ProofMalformed("'iat' must be a number (seconds since the epoch)")
    return jti, htm, htu, iat


def _issued_at(
    iat: int | float, now: dt.datetime, max_age_s: float, leeway_s: float
) -> dt.datetime:
    age = now.timestamp() - iat
    if age > max_age_s + leeway_s:
        raise ProofTooOld(f"'iat' is more than {max_age_s:g} seconds old")
    if -age > leeway_s:
        raise ProofFromFuture("'iat' is in the future")
    return dt.datetime.fromtimestamp(iat, dt.UTC)


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _verify(alg: str, jwk: dict[str, Any], signing_input: bytes, signature: bytes) -> bool:
    """True when ``signature`` verifies with ``jwk`` under ``alg`` (whose key type it must
    be).

    Raises:
        BadProofKey: ``jwk`` is not a valid public key for ``alg``.
    """
    if alg == "ES256":
        key = _p256_public_key(jwk)
        if len(signature) != 64:
            return False
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        try:
            key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True
    # EdDSA / Ed25519 (the allow-list holds nothing else)
    try:
        raw = public_key_from_jwk(jwk)
    except ValueError:
        raise BadProofKey(f"the 'jwk' header must be an OKP Ed25519 key for {alg}") from None
    return verify_signature(raw, signing_input, signature)


def _p256_public_key(jwk: dict[str, Any]) -> EllipticCurvePublicKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    refusal = BadProofKey("the 'jwk' header must be an EC P-256 public key for ES256")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise refusal
    try:
        x, y = b64url_decode(str(jwk.get("x", ""))), b64url_decode(str(jwk.get("y", "")))
        if len(x) != 32 or len(y) != 32:
            raise ValueError("P-256 coordinates are 32 bytes")
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        )
        return numbers.public_key()  # refuses a point not on the curve
    except ValueError:
        raise refusal from None


def binding_thumbprint(jwk: object) -> str:
    """The ``cnf.jkt`` for a token bound to client key ``jwk``: its RFC 7638 thumbprint,
    once ``jwk`` is known to be a public key a proof can be signed with (EC P-256 for ES256
    or OKP Ed25519 for EdDSA), so that a token is never bound to a key no proof can match.

    Raises:
        BadProofKey: not a JSON object, a private or symmetric key, or no P-256 / Ed25519
            public key.
    """
    if not isinstance(jwk, dict):
        raise BadProofKey("the key must be a JWK (a JSON object)")
    if _PRIVATE_MEMBERS & jwk.keys():
        raise BadProofKey("the key must be a public JWK; it holds private key material")
    if jwk.get("kty") == "EC":
        _p256_public_key(jwk)
    else:
        try:
            public_key_from_jwk(jwk)
        except ValueError:
            raise BadProofKey(
                "the key must be an EC P-256 or OKP Ed25519 public JWK (ES256 or EdDSA)"
            ) from None
    return jwk_thumbprint(jwk)


def access_token_hash(access_token: str) -> str:
    """The ``ath`` of a proof presented with ``access_token``: base64url(SHA-256(ASCII))."""
    return b64url(hashlib.sha256(access_token.encode("utf-8")).digest())


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of ``jwk`` (EC, OKP or RSA): its required members only,
    in lexicographic order, as compact JSON, hashed and base64url-encoded.

    Raises:
        BadProofKey: an unsupported key type, or a required member missing or not a string.
    """
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise BadProofKey("the key type must be EC, OKP or RSA")
    values = {name: jwk.get(name) for name in members}
    if not all(isinstance(value, str) and value for value in values.values()):
        raise BadProofKey(f"the key must have the members {', '.join(members)}")
    canonical = json.dumps(values, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


# -- htu -------------------------------------------------------------------------------------

_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def normalize_htu(url: str) -> str | None:
    """``url`` without query and fragment, normalised as RFC 9449 §4.3 asks (RFC 3986 §6.2.2
    and §6.2.3): scheme and host in lower case, the scheme's default port dropped, an empty
    path as ``/``, percent-encodings in upper case and decoded where they name an unreserved
    character, dot segments removed. None when it is not an absolute http(s) URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or any(c.isspace() for c in url):
        return None
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    authority = f"{userinfo}@{host}" if "@" in parts.netloc else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        authority = f"{authority}:{port}"
    path = _remove_dot_segments(_PERCENT.sub(_normal_percent, parts.path)) or "/"
    return f"{scheme}://{authority}{path}"


def _normal_percent(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else f"%{match.group(1).upper()}"


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4."""
    out: list[str] = []
    while path:
        if path.startswith("../"):
            path = path[3:]
        elif path.startswith("./") or path.startswith("/./"):
            path = path[2:]
        elif path == "/.":
            path = "/"
        elif path.startswith("/../"):
            path = path[3:]
            if out:
                out.pop()
        elif path == "/..":
            path = "/"
            if out:
                out.pop()
        elif path in (".", ".."):
            path = ""
        else:
            cut = path.find("/", 1)
            segment, path = (path, "") if cut < 0 else (path[:cut], path[cut:])
            out.append(segment)
    return "".join(out)


# -- making ----------------------------------------------------------------------------------


def make_proof(
    private_key: Ed25519Signer | Ed25519PrivateKey | EllipticCurvePrivateKey,
    *,
    method: str,
    url: str,
    now: dt.datetime,
    access_token: str | None = None,
    nonce: str | None = None,
    jti: str | None = None,
) -> str:
    """A DPoP proof for a request of ``method`` to ``url`` (its query and fragment left out),
    made at ``now``, signed by ``private_key``: a P-256 key (ES256), an Ed25519 key (EdDSA), or
    any Charter signer such as a key handle (EdDSA, signed through the signer seam). With
    ``access_token`` it carries ``ath``; with ``nonce`` the server's nonce; ``jti`` is random
    unless given."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    alg: str
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("an EC key for DPoP must be on P-256 (ES256)")
        numbers = private_key.public_key().public_numbers()
        alg, jwk = (
            "ES256",
            {
                "crv": "P-256",
                "kty": "EC",
                "x": b64url(numbers.x.to_bytes(32, "big")),
                "y": b64url(numbers.y.to_bytes(32, "big")),
            },
        )
    elif isinstance(private_key, ed25519.Ed25519PrivateKey):
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        alg, jwk = "EdDSA", public_jwk(raw)
    else:
        alg, jwk = "EdDSA", public_jwk(private_key.public_key)

    parts = urlsplit(url)
    claims: dict[str, Any] = {
        "htm": method,
        "htu": parts._replace(query="", fragment="").geturl(),
        "iat": int(now.timestamp()),
        "jti": jti if jti is not None else b64url(secrets.token_bytes(18)),
    }
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    if nonce is not None:
        claims["nonce"] = nonce
    header = {"alg": alg, "jwk": jwk, "typ": PROOF_TYPE}
    signing_input = f"{_b64json(header)}.{_b64json(claims)}".encode("ascii")
    return f"{signing_input.decode('ascii')}.{b64url(_sign(private_key, signing_input))}"


def _b64json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def _sign(
    key: Ed25519Signer | Ed25519PrivateKey | EllipticCurvePrivateKey, message: bytes
) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return key.sign(message)
