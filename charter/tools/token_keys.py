"""The token issuer: its identifier (``iss``) and its signing keys (rotation, JWKS).

The issuer is an http(s) origin recorded in the home on purpose (``charter init --issuer``,
``charter token issuer set``, or once by the first ``charter serve --http``). The signing key
is the one ``issuer_keys`` row that is not retired; a retired key stays published (JWKS)
while a token it signed has not expired.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from charter.clock import rfc3339
from charter.errors import ConfigError, InvalidInput
from charter.evidence.jwk import b64url, b64url_decode, public_jwk
from charter.home import Home
from charter.keys import KeyHandle, issuer_ref
from charter.storage.db import transaction

ALGORITHM = "EdDSA"
#: The issuer when none has been recorded (``charter serve --http``'s default address).
DEFAULT_ISSUER = "http://127.0.0.1:8765"
MCP_PATH = "/mcp"


class RotationResult(BaseModel):
    """What ``charter keys rotate`` did."""

    kid: str = Field(description="The new signing key.")
    retired_kid: str
    retired_published_until: str = Field(
        description="The retired key leaves the JWKS after this (its last token's expiry)."
    )


# -- issuer and audience ---------------------------------------------------------------------


def issuer(home: Home) -> str:
    """The home's issuer identifier (``iss``): the recorded one, else :data:`DEFAULT_ISSUER`."""
    return recorded_issuer(home) or DEFAULT_ISSUER


def recorded_issuer(home: Home) -> str | None:
    """The issuer recorded in the home, or None if none has been set yet."""
    row = home.conn.execute("SELECT value FROM meta WHERE key = 'issuer'").fetchone()
    return str(row[0]) if row else None


def normalize_issuer(url: str) -> str:
    """Return ``url`` as an issuer identifier: an http(s) origin such as ``https://host:port``.

    The HTTP server's endpoints (``/mcp``, ``/.well-known/...``) hang off it, so it has no path.

    Raises:
        InvalidInput: otherwise.
    """
    url = url.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise InvalidInput(f"issuer is not a valid URL: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"issuer must be an http(s) URL with a host, got {url!r}")
    if parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        raise InvalidInput(
            f"issuer must be an origin like https://charter.example.com, got {url!r}"
        )
    return url


def set_issuer(home: Home, url: str) -> bool:
    """Record the issuer identifier, on purpose; return True if it changed.

    Tokens issued under a previous issuer stop verifying (their ``iss`` no longer matches),
    and a server already running keeps advertising (and accepting) the issuer it started with.
    """
    url = normalize_issuer(url)
    if url == recorded_issuer(home):
        return False
    with transaction(home.conn):
        home.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('issuer', ?)", (url,))
    home.meta["issuer"] = url
    return True


def resource_url(issuer_url: str) -> str:
    """The MCP resource (and token audience) of the HTTP server for ``issuer_url``."""
    return issuer_url.rstrip("/") + MCP_PATH


# -- issuer keys -----------------------------------------------------------------------------


def ensure_issuer_keys(home: Home) -> None:
    """Register the issuer key made by ``charter init`` if no issuer key is registered yet."""
    if home.conn.execute("SELECT 1 FROM issuer_keys LIMIT 1").fetchone():
        return
    kid = home.meta.get("issuer_kid")
    if not kid:
        raise ConfigError("this home has no issuer key: was `charter init` interrupted?")
    key = signing_key(home, kid)
    with transaction(home.conn):
        home.conn.execute(
            "INSERT OR IGNORE INTO issuer_keys(kid, public_key, created_at) VALUES (?,?,?)",
            (kid, b64url(key.public_key), home.meta.get("created_at") or rfc3339(home.clock.now())),
        )


def jwks(home: Home) -> dict[str, Any]:
    """The JWKS (RFC 8037 OKP keys) of every published issuer key, the signing key first."""
    ensure_issuer_keys(home)
    rows = home.conn.execute(
        "SELECT kid, public_key FROM issuer_keys k WHERE k.retired_at IS NULL OR EXISTS"
        " (SELECT 1 FROM tokens t WHERE t.kid = k.kid AND t.expires_at > ?)"
        " ORDER BY retired_at IS NOT NULL, created_at DESC",
        (rfc3339(home.clock.now()),),
    ).fetchall()
    return {
        "keys": [
            public_jwk(b64url_decode(pk)) | {"kid": kid, "use": "sig", "alg": ALGORITHM}
            for kid, pk in rows
        ]
    }


def rotate(home: Home, *, passphrase: bytes | None = None) -> RotationResult:
    """Make a new signing key; the old one stays published until its last token expires.

    Recorded as an owner-signed ``keys.rotate`` event.
    """
    ensure_issuer_keys(home)
    home.owner_key(passphrase)  # fail before a key file is written
    new = KeyHandle.of(home.signer, home.signer.create(issuer_ref("")))
    now = rfc3339(home.clock.now())
    with transaction(home.conn):
        old = current_kid(home.conn)
        row = home.conn.execute(
            "SELECT max(expires_at) FROM tokens WHERE kid = ? AND expires_at > ?", (old, now)
        ).fetchone()
        until = row[0] or now
        home.conn.execute("UPDATE issuer_keys SET retired_at = ? WHERE kid = ?", (now, old))
        home.conn.execute(
            "INSERT INTO issuer_keys(kid, public_key, created_at) VALUES (?,?,?)",
            (new.kid, b64url(new.public_key), now),
        )
        home.conn.execute("UPDATE meta SET value = ? WHERE key = 'issuer_kid'", (new.kid,))
        home.record_owner_event(
            "keys.rotate",
            {
                "kid": new.kid,
                "key": new.jwk(),
                "retired_kid": old,
                "retired_published_until": until,
            },
            passphrase=passphrase,
        )
    home.meta["issuer_kid"] = new.kid
    return RotationResult(kid=new.kid, retired_kid=old, retired_published_until=until)


def published_key(conn: sqlite3.Connection, kid: str, now: float) -> bytes | None:
    """The key if it signs, or still has an unexpired token (the JWKS publishes the same)."""
    row = conn.execute(
        "SELECT public_key FROM issuer_keys k WHERE k.kid = ? AND (k.retired_at IS NULL"
        " OR EXISTS (SELECT 1 FROM tokens t WHERE t.kid = k.kid AND t.expires_at > ?))",
        (kid, rfc3339(_from_epoch(now))),
    ).fetchone()
    return None if row is None else b64url_decode(row[0])


def unpublished_reason(conn: sqlite3.Connection, kid: str) -> str:
    if conn.execute("SELECT 1 FROM issuer_keys WHERE kid = ?", (kid,)).fetchone():
        return f"key id {kid!r} was retired and every token it signed has expired"
    return f"key id {kid!r} is not a published issuer key"


def current_kid(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT kid FROM issuer_keys WHERE retired_at IS NULL").fetchone()
    if row is None:
        raise ConfigError("this home has no current issuer key")
    return str(row[0])


def signing_key(home: Home, kid: str) -> KeyHandle:
    """The issuer key ``kid``, through the home's signer (which keeps it loaded)."""
    key = KeyHandle.of(home.signer, issuer_ref(kid))
    if key.kid != kid:
        raise ConfigError(f"issuer key file for {kid} holds a different key")
    return key


def _from_epoch(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)
