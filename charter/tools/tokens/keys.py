"""The token issuer: its identifier (``iss``) and its signing keys (rotation, JWKS).

The issuer is an http(s) origin recorded in the home on purpose (``charter init --issuer``,
``charter token issuer set``, or once by the first ``charter serve --http``). The signing key
is the one ``issuer_keys`` row that is not retired; a retired key stays published (JWKS)
while a token it signed has not expired.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from charter.clock import rfc3339
from charter.errors import ConfigError, InvalidInput
from charter.evidence.jwk import public_jwk
from charter.home import Home
from charter.keys import KeyHandle, issuer_ref
from charter.storage.ports import Tx
from charter.storage.tokens import TokenRepo
from charter.tools.tokens.codec import ALGORITHM

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


async def issuer(home: Home) -> str:
    """The home's issuer identifier (``iss``): the recorded one, else :data:`DEFAULT_ISSUER`."""
    return await home.read(issuer_in)


def issuer_in(tx: Tx) -> str:
    """:func:`issuer` inside a unit of work."""
    return tx.tokens.get_issuer() or DEFAULT_ISSUER


async def recorded_issuer(home: Home) -> str | None:
    """The issuer recorded in the home, or None if none has been set yet."""
    return await home.read(lambda tx: tx.tokens.get_issuer())


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


async def set_issuer(home: Home, url: str) -> bool:
    """Record the issuer identifier, on purpose; return True if it changed.

    Tokens issued under a previous issuer stop verifying (their ``iss`` no longer matches),
    and a server already running keeps advertising (and accepting) the issuer it started with.
    """
    url = normalize_issuer(url)
    if url == await recorded_issuer(home):
        return False
    await home.write(lambda tx: tx.tokens.set_issuer(url))
    home.meta["issuer"] = url
    return True


def resource_url(issuer_url: str) -> str:
    """The MCP resource (and token audience) of the HTTP server for ``issuer_url``."""
    return issuer_url.rstrip("/") + MCP_PATH


# -- issuer keys -----------------------------------------------------------------------------


async def ensure_issuer_keys(home: Home) -> None:
    """Register the issuer key made by ``charter init`` if no issuer key is registered yet."""
    if not await home.read(lambda tx: tx.tokens.has_issuer_keys()):
        await home.write(lambda tx: register_issuer_key(tx, home))


def register_issuer_key(tx: Tx, home: Home) -> None:
    """Register the issuer key ``charter init`` made, unless one is (inside a unit of work).

    Raises:
        ConfigError: the home has no issuer key at all.
    """
    kid = home.meta.get("issuer_kid")
    if not kid:
        raise ConfigError("this home has no issuer key: was `charter init` interrupted?")
    key = signing_key(home, kid)
    since = home.meta.get("created_at") or rfc3339(home.clock.now())
    tx.tokens.insert_issuer_key_if_absent(kid, key.public_key, since)


async def jwks(home: Home) -> dict[str, Any]:
    """The JWKS (RFC 8037 OKP keys) of every published issuer key, the signing key first."""
    await ensure_issuer_keys(home)
    now = rfc3339(home.clock.now())
    published = await home.read(lambda tx: tx.tokens.published_keys(now))
    return {
        "keys": [
            public_jwk(key.public_key) | {"kid": key.kid, "use": "sig", "alg": ALGORITHM}
            for key in published
        ]
    }


async def rotate(home: Home, *, passphrase: bytes | None = None) -> RotationResult:
    """Make a new signing key; the old one stays published until its last token expires.

    Recorded as an owner-signed ``keys.rotate`` event.
    """
    await ensure_issuer_keys(home)
    home.owner_key(passphrase)  # fail before a key file is written
    new = KeyHandle.of(home.signer, home.signer.create(issuer_ref("")))
    now = rfc3339(home.clock.now())

    def work(tx: Tx) -> tuple[str, str]:
        repo = tx.tokens
        old = current_kid(repo)
        until = repo.last_expiry(old, now) or now
        repo.retire_issuer_key(old, now)
        repo.insert_issuer_key(new.kid, new.public_key, now)
        repo.set_signing_kid(new.kid)
        tx.ledger.append_one(
            home.owner_event(
                "keys.rotate",
                {
                    "kid": new.kid,
                    "key": new.jwk(),
                    "retired_kid": old,
                    "retired_published_until": until,
                },
                passphrase=passphrase,
            )
        )
        return old, until

    old, until = await home.write(work)
    home.meta["issuer_kid"] = new.kid
    return RotationResult(kid=new.kid, retired_kid=old, retired_published_until=until)


def current_kid(repo: TokenRepo) -> str:
    """The signing key's id.

    Raises:
        ConfigError: the home has no current issuer key.
    """
    kid = repo.current_kid()
    if kid is None:
        raise ConfigError("this home has no current issuer key")
    return kid


def signing_key(home: Home, kid: str) -> KeyHandle:
    """The issuer key ``kid``, through the home's signer (which keeps it loaded)."""
    key = KeyHandle.of(home.signer, issuer_ref(kid))
    if key.kid != kid:
        raise ConfigError(f"issuer key file for {kid} holds a different key")
    return key
