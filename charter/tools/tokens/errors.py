"""Why a token was refused: :class:`~charter.errors.TokenInvalid`, one subclass per reason.

Each reason has a stable ``code`` (logs, ``charter token verify --json``) and a
``description`` that names the reason and is safe to give any caller, e.g. as the RFC 6750
``error_description`` of a 401: it never holds the token, a claim value or a secret. The
exception's ``reason`` keeps the exact detail for the owner and the server log.
"""

from __future__ import annotations

from charter.errors import TokenInvalid


class MissingToken(TokenInvalid):
    """No bearer token came with the request."""

    code = "missing"
    description = "no bearer token"


class Malformed(TokenInvalid):
    """Not a Charter access token: bad encoding, algorithm, type, header or claims."""

    code = "malformed"
    description = "malformed token"


class UnknownKey(TokenInvalid):
    """Signed with a key id this issuer does not publish (foreign, or retired and done)."""

    code = "unknown_key"
    description = "token signed by an unknown key"


class BadSignature(TokenInvalid):
    """The signature does not verify with the key its ``kid`` names."""

    code = "bad_signature"
    description = "token signature does not verify"


class WrongIssuer(TokenInvalid):
    """``iss`` is not the issuer this server or home advertises."""

    code = "wrong_issuer"
    description = "token is from another issuer"


class WrongAudience(TokenInvalid):
    """``aud`` is not the audience being checked for."""

    code = "wrong_audience"
    description = "token is for another audience"


class TokenExpired(TokenInvalid):
    """``exp`` has passed."""

    code = "expired"
    description = "token expired"


class TokenNotYetValid(TokenInvalid):
    """``nbf`` or ``iat`` is in the future."""

    code = "not_yet_valid"
    description = "token not yet valid"


class NotIssued(TokenInvalid):
    """No issued token has this id, or the token differs from what was issued under it."""

    code = "not_issued"
    description = "token was not issued by this server"


class TokenRevoked(TokenInvalid):
    """The owner revoked this token (``charter token revoke``)."""

    code = "revoked"
    description = "token revoked"


class AgentRevokedToken(TokenInvalid):
    """The token's agent was revoked (or everything was locked down)."""

    code = "agent_revoked"
    description = "the token's agent has been revoked"


class CharterSuperseded(TokenInvalid):
    """The agent's charter was replaced after the token was issued under the old one."""

    code = "charter_superseded"
    description = "the token's charter has been superseded"
