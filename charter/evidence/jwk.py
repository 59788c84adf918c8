"""Ed25519 public keys as RFC 8037 OKP JWKs, their RFC 7638 thumbprints (Charter's key ids),
base64url, and signature verification. Public-key operations only."""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Protocol

import nacl.exceptions
import nacl.signing


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding; raise ``ValueError`` on bad input."""
    if any(c in text for c in "+/= \n"):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("not base64url") from exc


def public_jwk(public_key: bytes) -> dict[str, str]:
    """The RFC 8037 OKP JWK of an Ed25519 public key."""
    return {"crv": "Ed25519", "kty": "OKP", "x": b64url(public_key)}


def thumbprint(public_key: bytes) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of an Ed25519 public key: Charter's key id."""
    members = f'{{"crv":"Ed25519","kty":"OKP","x":"{b64url(public_key)}"}}'
    return b64url(hashlib.sha256(members.encode("ascii")).digest())


def public_key_from_jwk(jwk: Any) -> bytes:
    """Return the raw public key from an OKP Ed25519 JWK, refusing anything else.

    Raises:
        ValueError: if the JWK is not an Ed25519 OKP key.
    """
    if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise ValueError("not an Ed25519 OKP JWK")
    raw = b64url_decode(str(jwk.get("x", "")))
    if len(raw) != 32:
        raise ValueError("Ed25519 public key must be 32 bytes")
    return raw


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``."""
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


class Ed25519Signer(Protocol):
    """A signing key as the evidence formats need it: its public key, key id and signatures.

    Implemented by :class:`charter.keys.KeyPair` and by the signer seam's key handles; the
    private key itself stays with them.
    """

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key."""
        ...

    @property
    def kid(self) -> str:
        """RFC 7638 thumbprint of the public key."""
        ...

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        ...
