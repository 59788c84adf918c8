"""The Starlette snippet of docs/DPOP.md, run as written against a real Charter server.

The snippet is taken out of the document, loaded as a module and served by uvicorn; it
fetches the issuer's JWKS from a running ``charter serve --http`` app, accepts a DPoP-bound
token with a fresh proof, and refuses it as Bearer, without a proof, replayed or for another
URL.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import types
from pathlib import Path

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from httpthread import serving

from charter.config import Settings
from charter.evidence.jwk import b64url, b64url_decode
from charter.home import Home
from charter.server.http import build_http_app
from charter.testing import make_home
from charter.tools import identity, tokens
from charter.tools.tokens.dpop import make_proof

DOC = Path(__file__).resolve().parents[2] / "docs" / "DPOP.md"


def snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1
    return str(blocks[0])


def free_socket() -> tuple[socket.socket, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_the_documented_starlette_snippet_checks_charter_dpop_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    charter_sock, issuer = free_socket()
    service_sock, service = free_socket()
    home = await make_home(tmp_path / "home")
    await tokens.set_issuer(home, issuer)
    await identity.add_agent(home, "bot", scopes=["audit:read"], audiences=[service])
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }
    token = (await tokens.issue_for_owner(home, "bot", audience=service, dpop_jwk=jwk)).token
    plain = (await tokens.issue_for_owner(home, "bot", audience=service)).token
    monkeypatch.setenv("CHARTER_ISSUER", issuer)
    monkeypatch.setenv("SERVICE_AUDIENCE", service)
    module = types.ModuleType("dpop_snippet")
    exec(compile(snippet(), str(DOC), "exec"), module.__dict__)  # the document's code, as is
    url = service + "/things"

    def call(scheme: str, value: str, proof: str | None, method: str = "POST") -> httpx2.Response:
        headers = {"Authorization": f"{scheme} {value}"}
        if proof is not None:
            headers["DPoP"] = proof
        return httpx2.request(method, url + "?page=2", headers=headers, timeout=10)

    def proof(for_url: str = url, method: str = "POST", access: str = token) -> str:
        now = dt.datetime.now(dt.UTC)
        return make_proof(key, method=method, url=for_url, now=now, access_token=access)

    server_home = await Home.open(Settings(home=home.settings.home))
    try:
        with (
            serving(build_http_app(server_home, issuer_url=issuer), charter_sock),
            serving(module.app, service_sock),
        ):
            first = proof()
            ok = call("DPoP", token, first)
            assert ok.status_code == 200, ok.text
            assert ok.json() == {
                "agent": json.loads(b64url_decode(token.split(".")[1]))["sub"],
                "scope": "audit:read",
            }
            refusals = {
                "bearer": call("Bearer", token, None),
                "no proof": call("DPoP", token, None),
                "replay": call("DPoP", token, first),
                "other url": call("DPoP", token, proof(service + "/other")),
                "other method": call("DPoP", token, proof(method="GET")),
                "agent-key token, client proof": call("DPoP", plain, proof(access=plain)),
            }
            assert call("DPoP", token, proof(method="GET"), method="GET").status_code == 200
    finally:
        await server_home.close()
        await home.close()
    for why, refused in refusals.items():
        assert refused.status_code == 401, why
        assert refused.headers["www-authenticate"].startswith("DPoP error="), why
