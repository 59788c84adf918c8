"""RFC 8693 token exchange at the HTTP server's token endpoint (issue 21): the parent's token
and the sub-agent's become one with ``sub`` = parent and ``act.sub`` = sub-agent, verified by
npm ``jose``, serving MCP as the sub-agent; anything wider gets 400."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from httpthread import serving
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from charter.config import Settings
from charter.evidence.entries import Entry
from charter.evidence.jwk import b64url_decode
from charter.home import Home
from charter.server.http import build_http_app
from charter.testing import make_home, raw_tx, server_for
from charter.tools import audit, identity, tokens
from charter.tools.tokens.exchange import ACCESS_TOKEN_TYPE, GRANT_TYPE

NODE_MODULES = Path(__file__).resolve().parents[2] / ".ci" / "node" / "node_modules"


@dataclass
class Site:
    home: Home
    sock: socket.socket
    issuer: str

    @property
    def mcp(self) -> str:
        return tokens.resource_url(self.issuer)

    async def token(self, agent: str, scopes: list[str]) -> str:
        issued = await tokens.issue_for_owner(self.home, agent, audience=self.mcp, scopes=scopes)
        return issued.token


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    issuer = f"http://127.0.0.1:{sock.getsockname()[1]}"
    home = await make_home(tmp_path / "home")
    await tokens.set_issuer(home, issuer)
    mcp = tokens.resource_url(issuer)
    await identity.add_agent(
        home,
        "planner",
        scopes=["agent:delegate", "audit:read", "token:issue"],
        audiences=[mcp, "https://api.example.com"],
    )
    await identity.add_agent(home, "beta", scopes=["audit:read"], audiences=[mcp])
    async with Client(await server_for(home, "planner")) as client:
        made = await client.call_tool(
            "agent_delegate",
            {"name": "worker", "scopes": ["audit:read", "token:issue"], "audiences": [mcp]},
        )
    assert not made.is_error, made.content
    yield Site(home, sock, issuer)
    await home.close()
    sock.close()


@asynccontextmanager
async def running(site: Site) -> AsyncIterator[None]:
    server_home = await Home.open(Settings(home=site.home.settings.home))
    app = build_http_app(server_home, issuer_url=site.issuer)
    try:
        with serving(app, site.sock):
            yield
    finally:
        await server_home.close()


def exchange(site: Site, subject: str, actor: str, **extra: str) -> httpx2.Response:
    form = {
        "grant_type": GRANT_TYPE,
        "subject_token": subject,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "actor_token": actor,
        "actor_token_type": ACCESS_TOKEN_TYPE,
    } | extra
    return httpx2.post(f"{site.issuer}/token", data=form, timeout=20)


def claims_of(token: str) -> dict[str, Any]:
    return dict(json.loads(b64url_decode(token.split(".")[1])))


@asynccontextmanager
async def mcp_client(site: Site, token: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=20) as http,
        Client(streamable_http_client(site.mcp, http_client=http)) as client,
    ):
        yield client


JOSE_VERIFY = """
import { createRequire } from "node:module";
const require = createRequire(process.env.NODE_MODULES + "/");
const jose = await import(require.resolve("jose"));
const [jwksUrl, token, issuer, audience] = process.argv.slice(2);
const jwks = jose.createRemoteJWKSet(new URL(jwksUrl));
const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, {
  issuer, audience, algorithms: ["EdDSA"], typ: "at+jwt" });
console.log(JSON.stringify({ payload, protectedHeader }));
"""


def _node() -> Path:
    node = NODE_MODULES / ".bin" / "node"
    if not (node.exists() and (NODE_MODULES / "jose" / "package.json").exists()):
        why = "Node or the npm jose package missing under .ci/node"
        if os.environ.get("CI"):
            pytest.fail(f"{why}: .ci/install-inspector should have installed them")
        pytest.skip(f"{why}; run `bash .ci/install-inspector` to enable this test")
    return node


async def test_exchange_gives_sub_parent_act_child_verified_by_jose_and_serves_the_child(
    site: Site, tmp_path: Path
) -> None:
    node = _node()
    planner = await identity.load_agent(site.home, "planner")
    worker = await identity.load_agent(site.home, "worker")
    subject = await site.token("planner", ["audit:read", "token:issue"])
    actor = await site.token("worker", ["audit:read"])
    script = tmp_path / "verify.mjs"
    script.write_text(JOSE_VERIFY)
    async with running(site):
        metadata = httpx2.get(f"{site.issuer}/.well-known/oauth-authorization-server").json()
        answer = exchange(site, subject, actor)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        token = body["access_token"]
        verified = subprocess.run(
            [str(node), str(script), f"{site.issuer}/.well-known/jwks.json", token,
             site.issuer, site.mcp],
            env={**os.environ, "NODE_MODULES": str(NODE_MODULES)},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        async with mcp_client(site, token) as client:
            who = (await client.call_tool("identity_whoami", {})).structured_content
    assert GRANT_TYPE in metadata["grant_types_supported"]
    assert metadata["token_endpoint"] == f"{site.issuer}/token"
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE and body["token_type"] == "Bearer"
    assert verified.returncode == 0, verified.stderr
    payload = json.loads(verified.stdout)["payload"]
    assert payload["sub"] == planner.agent_id
    assert payload["act"] == {"sub": worker.agent_id}
    assert payload["scope"] == "audit:read" == body["scope"]  # the intersection
    assert payload["exp"] <= min(claims_of(subject)["exp"], claims_of(actor)["exp"])
    # MCP over HTTP as the sub-agent, under its own charter and key.
    assert who is not None and who["name"] == "worker"
    assert who["chain"] == ["owner@example.com", planner.agent_id, worker.agent_id]
    rows = [Entry.from_body(b).fields for b in raw_tx(site.home).ledger.iter_bodies()]
    exchanged = next(e for e in rows if e["action"] == "token.exchange")
    assert exchanged["kid"] == worker.key.kid and exchanged["args"]["sub"] == planner.agent_id
    assert token not in json.dumps(rows)
    assert rows[-1]["actor"] == worker.agent_id and rows[-1]["action"] == "identity.whoami"
    await audit.verify_home(site.home)


async def test_widening_gets_400_and_strangers_are_refused(site: Site) -> None:
    subject = await site.token("planner", ["audit:read"])
    actor = await site.token("worker", ["audit:read", "token:issue"])
    stranger = await site.token("beta", ["audit:read"])
    async with running(site):
        wider = exchange(site, subject, actor, scope="audit:read token:issue")
        elsewhere = exchange(site, subject, actor, audience="https://api.example.com")
        not_a_child = exchange(site, subject, stranger)
        wrong_grant = exchange(site, subject, actor, grant_type="client_credentials")
        forged = exchange(site, subject, actor[:-4] + "AAAA")
    assert (wider.status_code, wider.json()["error"]) == (400, "invalid_scope")
    assert "token:issue" in wider.json()["error_description"]
    assert (elsewhere.status_code, elsewhere.json()["error"]) == (400, "invalid_target")
    assert (not_a_child.status_code, not_a_child.json()["error"]) == (400, "invalid_request")
    assert "not a sub-agent" in not_a_child.json()["error_description"]
    assert wrong_grant.json()["error"] == "unsupported_grant_type"
    assert (forged.status_code, forged.json()["error"]) == (400, "invalid_request")
    await audit.verify_home(site.home)


async def test_revoking_the_parent_stops_the_exchanged_token_at_the_next_call(
    site: Site,
) -> None:
    subject = await site.token("planner", ["audit:read"])
    actor = await site.token("worker", ["audit:read"])
    async with running(site):
        token = exchange(site, subject, actor).json()["access_token"]
        async with mcp_client(site, token) as client:
            assert not (await client.call_tool("identity_whoami", {})).is_error
            await identity.revoke_agent(site.home, "planner")
            # The next call of the open session: its token no longer verifies (401).
            with pytest.raises(MCPError):
                await client.call_tool("identity_whoami", {})
        later = httpx2.post(site.mcp, headers={"Authorization": f"Bearer {token}"}, json={})
        again = exchange(site, subject, actor)
    assert later.status_code == 401
    assert "agent has been revoked" in later.headers["www-authenticate"]
    assert again.status_code == 400
    await audit.verify_home(site.home)


async def test_a_deeper_chain_nests_act_and_still_narrows(site: Site) -> None:
    mcp = site.mcp
    await identity.add_agent(
        site.home, "lead", scopes=["agent:delegate", "audit:read"], audiences=[mcp],
        policy={"delegation_depth": 2},
    )  # fmt: skip
    for parent, child in (("lead", "mid"), ("mid", "leaf")):
        async with Client(await server_for(site.home, parent)) as client:
            made = await client.call_tool(
                "agent_delegate",
                {"name": child, "scopes": ["agent:delegate", "audit:read"], "audiences": [mcp]},
            )
        assert not made.is_error, made.content
    ids = {n: (await identity.get_agent(site.home, n)).agent_id for n in ("lead", "mid", "leaf")}
    lead = await site.token("lead", ["audit:read", "agent:delegate"])
    async with running(site):
        first = exchange(site, lead, await site.token("mid", ["audit:read"])).json()
        second = exchange(site, first["access_token"], await site.token("leaf", ["audit:read"]))
        wider = exchange(
            site, first["access_token"], await site.token("leaf", ["audit:read"]),
            scope="agent:delegate",
        )  # fmt: skip
    assert second.status_code == 200, second.text
    claims = claims_of(second.json()["access_token"])
    assert claims["sub"] == ids["lead"]
    assert claims["act"] == {"sub": ids["leaf"], "act": {"sub": ids["mid"]}}
    assert claims["scope"] == "audit:read"
    assert (wider.status_code, wider.json()["error"]) == (400, "invalid_scope")
    await audit.verify_home(site.home)
