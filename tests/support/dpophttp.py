"""A real Charter HTTP server on loopback for the DPoP tests (issue 20), and the helpers they
share: a home with one agent whose charter allows the server's ``/mcp``, a P-256 client key,
raw MCP requests, the 401 challenge's checks, and Node (with npm packages) under .ci/node.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from httpthread import serving

from charter.config import Settings
from charter.evidence.jwk import b64url
from charter.home import Home
from charter.server.http import build_http_app
from charter.testing import make_home
from charter.tools import identity, tokens
from charter.tools.tokens.dpop import make_proof

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
NODE_MODULES = Path(__file__).resolve().parents[2] / ".ci" / "node" / "node_modules"


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }


def private_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    d = key.private_numbers().private_value.to_bytes(32, "big")
    return public_jwk(key) | {"d": b64url(d)}


def node_with(package: str) -> Path:
    """Node under .ci/node with npm ``package`` installed next to it; skips the test when
    they are missing, except under CI, where it fails (.ci/install-inspector installs them).
    """
    node = NODE_MODULES / ".bin" / "node"
    if not (node.exists() and (NODE_MODULES / package / "package.json").exists()):
        why = f"Node or the npm {package} package missing under .ci/node"
        if os.environ.get("CI"):
            pytest.fail(f"{why}: .ci/install-inspector should have installed them")
        pytest.skip(f"{why}; run `bash .ci/install-inspector` to enable this test")
    return node


@dataclass
class Site:
    home: Home
    sock: socket.socket
    issuer: str
    key: ec.EllipticCurvePrivateKey

    @property
    def mcp(self) -> str:
        return tokens.resource_url(self.issuer)

    async def token(self, jwk: dict[str, str] | None = None) -> str:
        issued = await tokens.issue_for_owner(
            self.home, "alpha", audience=self.mcp, dpop_jwk=jwk or public_jwk(self.key)
        )
        assert issued.token_type == "DPoP"
        return issued.token

    def proof(self, token: str, method: str = "POST", url: str | None = None, **kw: Any) -> str:
        now = dt.datetime.now(dt.UTC)
        return make_proof(
            self.key, method=method, url=url or self.mcp, now=now, access_token=token, **kw
        )


@asynccontextmanager
async def make_site(folder: Path) -> AsyncIterator[Site]:
    """A home (on the real clock: the server runs on it too) with agent ``alpha``, whose
    charter allows the ``/mcp`` of an issuer on a loopback port reserved for the server."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    issuer = f"http://127.0.0.1:{sock.getsockname()[1]}"
    home = await make_home(folder)
    await tokens.set_issuer(home, issuer)
    await identity.add_agent(
        home, "alpha", scopes=["audit:read"], audiences=[tokens.resource_url(issuer)]
    )
    try:
        yield Site(home, sock, issuer, ec.generate_private_key(ec.SECP256R1()))
    finally:
        await home.close()
        sock.close()


@asynccontextmanager
async def running(site: Site, **options: Any) -> AsyncIterator[None]:
    """``charter serve --http`` for the site's home on its socket (``options`` go to
    :func:`~charter.server.http.build_http_app`), in a thread, until the block ends."""
    server_home = await Home.open(Settings(home=site.home.settings.home))
    app = build_http_app(server_home, issuer_url=site.issuer, **options)
    try:
        with serving(app, site.sock):
            yield
    finally:
        await server_home.close()


def post(site: Site, headers: dict[str, str]) -> httpx2.Response:
    return httpx2.post(site.mcp, json=INIT, headers=MCP_HEADERS | headers, timeout=10)


def assert_refused(response: httpx2.Response, error: str) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("DPoP "), challenge
    assert f'error="{error}"' in challenge, challenge
    assert 'algs="ES256 EdDSA Ed25519"' in challenge
    assert "Traceback" not in response.text
