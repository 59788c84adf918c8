"""Checking a token presented with a DPoP proof (RFC 9449 §7), replay included.

:func:`verify_with_proof` is what a resource server does for ``Authorization: DPoP <token>``
with a ``DPoP`` header: the token passes every check of :func:`~charter.tools.tokens.verify`,
the proof every check of :func:`~charter.tools.tokens.dpop.check_proof` (``htm`` and ``htu``
of this request, ``ath`` of this token, signed by the key of the token's ``cnf.jkt``), and the
proof's ``jti`` has never been accepted before: it is recorded in the home's replay cache
(``tx.dpop``), which every server of a deployment shares, until the proof would be too old
anyway. A token bound to a client key (``dpop_jkt``) is refused without a proof
(:func:`require_proof`).
"""

from __future__ import annotations

import datetime as dt

from charter.clock import rfc3339
from charter.home import Home
from charter.tools.tokens.dpop import (
    LEEWAY_S,
    MAX_AGE_S,
    DpopInvalid,
    NonceRequired,
    check_proof,
)
from charter.tools.tokens.nonce import DpopNonces
from charter.tools.tokens.verify import VerifiedToken, verify

#: How long a proof's ``jti`` is remembered after its ``iat``: as long as it could be accepted.
REPLAY_WINDOW_S = MAX_AGE_S + 2 * LEEWAY_S


class ProofMissing(DpopInvalid):
    """``Authorization: DPoP`` without exactly one ``DPoP`` proof header."""

    code = "dpop_missing"
    description = "DPoP proof missing"


class ProofReplayed(DpopInvalid):
    """The proof's ``jti`` was accepted before (by this server or another of the home)."""

    code = "dpop_replayed"
    description = "DPoP proof was already used"


class ProofRequired(DpopInvalid):
    """A DPoP-bound token was presented as a bearer token."""

    code = "dpop_required"
    description = "token is DPoP-bound: send it as `Authorization: DPoP` with a DPoP proof"
    error = "invalid_token"


def require_proof(verified: VerifiedToken) -> None:
    """Refuse ``verified`` when it is DPoP-bound: it came without a proof.

    Raises:
        ProofRequired: the token is bound to a client key.
    """
    if verified.dpop_jkt is not None:
        exc = ProofRequired("a DPoP-bound token is not accepted as a bearer token")
        exc.jti = verified.jti
        raise exc


async def verify_with_proof(
    home: Home,
    token: str,
    proof: str | None,
    *,
    method: str,
    url: str,
    audience: str | None,
    issuer_url: str | None = None,
    nonces: DpopNonces | None = None,
) -> VerifiedToken:
    """Check ``token`` presented with DPoP ``proof`` on a ``method`` request to ``url``, and
    record the proof as used.

    Any Charter token may be presented this way (its ``cnf.jkt`` names the key: the client's
    for a DPoP-bound token, the agent's own otherwise). With ``nonces`` the proof must also
    carry a nonce they accept (RFC 9449 §8), else ``NonceRequired`` (``use_dpop_nonce``);
    a refused proof is not recorded as used.

    Raises:
        TokenInvalid: the token's reason (:mod:`charter.tools.tokens.errors`), or the proof's
            (a :class:`~charter.tools.tokens.dpop.DpopInvalid`, ``ProofReplayed`` included).
    """
    verified = await verify(home, token, audience=audience, issuer_url=issuer_url)
    if not proof:
        raise _tagged(ProofMissing("send exactly one `DPoP` header with the request"), verified)
    now = home.clock.now()
    try:
        checked = check_proof(
            proof,
            method=method,
            url=url,
            now=now,
            access_token=token,
            expected_jkt=str(verified.claims["cnf"]["jkt"]),
        )
    except DpopInvalid as exc:
        raise _tagged(exc, verified) from None
    if nonces is not None and not nonces.accepts(checked.nonce):
        missing = "carry the nonce" if checked.nonce is None else "carry a current nonce"
        raise _tagged(NonceRequired(f"the proof must {missing} (see DPoP-Nonce)"), verified)
    until = rfc3339(checked.iat + dt.timedelta(seconds=REPLAY_WINDOW_S))
    first = await home.write(
        lambda tx: tx.dpop.remember(checked.jkt, checked.jti, expires_at=until, now=rfc3339(now))
    )
    if not first:
        raise _tagged(ProofReplayed("this proof's jti was already accepted"), verified)
    return verified


def _tagged(exc: DpopInvalid, verified: VerifiedToken) -> DpopInvalid:
    exc.jti = verified.jti
    return exc
