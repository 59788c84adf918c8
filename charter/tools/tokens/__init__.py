"""Scoped agent tokens: EdDSA JWT access tokens (RFC 9068), their keys, checks and revocation.

* :mod:`~charter.tools.tokens.issue`: checking a request, signing, recording, revoking;
* :mod:`~charter.tools.tokens.verify`: every check, and RFC 7662 introspection;
* :mod:`~charter.tools.tokens.keys`: the issuer (``iss``) and its keys (rotation, JWKS);
* :mod:`~charter.tools.tokens.errors`: the typed reasons a token is refused;
* :mod:`~charter.tools.tokens.codec`: the JWT itself, through PyJWT and the signer seam;
* :mod:`~charter.tools.tokens.dpop`: DPoP proofs (RFC 9449), checked and made;
* :mod:`~charter.tools.tokens.proof`: a token with its DPoP proof, replay included;
* :mod:`~charter.tools.tokens.nonce`: stateless server nonces for DPoP proofs (RFC 9449 §8).

Callers use ``tokens.<name>`` for all of them.
"""

from charter.tools.tokens import dpop, errors, nonce
from charter.tools.tokens.codec import ALGORITHM, TOKEN_TYPE
from charter.tools.tokens.issue import (
    DEFAULT_TTL_SECONDS,
    IssuedToken,
    TokenRecord,
    TokenRequest,
    get_token,
    issue,
    issue_for_owner,
    issue_plan,
    prepare,
    record,
    revoke,
    sign,
)
from charter.tools.tokens.keys import (
    DEFAULT_ISSUER,
    MCP_PATH,
    RotationResult,
    ensure_issuer_keys,
    issuer,
    jwks,
    normalize_issuer,
    recorded_issuer,
    resource_url,
    rotate,
    set_issuer,
)
from charter.tools.tokens.proof import require_proof, verify_with_proof
from charter.tools.tokens.verify import (
    MAX_TTL_SECONDS,
    REQUIRED_CLAIMS,
    VerifiedToken,
    VerifiedTokens,
    claims_digest,
    introspect,
    verify,
)

__all__ = [
    "ALGORITHM",
    "DEFAULT_ISSUER",
    "DEFAULT_TTL_SECONDS",
    "MAX_TTL_SECONDS",
    "MCP_PATH",
    "REQUIRED_CLAIMS",
    "TOKEN_TYPE",
    "IssuedToken",
    "RotationResult",
    "TokenRecord",
    "TokenRequest",
    "VerifiedToken",
    "VerifiedTokens",
    "claims_digest",
    "dpop",
    "ensure_issuer_keys",
    "errors",
    "get_token",
    "introspect",
    "issue",
    "issue_for_owner",
    "issue_plan",
    "issuer",
    "jwks",
    "nonce",
    "normalize_issuer",
    "prepare",
    "record",
    "recorded_issuer",
    "require_proof",
    "resource_url",
    "revoke",
    "rotate",
    "set_issuer",
    "sign",
    "verify",
    "verify_with_proof",
]
