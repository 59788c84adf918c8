"""Proofs made by panva's npm ``dpop`` package (under .ci/node), against a real Charter HTTP
server (issue 20): MCP calls with a DPoP-bound token succeed, for an ES256 and an Ed25519
client key; the same client's token as Bearer, without a proof, with a replayed proof or with
a proof for another URL gets 401 and a ``WWW-Authenticate: DPoP`` challenge.

The client is a Node script: it imports the key Python made (so the token can be bound to
it), signs every proof with ``dpop.generateProof`` and reports each answer as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PrivateFormat, PublicFormat
from cryptography.hazmat.primitives.serialization import NoEncryption as _NoEnc
from dpophttp import NODE_MODULES, Site, make_site, node_with, private_jwk, running

from charter.evidence.jwk import b64url

DPOP_CLIENT = r"""
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
const require = createRequire(process.env.NODE_MODULES + "/");
const dpop = await import(require.resolve("dpop"));
const [url, token, keyFile] = process.argv.slice(2);
const jwk = JSON.parse(readFileSync(keyFile, "utf8"));
const algorithm = jwk.kty === "EC" ? { name: "ECDSA", namedCurve: "P-256" } : { name: "Ed25519" };
const { d, ...pub } = jwk;
const keypair = {
  privateKey: await crypto.subtle.importKey("jwk", jwk, algorithm, false, ["sign"]),
  publicKey: await crypto.subtle.importKey("jwk", pub, algorithm, true, ["verify"]),
};
let session = null;
let nonce = undefined;
let lastProof = null;
async function send(body, { scheme = "DPoP", proof = "fresh", htu = url } = {}) {
  const headers = { "Content-Type": "application/json",
    Accept: "application/json, text/event-stream", Authorization: `${scheme} ${token}` };
  if (proof === "fresh") {
    lastProof = await dpop.generateProof(keypair, htu, "POST", nonce, token);
    headers.DPoP = lastProof;
  } else if (proof === "replay") {
    headers.DPoP = lastProof;
  }
  if (session) { headers["Mcp-Session-Id"] = session;
                 headers["MCP-Protocol-Version"] = "2025-06-18"; }
  const r = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
  if (r.headers.get("dpop-nonce")) nonce = r.headers.get("dpop-nonce");
  session = r.headers.get("mcp-session-id") ?? session;
  const text = await r.text();
  const data = text.split("\n").filter(l => l.startsWith("data:")).map(l => l.slice(5));
  return { status: r.status, challenge: r.headers.get("www-authenticate"),
           nonce: r.headers.get("dpop-nonce"),
           body: data.length ? JSON.parse(data[0]) : json(text) };
}
function json(text) { try { return JSON.parse(text); } catch { return text || null; } }
// RFC 9449 §8: a server that wants a nonce says use_dpop_nonce; try again once with it.
async function call(body, options) {
  const first = await send(body, options);
  if (first.status === 401 && (first.challenge || "").includes('error="use_dpop_nonce"')) {
    return { ...(await send(body, options)), retried: first };
  }
  return first;
}
const whoami = { jsonrpc: "2.0", id: 2, method: "tools/call",
                 params: { name: "identity_whoami", arguments: {} } };
const out = {};
out.init = await call({ jsonrpc: "2.0", id: 1, method: "initialize", params: {
  protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "dpop", version: "0" } } });
out.initialized = await call({ jsonrpc: "2.0", method: "notifications/initialized" });
out.whoami = await call(whoami);
out.replayed = await send(whoami, { proof: "replay" });
out.bearer = await send(whoami, { scheme: "Bearer", proof: "none" });
out.noProof = await send(whoami, { proof: "none" });
out.otherUrl = await send(whoami, { htu: url + "/other" });
out.again = await call({ ...whoami, id: 3 });
console.log(JSON.stringify(out));
"""


def ed25519_jwk(key: ed25519.Ed25519PrivateKey) -> dict[str, str]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    d = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, _NoEnc())
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw), "d": b64url(d)}


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async with make_site(tmp_path / "home") as made:
        yield made


async def run_dpop_client(
    site: Site, tmp_path: Path, key: dict[str, str], **options: Any
) -> dict[str, Any]:
    """Run the npm ``dpop`` client against the site's server (``options`` for the server);
    the token is bound to ``key``'s public half."""
    node = node_with("dpop")
    key_file = tmp_path / "client.jwk"
    key_file.write_text(json.dumps(key))
    script = tmp_path / "client.mjs"
    script.write_text(DPOP_CLIENT)
    token = await site.token({k: v for k, v in key.items() if k != "d"})
    async with running(site, **options):
        done = subprocess.run(
            [str(node), str(script), site.mcp, token, str(key_file)],
            env={**os.environ, "NODE_MODULES": str(NODE_MODULES)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    answers: dict[str, Any] = json.loads(done.stdout)
    return answers


def assert_accepted_and_refused(out: dict[str, Any]) -> None:
    """The calls with fresh proofs succeeded; each misuse got its 401 and challenge."""
    assert out["init"]["status"] == 200 and out["init"]["body"]["result"]["serverInfo"]
    assert out["initialized"]["status"] == 202
    for name in ("whoami", "again"):
        answer = out[name]
        assert answer["status"] == 200, answer
        assert not answer["body"]["result"].get("isError"), answer
        assert "alpha" in json.dumps(answer["body"]["result"])
    for name, error in (
        ("replayed", "invalid_dpop_proof"),
        ("bearer", "invalid_token"),
        ("noProof", "invalid_dpop_proof"),
        ("otherUrl", "invalid_dpop_proof"),
    ):
        answer = out[name]
        assert answer["status"] == 401, (name, answer)
        assert answer["challenge"].startswith("DPoP "), (name, answer)
        assert f'error="{error}"' in answer["challenge"], (name, answer)
    assert "already used" in out["replayed"]["body"]["error_description"]


@pytest.mark.parametrize("alg", ["ES256", "Ed25519"])
async def test_mcp_calls_with_proofs_made_by_npm_dpop_succeed_and_misuse_is_refused(
    site: Site, tmp_path: Path, alg: str
) -> None:
    key = (
        private_jwk(ec.generate_private_key(ec.SECP256R1()))
        if alg == "ES256"
        else ed25519_jwk(ed25519.Ed25519PrivateKey.generate())
    )
    out = await run_dpop_client(site, tmp_path, key)
    assert_accepted_and_refused(out)
    # No nonce was asked for: no call was retried, no nonce was handed out.
    assert not any(isinstance(a, dict) and a.get("retried") for a in out.values())
    assert out["whoami"]["nonce"] is None


async def test_the_npm_dpop_client_follows_the_server_nonce(site: Site, tmp_path: Path) -> None:
    key = private_jwk(ec.generate_private_key(ec.SECP256R1()))
    out = await run_dpop_client(site, tmp_path, key, dpop_nonce=True)
    # The first call, without a nonce: 401 use_dpop_nonce with one in DPoP-Nonce (§8).
    first = out["init"]["retried"]
    assert first["status"] == 401 and first["nonce"], first
    assert 'error="use_dpop_nonce"' in first["challenge"]
    # With it, dpop.generateProof(..., nonce, ...) proofs are accepted; later calls reuse the
    # nonce every answer hands out and need no retry; misuse is refused as without nonces.
    assert_accepted_and_refused(out)
    assert "retried" not in out["whoami"] and "retried" not in out["again"]
    assert out["whoami"]["nonce"]
