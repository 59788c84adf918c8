"""DPoP-bound tokens (RFC 9449) at the HTTP transport, on a real uvicorn server (issue 20).

A token issued with ``dpop_jwk`` works at ``/mcp`` only as ``Authorization: DPoP <token>``
with a fresh proof signed by that key, for this request's method and URL; proofs made by the
npm ``jose`` (under .ci/node) and by Charter's own ``make_proof`` are accepted; each refusal
gets 401 with a ``WWW-Authenticate: DPoP`` challenge naming the error.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from dpophttp import (
    INIT,
    MCP_HEADERS,
    NODE_MODULES,
    Site,
    assert_refused,
    make_site,
    node_with,
    post,
    private_jwk,
    public_jwk,
    running,
)
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from charter.testing import raw_tx
from charter.tools import tokens
from charter.tools.tokens.dpop import make_proof
from charter.tools.tokens.nonce import DpopNonces


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async with make_site(tmp_path / "home") as made:
        yield made


class DpopAuth(httpx2.Auth):
    """A fresh proof for every request the MCP client makes, as a DPoP client library does."""

    def __init__(self, site: Site, token: str) -> None:
        self.site, self.token, self.proofs = site, token, 0

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, Any, None]:
        request.headers["Authorization"] = f"DPoP {self.token}"
        request.headers["DPoP"] = self.site.proof(self.token, request.method, str(request.url))
        self.proofs += 1
        yield request


# -- accepted --------------------------------------------------------------------------------


async def test_mcp_calls_with_a_dpop_token_and_fresh_proofs_succeed(site: Site) -> None:
    token = await site.token()
    auth = DpopAuth(site, token)
    async with (
        running(site),
        httpx2.AsyncClient(auth=auth, timeout=20) as http,
        Client(streamable_http_client(site.mcp, http_client=http), mode="auto") as client,
    ):
        result = await client.call_tool("identity_whoami", {})
        again = await client.call_tool("identity_whoami", {})
    assert not result.is_error and not again.is_error
    assert "alpha" in json.dumps(result.structured_content)
    assert auth.proofs >= 3  # initialize, initialized, two calls: each its own proof
    assert raw_tx(site.home).dpop.count() >= 3  # every accepted jti is remembered


JOSE_CLIENT = """
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
const require = createRequire(process.env.NODE_MODULES + "/");
const jose = await import(require.resolve("jose"));
const [url, token, keyFile] = process.argv.slice(2);
const privateKey = await jose.importJWK(JSON.parse(readFileSync(keyFile, "utf8")), "ES256");
const publicJwk = JSON.parse(readFileSync(keyFile, "utf8")); delete publicJwk.d;
const ath = jose.base64url.encode(
  new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token))));
async function proof(htm) {
  return new jose.SignJWT({ htm, htu: url, ath, jti: crypto.randomUUID() })
    .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk: publicJwk })
    .setIssuedAt().sign(privateKey);
}
let session = null;
async function call(body) {
  const headers = { "Content-Type": "application/json",
    Accept: "application/json, text/event-stream",
    Authorization: `DPoP ${token}`, DPoP: await proof("POST") };
  if (session) { headers["Mcp-Session-Id"] = session;
                 headers["MCP-Protocol-Version"] = "2025-06-18"; }
  const r = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
  session = r.headers.get("mcp-session-id") ?? session;
  const text = await r.text();
  const data = text.split("\\n").filter(l => l.startsWith("data:")).map(l => l.slice(5));
  return { status: r.status, body: data.length ? JSON.parse(data[0]) : (text || null) };
}
const out = [];
out.push(await call({ jsonrpc: "2.0", id: 1, method: "initialize", params: {
  protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "jose", version: "0" } } }));
out.push(await call({ jsonrpc: "2.0", method: "notifications/initialized" }));
out.push(await call({ jsonrpc: "2.0", id: 2, method: "tools/call",
  params: { name: "identity_whoami", arguments: {} } }));
console.log(JSON.stringify(out));
"""


async def test_mcp_calls_with_proofs_made_by_node_jose_succeed(site: Site, tmp_path: Path) -> None:
    node = node_with("jose")
    key_file = tmp_path / "client.jwk"
    key_file.write_text(json.dumps(private_jwk(site.key)))
    script = tmp_path / "client.mjs"
    script.write_text(JOSE_CLIENT)
    token = await site.token()
    async with running(site):
        done = subprocess.run(
            [str(node), str(script), site.mcp, token, str(key_file)],
            env={**os.environ, "NODE_MODULES": str(NODE_MODULES)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    init, initialized, whoami = json.loads(done.stdout)
    assert init["status"] == 200 and init["body"]["result"]["serverInfo"]
    assert initialized["status"] == 202
    assert whoami["status"] == 200, whoami
    assert not whoami["body"]["result"].get("isError"), whoami
    assert "alpha" in json.dumps(whoami["body"]["result"])


# -- refused ---------------------------------------------------------------------------------


async def test_each_misuse_of_a_dpop_token_is_refused_with_a_dpop_challenge(site: Site) -> None:
    token = await site.token()
    other_key = ec.generate_private_key(ec.SECP256R1())
    async with running(site):
        # As a bearer token: the binding is not optional.
        assert_refused(post(site, {"Authorization": f"Bearer {token}"}), "invalid_token")
        # DPoP scheme without a proof, or with two.
        assert_refused(post(site, {"Authorization": f"DPoP {token}"}), "invalid_dpop_proof")
        # A proof for another URL, or another method.
        for proof in (
            site.proof(token, url=site.issuer + "/other"),
            site.proof(token, url=site.mcp.replace("127.0.0.1", "localhost")),
            site.proof(token, method="GET"),
        ):
            refused = post(site, {"Authorization": f"DPoP {token}", "DPoP": proof})
            assert_refused(refused, "invalid_dpop_proof")
        # Signed by another key than the token's, or made for another token.
        foreign = make_proof(
            other_key, method="POST", url=site.mcp, now=dt.datetime.now(dt.UTC), access_token=token
        )
        for proof in (foreign, site.proof("another.access.token")):
            refused = post(site, {"Authorization": f"DPoP {token}", "DPoP": proof})
            assert_refused(refused, "invalid_dpop_proof")
        # The same proof twice: the second is a replay.
        proof = site.proof(token)
        assert post(site, {"Authorization": f"DPoP {token}", "DPoP": proof}).status_code == 200
        replayed = post(site, {"Authorization": f"DPoP {token}", "DPoP": proof})
        assert_refused(replayed, "invalid_dpop_proof")
        assert "already used" in replayed.json()["error_description"]
        # A token the server refuses, with a good proof: invalid_token under DPoP.
        bad = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        refused = post(site, {"Authorization": f"DPoP {bad}", "DPoP": site.proof(bad)})
        assert_refused(refused, "invalid_token")
        malformed = post(site, {"Authorization": "DPoP not a token", "DPoP": proof})
        assert malformed.status_code == 400
        assert malformed.headers["www-authenticate"].startswith("DPoP error=")
        # And the right way still works.
        ok = post(site, {"Authorization": f"DPoP {token}", "DPoP": site.proof(token)})
        assert ok.status_code == 200


async def test_two_proof_headers_are_refused(site: Site) -> None:
    token = await site.token()
    async with running(site):
        response = httpx2.post(
            site.mcp,
            json=INIT,
            headers=[
                *MCP_HEADERS.items(),
                ("Authorization", f"DPoP {token}"),
                ("DPoP", site.proof(token)),
                ("DPoP", site.proof(token)),
            ],
            timeout=10,
        )
    assert_refused(response, "invalid_dpop_proof")


async def test_a_token_bound_to_the_agent_key_still_works_as_bearer(site: Site) -> None:
    issued = await tokens.issue_for_owner(site.home, "alpha", audience=site.mcp)
    assert issued.token_type == "Bearer"
    async with running(site):
        assert post(site, {"Authorization": f"Bearer {issued.token}"}).status_code == 200


async def test_metadata_and_introspection_speak_dpop(site: Site) -> None:
    token = await site.token()
    async with running(site):
        metadata = httpx2.get(f"{site.issuer}/.well-known/oauth-authorization-server").json()
    assert metadata["dpop_signing_alg_values_supported"] == ["ES256", "EdDSA", "Ed25519"]
    answer = await tokens.introspect(site.home, token)
    assert answer["active"] is True and answer["token_type"] == "DPoP"
    assert answer["cnf"] == {"jkt": tokens.dpop.jwk_thumbprint(public_jwk(site.key))}


async def test_with_dpop_nonce_a_proof_needs_a_nonce_of_the_home(site: Site) -> None:
    token = await site.token()
    async with running(site, dpop_nonce=True):
        refused = post(site, {"Authorization": f"DPoP {token}", "DPoP": site.proof(token)})
        assert_refused(refused, "use_dpop_nonce")
        handed = refused.headers["dpop-nonce"]  # RFC 9449 §8: the nonce comes with the 401
        ok = post(site, {"Authorization": f"DPoP {token}", "DPoP": site.proof(token, nonce=handed)})
        assert ok.status_code == 200 and ok.headers["dpop-nonce"]
        # A nonce made by another server of this home (the key is in the home's storage).
        other = (await DpopNonces.for_home(site.home)).current()
        assert other == handed
        again = post(
            site, {"Authorization": f"DPoP {token}", "DPoP": site.proof(token, nonce=other)}
        )
        assert again.status_code == 200
        # One made under another key is refused, and so is a proof without one.
        forged = DpopNonces(b"\x01" * 32, site.home.clock).current()
        for nonce in (forged, None):
            proof = site.proof(token, nonce=nonce)
            assert_refused(
                post(site, {"Authorization": f"DPoP {token}", "DPoP": proof}), "use_dpop_nonce"
            )


async def test_introspection_over_http_returns_the_binding(site: Site) -> None:
    token = await site.token()
    secret = "relying-party-introspection-secret"
    async with running(site, introspection_secret=secret.encode()):
        answer = httpx2.post(
            f"{site.issuer}/introspect",
            data={"token": token},
            headers={"Authorization": f"Bearer {secret}"},
            timeout=10,
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["active"] is True and body["token_type"] == "DPoP"
    assert body["cnf"] == {"jkt": tokens.dpop.jwk_thumbprint(public_jwk(site.key))}
