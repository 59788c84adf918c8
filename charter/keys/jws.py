"""Compact JWS (RFC 7515) signed with Ed25519 by a key handle."""

from __future__ import annotations

from typing import Any

from charter.evidence.canonical import canonical_json
from charter.evidence.jwk import Ed25519Signer, b64url


def compact_jws(payload: dict[str, Any], key: Ed25519Signer, typ: str) -> str:
    """``payload`` as a compact JWS signed with Ed25519 (``alg: EdDSA``), header
    ``{alg, kid, typ}``; header and payload serialized as canonical JSON."""
    header = {"alg": "EdDSA", "kid": key.kid, "typ": typ}
    signing_input = f"{b64url(canonical_json(header))}.{b64url(canonical_json(payload))}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode('ascii')))}"
