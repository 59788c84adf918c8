"""Token storage: issued tokens (``tokens``), the issuer keys (``issuer_keys``) and the
issuer setting (``meta``).

A token's row holds facts about it, never the token. Times are RFC 3339 strings (UTC), which
compare in time order as text; public keys are raw 32-byte Ed25519 keys (stored base64url).
"""

from __future__ import annotations

from dataclasses import dataclass

from charter.evidence.jwk import b64url, b64url_decode
from charter.storage.db import Connection


@dataclass(frozen=True, slots=True)
class NewToken:
    """The row of a freshly signed token."""

    jti: str
    kid: str
    agent_name: str
    agent_id: str
    charter: str
    audience: str
    scope: str  # space-separated, as in the token's `scope` claim
    issued_at: str
    expires_at: str
    digest: str
    #: The RFC 7638 thumbprint of the client key a DPoP-bound token is bound to, else None.
    dpop_jkt: str | None = None


@dataclass(frozen=True, slots=True)
class StoredToken:
    """A token's row as revocation and listings show it."""

    jti: str
    kid: str
    agent_name: str
    agent_id: str
    audience: str
    scope: str
    issued_at: str
    expires_at: str
    revoked_at: str | None
    revoked_reason: str | None


@dataclass(frozen=True, slots=True)
class TokenState:
    """What a verifier checks a token against: its row and its agent's current state."""

    kid: str
    agent_name: str
    agent_id: str
    charter: str
    audience: str
    scope: str
    issued_at: str
    expires_at: str
    digest: str | None  # None for rows written before digests were stored
    revoked_at: str | None
    agent_status: str | None  # None when the agent no longer exists
    agent_charter: str | None
    dpop_jkt: str | None = None  # the client key of a DPoP-bound token (issue 20)


@dataclass(frozen=True, slots=True)
class IssuerKey:
    """A published issuer key."""

    kid: str
    public_key: bytes


class TokenRepo:
    """The ``tokens`` and ``issuer_keys`` tables and the home's issuer setting."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- tokens ------------------------------------------------------------------------------

    def insert(self, token: NewToken) -> None:
        """Store the row of an issued token."""
        self.conn.execute(
            "INSERT INTO tokens(jti, kid, agent_name, agent_id, charter, audience, scopes,"
            " issued_at, expires_at, digest, dpop_jkt) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                token.jti,
                token.kid,
                token.agent_name,
                token.agent_id,
                token.charter,
                token.audience,
                token.scope,
                token.issued_at,
                token.expires_at,
                token.digest,
                token.dpop_jkt,
            ),
        )

    def get(self, jti: str) -> StoredToken | None:
        """The row of token ``jti``, or None."""
        row = self.conn.execute(
            "SELECT jti, kid, agent_name, agent_id, audience, scopes, issued_at, expires_at,"
            " revoked_at, revoked_reason FROM tokens WHERE jti = ?",
            (jti,),
        ).fetchone()
        return None if row is None else StoredToken(*row)

    def get_with_agent(self, jti: str) -> TokenState | None:
        """The row of token ``jti`` with its agent's status and current charter, or None."""
        row = self.conn.execute(
            "SELECT t.kid, t.agent_name, t.agent_id, t.charter, t.audience, t.scopes,"
            " t.issued_at, t.expires_at, t.digest, t.revoked_at, a.status, a.charter_hash,"
            " t.dpop_jkt"
            " FROM tokens t LEFT JOIN agents a ON a.name = t.agent_name WHERE t.jti = ?",
            (jti,),
        ).fetchone()
        return None if row is None else TokenState(*row)

    def mark_revoked(self, jti: str, at: str, reason: str | None) -> bool:
        """Record that token ``jti`` was revoked at ``at``; False if there is no such token."""
        cursor = self.conn.execute(
            "UPDATE tokens SET revoked_at = ?, revoked_reason = ? WHERE jti = ?",
            (at, reason, jti),
        )
        return cursor.rowcount > 0

    def count_live_for_charter(self, charter_hash: str, now: str) -> int:
        """How many tokens issued under ``charter_hash`` are unrevoked and unexpired at ``now``
        (a charter hash names one agent's charter, so these are that agent's tokens)."""
        row = self.conn.execute(
            "SELECT COUNT(*) FROM tokens WHERE charter = ? AND revoked_at IS NULL"
            " AND expires_at > ?",
            (charter_hash, now),
        ).fetchone()
        return int(row[0])

    def last_expiry(self, kid: str, now: str) -> str | None:
        """The latest expiry of a token signed by ``kid`` that is still unexpired at ``now``."""
        row = self.conn.execute(
            "SELECT max(expires_at) FROM tokens WHERE kid = ? AND expires_at > ?", (kid, now)
        ).fetchone()
        return None if row[0] is None else str(row[0])

    # -- issuer keys -------------------------------------------------------------------------

    def has_issuer_keys(self) -> bool:
        """True once any issuer key is registered."""
        return self.conn.execute("SELECT 1 FROM issuer_keys LIMIT 1").fetchone() is not None

    def insert_issuer_key(self, kid: str, public_key: bytes, created_at: str) -> None:
        """Register a new issuer key (the signing key unless retired)."""
        self.conn.execute(
            "INSERT INTO issuer_keys(kid, public_key, created_at) VALUES (?,?,?)",
            (kid, b64url(public_key), created_at),
        )

    def insert_issuer_key_if_absent(self, kid: str, public_key: bytes, created_at: str) -> bool:
        """Register an issuer key unless it (or its public key) is there; True if added."""
        cursor = self.conn.execute(
            "INSERT OR IGNORE INTO issuer_keys(kid, public_key, created_at) VALUES (?,?,?)",
            (kid, b64url(public_key), created_at),
        )
        return cursor.rowcount > 0

    def current_kid(self) -> str | None:
        """The signing key's id: the one issuer key not retired (None if there is none)."""
        row = self.conn.execute("SELECT kid FROM issuer_keys WHERE retired_at IS NULL").fetchone()
        return None if row is None else str(row[0])

    def retire_issuer_key(self, kid: str, at: str) -> None:
        """Mark issuer key ``kid`` retired at ``at`` (it stays published while it has tokens)."""
        self.conn.execute("UPDATE issuer_keys SET retired_at = ? WHERE kid = ?", (at, kid))

    def issuer_key_exists(self, kid: str) -> bool:
        """True if ``kid`` was ever an issuer key of this home (published or not)."""
        row = self.conn.execute("SELECT 1 FROM issuer_keys WHERE kid = ?", (kid,)).fetchone()
        return row is not None

    def published_keys(self, now: str) -> list[IssuerKey]:
        """Every published issuer key at ``now``: the signing key, and each retired key that
        still has an unexpired token; the signing key first, then newest first."""
        rows = self.conn.execute(
            "SELECT kid, public_key FROM issuer_keys k WHERE k.retired_at IS NULL OR EXISTS"
            " (SELECT 1 FROM tokens t WHERE t.kid = k.kid AND t.expires_at > ?)"
            " ORDER BY retired_at IS NOT NULL, created_at DESC",
            (now,),
        ).fetchall()
        return [IssuerKey(kid, b64url_decode(pk)) for kid, pk in rows]

    def published_key(self, kid: str, now: str) -> bytes | None:
        """The public key of ``kid`` if it is published at ``now`` (see :meth:`published_keys`)."""
        row = self.conn.execute(
            "SELECT public_key FROM issuer_keys k WHERE k.kid = ? AND (k.retired_at IS NULL"
            " OR EXISTS (SELECT 1 FROM tokens t WHERE t.kid = k.kid AND t.expires_at > ?))",
            (kid, now),
        ).fetchone()
        return None if row is None else b64url_decode(row[0])

    # -- the issuer setting ------------------------------------------------------------------

    def get_issuer(self) -> str | None:
        """The issuer identifier recorded in the home, or None."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'issuer'").fetchone()
        return None if row is None else str(row[0])

    def set_issuer(self, url: str) -> None:
        """Record the issuer identifier (replacing any)."""
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('issuer', ?)", (url,))

    def set_signing_kid(self, kid: str) -> None:
        """Record ``kid`` as the home's issuer key id (``meta.issuer_kid``)."""
        self.conn.execute("UPDATE meta SET value = ? WHERE key = 'issuer_kid'", (kid,))
