"""Tokens as JWTs through PyJWT: made with an issuer :class:`~charter.keys.KeyHandle`, checked
with the issuer's public key, every PyJWT refusal turned into a typed reason.

PyJWT never receives a private key: tokens are signed by a :class:`jwt.PyJWS` of our own whose
``EdDSA`` algorithm signs through the key handle (the signer seam). Checking uses PyJWT's
standard ``EdDSA`` with an ``Ed25519PublicKey``, and pins the algorithm, the required claims,
the issuer and the audience; the time claims are checked by the caller against Charter's
clock (PyJWT reads the system clock and cannot be given another).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, cast

from charter.errors import TokenInvalid
from charter.evidence.jwk import b64url_decode
from charter.keys import KeyHandle
from charter.tools.tokens import errors as why

if TYPE_CHECKING:
    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ALGORITHM = "EdDSA"
TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret

# NOTE: PyJWT is imported on first use, not with this module: the server's tool families
# import the token services, and `charter serve` must start fast.


@functools.cache
def _signing() -> jwt.PyJWS:
    """A PyJWS of our own whose ``EdDSA`` signs through a key handle (and only signs)."""
    import jwt
    from jwt.algorithms import Algorithm

    class SignerEdDSA(Algorithm):
        def prepare_key(self, key: Any) -> KeyHandle:
            if not isinstance(key, KeyHandle):
                raise TypeError("tokens are signed with a KeyHandle, never a private key")
            return key

        def sign(self, msg: bytes, key: KeyHandle) -> bytes:
            return key.sign(msg)

        def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:
            raise NotImplementedError("tokens are verified with PyJWT's own EdDSA")

        @staticmethod
        def to_jwk(key_obj: Any, as_dict: bool = False) -> NoReturn:
            raise NotImplementedError("a key handle's public JWK is KeyHandle.jwk()")

        @staticmethod
        def from_jwk(jwk: Any) -> NoReturn:
            raise NotImplementedError("a signing key cannot come from a JWK")

    jws = jwt.PyJWS(algorithms=[])
    jws.register_algorithm(ALGORITHM, SignerEdDSA())
    return jws


def encode(claims: dict[str, Any], key: KeyHandle) -> str:
    """``claims`` as a compact JWT signed by ``key``, header ``{alg: EdDSA, kid, typ: at+jwt}``
    (keys sorted); the payload is compact JSON, as ``jwt.encode`` writes it."""
    payload = json.dumps(claims, separators=(",", ":")).encode("utf-8")
    headers = {"kid": key.kid, "typ": TOKEN_TYPE}
    return _signing().encode(payload, cast(Any, key), algorithm=ALGORITHM, headers=headers)


@functools.cache
def _checking() -> jwt.PyJWT:
    """PyJWT refusing a payload with duplicate keys (JSON a verifier may read two ways)."""
    import jwt

    class StrictJWT(jwt.PyJWT):
        def _decode_payload(self, decoded: dict[str, Any]) -> dict[str, Any]:
            return json_object(decoded["payload"], "payload")

    return StrictJWT()


def decode(
    token: str,
    public_key: bytes,
    *,
    required: Sequence[str],
    audience: str | None,
    issuer: str,
) -> dict[str, Any]:
    """The claims of ``token`` once PyJWT has checked the signature with ``public_key``, the
    algorithm (EdDSA only), that every ``required`` claim is there, ``iss`` (equal to
    ``issuer``), ``aud`` (one string equal to ``audience``; any with None), and that ``sub`` and
    ``jti`` are strings. Time claims are not checked here.

    Raises:
        TokenInvalid: the typed reason (with ``jti`` once the signature has verified).
    """
    import jwt

    try:
        return _checking().decode(
            token,
            _public_key(public_key),
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            options={
                "require": list(required),
                "verify_aud": audience is not None,
                "strict_aud": True,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise why.BadSignature("the signature does not verify") from None
    except jwt.InvalidAlgorithmError:
        raise why.Malformed(f"algorithm is not accepted (only {ALGORITHM})") from None
    except jwt.DecodeError as exc:
        raise why.Malformed(f"not a valid JWS: {exc}") from None
    except jwt.PyJWTError as exc:
        raise _claim_refusal(exc, token, required, audience, issuer) from None


def _claim_refusal(
    exc: Exception,
    token: str,
    required: Sequence[str],
    audience: str | None,
    issuer: str,
) -> TokenInvalid:
    """The typed reason for a claim PyJWT refused (the signature has verified)."""
    import jwt
    from jwt.exceptions import InvalidJTIError, InvalidSubjectError

    claims = json_object(b64url_decode(token.split(".")[1]), "payload")
    refusal: TokenInvalid
    if isinstance(exc, jwt.MissingRequiredClaimError):
        missing = [c for c in required if claims.get(c) is None]
        refusal = why.Malformed(f"missing claims: {', '.join(missing or [exc.claim])}")
    elif isinstance(exc, jwt.InvalidIssuerError):
        iss = claims.get("iss")
        refusal = (
            why.WrongIssuer(f"issuer {iss!r} is not this issuer ({issuer!r})")
            if isinstance(iss, str)
            else why.Malformed("claim 'iss' must be a string")
        )
    elif isinstance(exc, jwt.InvalidAudienceError):
        aud = claims.get("aud")
        refusal = (
            why.WrongAudience(f"audience {aud!r} is not {audience!r}")
            if isinstance(aud, str)
            else why.Malformed("claim 'aud' must be a single string")
        )
    elif isinstance(exc, InvalidSubjectError):
        refusal = why.Malformed("claim 'sub' must be a string")
    elif isinstance(exc, InvalidJTIError):
        refusal = why.Malformed("claim 'jti' must be a string")
    else:
        refusal = why.Malformed(f"refused by the JWT checks: {exc}")
    jti = claims.get("jti")
    refusal.jti = jti if isinstance(jti, str) else None
    return refusal


@functools.lru_cache(maxsize=64)
def _public_key(raw: bytes) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(raw)


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """``data`` as a JSON object without duplicate keys.

    Raises:
        Malformed: otherwise.
    """
    try:
        value = json.loads(data, object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise why.Malformed(f"the {what} is not base64url JSON without duplicate keys") from None
    if not isinstance(value, dict):
        raise why.Malformed(f"the {what} is not a JSON object")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out
