"""Server-provided DPoP nonces (RFC 9449 §8), stateless and shared by every server of a home.

A nonce names a time window and carries an HMAC of it::

    nonce = base64url( window (8 bytes, big-endian) || HMAC-SHA256(key, label || window)[:16] )

where ``window = floor(unix time / WINDOW_S)``. A proof's nonce is accepted while its window is
the current one, the one before, or the one after (servers' clocks differ a little), so a
nonce lives between :data:`WINDOW_S` and twice that. Nothing is stored per nonce: any server
of the deployment checks any nonce another one handed out.

The key is 32 random bytes kept in the home's storage (``meta`` key ``dpop_nonce_key``),
made by the first server that needs it (insert-if-absent, then read back: when two servers
start at once, both keep the first committed key), so every server of a deployment (SQLite
file or PostgreSQL database) reads the same key. It is not a signing key:
whoever can read the database can mint nonces, which only lets them skip the freshness step;
every other check of a proof (signature, key, ``ath``, ``htm``/``htu``, ``iat`` window,
replay) still applies.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from typing import TYPE_CHECKING

from charter.evidence.jwk import b64url, b64url_decode

if TYPE_CHECKING:
    from charter.clock import Clock
    from charter.home import Home
    from charter.storage.ports import Tx

#: Seconds per nonce window: a nonce is accepted for one to two windows.
WINDOW_S = 120
#: The ``meta`` key holding the HMAC key (hex).
META_KEY = "dpop_nonce_key"
_LABEL = b"charter dpop nonce v1\x00"
_MAC_BYTES = 16


class DpopNonces:
    """Makes and checks the nonces of one home (see the module's docstring)."""

    def __init__(self, key: bytes, clock: Clock, *, window_s: int = WINDOW_S) -> None:
        if len(key) < 32:
            raise ValueError("a DPoP nonce key is at least 32 bytes")
        self._key = key
        self.clock = clock
        self.window_s = window_s

    @classmethod
    async def for_home(cls, home: Home) -> DpopNonces:
        """The home's nonces, making its key on first use (one transaction: concurrent first
        servers agree on one key)."""
        return cls(bytes.fromhex(await home.write(_key_in)), home.clock)

    def _window(self) -> int:
        return int(self.clock.now().timestamp()) // self.window_s

    def _make(self, window: int) -> str:
        data = struct.pack(">Q", window)
        mac = hmac.new(self._key, _LABEL + data, hashlib.sha256).digest()[:_MAC_BYTES]
        return b64url(data + mac)

    def current(self) -> str:
        """The nonce to hand out now (``DPoP-Nonce``)."""
        return self._make(self._window())

    def accepts(self, nonce: str | None) -> bool:
        """True when ``nonce`` is one this home made for the current window or a neighbour."""
        if not isinstance(nonce, str) or len(nonce) > 64 or not nonce.isascii():
            return False
        try:
            raw = b64url_decode(nonce)
        except ValueError:
            return False
        if len(raw) != 8 + _MAC_BYTES:
            return False
        (window,) = struct.unpack(">Q", raw[:8])
        if abs(window - self._window()) > 1:
            return False
        return hmac.compare_digest(self._make(window).encode("ascii"), nonce.encode("ascii"))


def _key_in(tx: Tx) -> str:
    return tx.meta.set_default(META_KEY, secrets.token_hex(32))
