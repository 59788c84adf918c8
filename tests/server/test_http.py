"""The streamable HTTP transport on a real uvicorn server on a free loopback port.

The server runs in a thread with its own ``Home`` (as a separate ``charter serve --http``
process would); the test issues tokens and reads the ledger through its own handle. Real
clock, real keys, real MCP clients in both protocol generations.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from click.testing import CliRunner
from httpthread import serving
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser

from charter.cli import cli
from charter.config import Settings
from charter.errors import TokenInvalid
from charter.evidence.entries import Entry
from charter.evidence.jwk import b64url, b64url_decode
from charter.home import Home
from charter.keys import KeyPair
from charter.keys.files import read_key_file
from charter.server.http import CharterTokenVerifier, TokenAgentResolver, build_http_app
from charter.storage.db import transaction
from charter.testing import make_home, raw_db, raw_tx
from charter.tools import audit, identity, tokens

API = "https://api.example.com"
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
SECRET = b"relying-party-introspection-secret"


@dataclass
class Site:
    """A home with agents ``alpha`` and ``beta`` whose charters allow this server's audience."""

    home: Home
    sock: socket.socket
    issuer: str

    @property
    def mcp(self) -> str:
        return tokens.resource_url(self.issuer)

    async def token(
        self, agent: str, scopes: list[str] | None = None, audience: str | None = None
    ) -> str:
        return (
            await tokens.issue_for_owner(
                self.home, agent, audience=audience or self.mcp, scopes=scopes
            )
        ).token


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    issuer = f"http://127.0.0.1:{sock.getsockname()[1]}"
    home = await make_home(tmp_path / "home")  # the real clock: the server runs on it too
    await tokens.set_issuer(home, issuer)
    mcp = tokens.resource_url(issuer)
    await identity.add_agent(
        home, "alpha", scopes=["audit:read", "token:issue"], audiences=[mcp, API]
    )
    await identity.add_agent(home, "beta", scopes=["audit:read"], audiences=[mcp])
    yield Site(home, sock, issuer)
    await home.close()
    sock.close()


@asynccontextmanager
async def running(site: Site, required_scopes: Sequence[str] = ()) -> AsyncIterator[str]:
    """Serve ``site`` until the block ends; yield the issuer URL."""
    server_home = await Home.open(Settings(home=site.home.settings.home))
    app = build_http_app(
        server_home,
        issuer_url=site.issuer,
        introspection_secret=SECRET,
        required_scopes=required_scopes,
    )
    try:
        with serving(app, site.sock):
            yield site.issuer
    finally:
        await server_home.close()


@asynccontextmanager
async def mcp_client(site: Site, token: str, mode: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=20) as http,
        Client(streamable_http_client(site.mcp, http_client=http), mode=mode) as client,
    ):
        yield client


def entries(home: Home) -> list[dict[str, Any]]:
    return [Entry.from_body(b).fields for b in raw_tx(home).ledger.iter_bodies()]


def post_init(site: Site, token: str | None) -> httpx2.Response:
    headers = dict(MCP_HEADERS)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx2.post(site.mcp, json=INIT, headers=headers, timeout=10)


def text(result: Any) -> str:
    return str(result.content[0].text)


# -- authentication --------------------------------------------------------------------------


async def test_mcp_needs_a_valid_token_for_this_server(site: Site) -> None:
    good = await site.token("alpha")
    other_audience = await site.token("alpha", audience=API)
    revoked = await site.token("beta")
    await tokens.revoke(site.home, (await tokens.verify(site.home, revoked, audience=site.mcp)).jti)
    async with running(site):
        missing = post_init(site, None)
        assert missing.status_code == 401
        challenge = missing.headers["www-authenticate"]
        assert challenge.startswith("Bearer ")
        assert f'resource_metadata="{site.issuer}/.well-known/oauth-protected-resource/mcp"' in (
            challenge
        )
        for bad in ("garbage", other_audience, revoked, good[:-4] + "AAAA"):
            refused = post_init(site, bad)
            assert refused.status_code == 401, bad
            assert "invalid_token" in refused.headers["www-authenticate"]
            assert "Traceback" not in refused.text
        assert post_init(site, good).status_code == 200


def _forge(site: Site, token: str, key: KeyPair | None = None, **change: Any) -> str:
    """``token``'s claims with ``change``, re-signed with ``key`` (default: the issuer key)."""
    header_b64, payload_b64, _ = token.split(".")
    header = json.loads(b64url_decode(header_b64))
    if key is None:
        key = read_key_file(site.home.layout.issuer_key(site.home.meta["issuer_kid"]))
    else:
        header["kid"] = key.kid
    claims = json.loads(b64url_decode(payload_b64)) | change
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"


async def _refused_token(site: Site, why: str) -> str:
    """A token the server must refuse for reason ``why`` (a tokens.errors code)."""
    if why == "malformed":
        return "garbage"
    if why == "wrong_audience":
        return await site.token("alpha", audience=API)
    if why == "revoked":
        token = await site.token("beta")
        await tokens.revoke(
            site.home, (await tokens.verify(site.home, token, audience=site.mcp)).jti
        )
        return token
    if why == "agent_revoked":
        token = await site.token("beta")
        await identity.revoke_agent(site.home, "beta")
        return token
    if why == "charter_superseded":
        token = await site.token("beta")
        await identity.update_agent(site.home, "beta", scopes=["audit:read"], audiences=[site.mcp])
        return token
    token = await site.token("alpha")
    claims = json.loads(b64url_decode(token.split(".")[1]))
    now = int(time.time())
    forged = {
        "unknown_key": lambda: _forge(site, token, KeyPair.generate()),
        "bad_signature": lambda: token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB"),
        "wrong_issuer": lambda: _forge(site, token, iss="http://127.0.0.1:18766"),
        "expired": lambda: _forge(site, token, iat=now - 100, nbf=now - 100, exp=now - 10),
        "not_yet_valid": lambda: _forge(site, token, nbf=now + 300),
        "not_issued": lambda: _forge(site, token, jti="made-up"),
        # The attack of issue 16.5: the real jti, its times moved on, re-signed.
        "re_signed": lambda: _forge(site, token, exp=claims["exp"] + 600),
    }
    return forged[why]()


@pytest.mark.parametrize(
    ("why", "description"),
    [
        ("malformed", "malformed token"),
        ("unknown_key", "token signed by an unknown key"),
        ("bad_signature", "token signature does not verify"),
        ("wrong_issuer", "token is from another issuer"),
        ("wrong_audience", "token is for another audience"),
        ("expired", "token expired"),
        ("not_yet_valid", "token not yet valid"),
        ("not_issued", "token was not issued by this server"),
        ("re_signed", "token was not issued by this server"),
        ("revoked", "token revoked"),
        ("agent_revoked", "the token's agent has been revoked"),
        ("charter_superseded", "the token's charter has been superseded"),
    ],
)
async def test_a_refused_token_gets_a_401_naming_the_reason(
    site: Site, why: str, description: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = await _refused_token(site, why)
    async with running(site):
        with caplog.at_level(logging.WARNING, logger="charter.http"):
            refused = post_init(site, token)
            introspected = httpx2.post(
                f"{site.issuer}/introspect",
                data={"token": token},
                headers={"Authorization": f"Bearer {SECRET.decode()}"},
            )
    assert refused.status_code == 401
    challenge = refused.headers["www-authenticate"]
    assert challenge == (
        f'Bearer error="invalid_token", error_description="{description}", '
        f'resource_metadata="{site.issuer}/.well-known/oauth-protected-resource/mcp"'
    )
    assert refused.json() == {"error": "invalid_token", "error_description": description}
    assert token not in challenge + refused.text
    if why != "wrong_audience":  # introspection accepts any audience
        assert introspected.json() == {"active": False}  # RFC 7662: nothing more
    logged = [r.getMessage() for r in caplog.records if r.name == "charter.http"]
    assert logged and all(token not in line for line in logged)
    if why not in ("malformed", "unknown_key", "bad_signature"):  # the jti is known
        jti = json.loads(b64url_decode(token.split(".")[1]))["jti"]
        assert any(f"jti {jti!r}" in line for line in logged)


async def test_missing_or_malformed_credentials_follow_rfc_6750(site: Site) -> None:
    metadata = f'resource_metadata="{site.issuer}/.well-known/oauth-protected-resource/mcp"'
    async with running(site):
        missing = post_init(site, None)
        basic = httpx2.post(
            site.mcp, json=INIT, headers=MCP_HEADERS | {"Authorization": "Basic dXNlcjpwdw=="}
        )
        empty = httpx2.post(site.mcp, json=INIT, headers=MCP_HEADERS | {"Authorization": "Bearer"})
        spaced = post_init(site, "two words")
    for answer in (missing, basic):  # no credential: no error code (RFC 6750 3.1)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == f"Bearer {metadata}"
    for answer in (empty, spaced):
        assert answer.status_code == 400
        assert answer.headers["www-authenticate"].startswith('Bearer error="invalid_request"')
        assert answer.json()["error"] == "invalid_request"


async def test_a_revoked_agent_or_token_is_refused_on_the_next_request(site: Site) -> None:
    alpha, beta = await site.token("alpha"), await site.token("beta")
    async with running(site):
        assert post_init(site, alpha).status_code == 200
        assert post_init(site, beta).status_code == 200
        await identity.revoke_agent(site.home, "alpha", reason="compromised")
        await tokens.revoke(
            site.home, (await tokens.verify(site.home, beta, audience=site.mcp)).jti
        )
        assert post_init(site, alpha).status_code == 401
        assert post_init(site, beta).status_code == 401


async def test_a_session_cannot_change_hands(site: Site) -> None:
    """An agent cannot ride another agent's MCP session by sending its session id."""
    alpha, beta = await site.token("alpha"), await site.token("beta")
    async with running(site):
        opened = post_init(site, alpha)
        session = opened.headers["mcp-session-id"]
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        headers = MCP_HEADERS | {"Mcp-Session-Id": session, "Mcp-Protocol-Version": "2025-11-25"}
        hijack = httpx2.post(
            site.mcp, json=call, headers=headers | {"Authorization": f"Bearer {beta}"}
        )
        assert hijack.status_code == 404
        owner = httpx2.post(
            site.mcp, json=call, headers=headers | {"Authorization": f"Bearer {alpha}"}
        )
        assert owner.status_code == 200  # the same request with the session's own agent


async def test_foreign_host_headers_are_refused(site: Site) -> None:
    headers = MCP_HEADERS | {"Authorization": f"Bearer {await site.token('alpha')}"}
    async with running(site):
        rebound = httpx2.post(site.mcp, json=INIT, headers=headers | {"Host": "evil.example"})
        assert rebound.status_code == 421  # DNS-rebinding protection


async def test_the_resolver_rechecks_the_token_at_every_call(site: Site) -> None:
    token = await site.token("alpha", scopes=["audit:read"])
    verifier = CharterTokenVerifier(site.home, site.mcp)
    resolve = TokenAgentResolver(verifier)
    # Authenticated in a request of its own (another context): this one's calls re-verify.
    access = await asyncio.create_task(verifier.verify_token(token))
    assert access is not None
    with pytest.raises(TokenInvalid, match="invalid or expired token"):
        await resolve()  # no token on this request
    handle = auth_context_var.set(AuthenticatedUser(access))
    try:
        agent = await resolve()
        assert agent.name == "alpha" and agent.token_scopes == ("audit:read",)
        assert agent.charter.scopes == ("audit:read", "token:issue")
        assert (await resolve()).key is agent.key  # loaded once, cached
        await tokens.revoke(site.home, access.claims["jti"] if access.claims else "")
        with pytest.raises(TokenInvalid):
            await resolve()
    finally:
        auth_context_var.reset(handle)


async def test_403_when_the_token_lacks_a_required_scope(site: Site) -> None:
    narrow = await site.token("alpha", scopes=["token:issue"])
    wide = await site.token("alpha", scopes=["audit:read"])
    async with running(site, required_scopes=["audit:read"]):
        refused = post_init(site, narrow)
        assert refused.status_code == 403
        assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
        assert refused.json()["error"] == "insufficient_scope"
        assert post_init(site, wide).status_code == 200


# -- calls -----------------------------------------------------------------------------------


async def test_two_agents_on_one_server_land_under_two_identities(site: Site, mode: str) -> None:
    alpha, beta = await site.token("alpha"), await site.token("beta")
    async with running(site), mcp_client(site, alpha, mode) as a, mcp_client(site, beta, mode) as b:
        who_a = (await a.call_tool("identity_whoami", {})).structured_content
        who_b = (await b.call_tool("identity_whoami", {})).structured_content
        who_a_again = (await a.call_tool("identity_whoami", {})).structured_content
    assert who_a is not None and who_b is not None and who_a_again is not None
    assert who_a["agent_id"].endswith("/alpha") and who_b["agent_id"].endswith("/beta")
    assert who_a_again["agent_id"] == who_a["agent_id"]
    calls = [e for e in entries(site.home) if e["action"] == "identity.whoami"]
    keys = {
        "alpha": (await identity.load_agent(site.home, "alpha")).key.kid,
        "beta": (await identity.load_agent(site.home, "beta")).key.kid,
    }
    assert [(e["actor"].rsplit("/", 1)[1], e["kid"]) for e in calls] == [
        ("alpha", keys["alpha"]),
        ("beta", keys["beta"]),
        ("alpha", keys["alpha"]),
    ]
    assert all(e["outcome"] == "ok" for e in calls)
    assert len({e["session"] for e in calls}) == 1  # one server process
    await audit.verify_home(site.home)


async def test_the_token_scope_narrows_what_a_call_may_do(site: Site, mode: str) -> None:
    narrow = await site.token("alpha", scopes=["token:issue"])
    async with running(site), mcp_client(site, narrow, mode) as client:
        query = await client.call_tool("audit_query", {})
        escalate = await client.call_tool(
            "token_issue", {"audience": API, "scopes": ["audit:read"]}
        )
        default = await client.call_tool("token_issue", {"audience": API})
    # The charter grants audit:read; the token does not, so the call may not use it.
    assert query.is_error
    assert text(query) == "the token this call was made with does not grant 'audit:read'"
    assert escalate.is_error
    assert "'audit:read' is not granted by the calling token" in text(escalate)
    assert not default.is_error and default.structured_content is not None
    assert default.structured_content["scopes"] == []  # token scopes minus token:issue
    denied = [e for e in entries(site.home) if e["outcome"] == "denied"]
    assert [e["action"] for e in denied] == ["audit.query", "token.issue"]
    assert all(e["actor"].endswith("/alpha") for e in denied)
    await audit.verify_home(site.home)


async def test_a_token_issued_over_http_is_recorded_without_the_token(site: Site) -> None:
    async with (
        running(site),
        mcp_client(site, await site.token("alpha", scopes=["token:issue"]), "auto") as c,
    ):
        result = await c.call_tool("token_issue", {"audience": API, "ttl_seconds": 60})
    assert not result.is_error and result.structured_content is not None
    issued = result.structured_content["token"]
    assert (await tokens.verify(site.home, issued, audience=API)).subject.endswith("/alpha")
    assert issued not in json.dumps(entries(site.home))


# -- metadata and introspection --------------------------------------------------------------


async def test_jwks_and_metadata_documents(site: Site) -> None:
    async with running(site):
        jwks = httpx2.get(f"{site.issuer}/.well-known/jwks.json").json()
        oidc = httpx2.get(f"{site.issuer}/.well-known/openid-configuration").json()
        oauth = httpx2.get(f"{site.issuer}/.well-known/oauth-authorization-server").json()
        prm = httpx2.get(f"{site.issuer}/.well-known/oauth-protected-resource/mcp").json()
    assert jwks == await tokens.jwks(site.home)
    assert oidc == oauth
    assert oidc["issuer"] == site.issuer
    assert oidc["jwks_uri"] == f"{site.issuer}/.well-known/jwks.json"
    assert oidc["introspection_endpoint"] == f"{site.issuer}/introspect"
    assert oidc["access_token_signing_alg_values_supported"] == ["EdDSA"]
    assert prm["resource"] == site.mcp
    assert prm["authorization_servers"] == [site.issuer]
    assert prm["bearer_methods_supported"] == ["header"]


async def test_introspection_needs_authentication_and_reports_state(site: Site) -> None:
    live = await site.token("beta")
    revoked = await site.token("beta")
    await tokens.revoke(site.home, (await tokens.verify(site.home, revoked, audience=site.mcp)).jti)
    agent_credential = await site.token("alpha")
    url = f"{site.issuer}/introspect"

    def ask(token: str, credential: str | None) -> httpx2.Response:
        headers = {} if credential is None else {"Authorization": f"Bearer {credential}"}
        return httpx2.post(url, data={"token": token}, headers=headers)

    async with running(site):
        anonymous = ask(live, None)
        wrong_secret = ask(live, "guess")
        assert (anonymous.status_code, wrong_secret.status_code) == (401, 401)
        assert "active" not in anonymous.text  # nothing learned without credentials
        active = ask(live, SECRET.decode())
        assert active.status_code == 200 and active.headers["cache-control"] == "no-store"
        info = active.json()
        assert info["active"] is True and info["sub"].endswith("/beta")
        assert info["aud"] == site.mcp and info["scope"] == "audit:read"
        assert ask(live, agent_credential).json()["active"] is True  # an agent token works too
        for inactive in (revoked, "garbage", live[:-4] + "AAAA"):
            assert ask(inactive, SECRET.decode()).json() == {"active": False}
        await identity.revoke_agent(site.home, "beta")
        assert ask(live, SECRET.decode()).json() == {"active": False}
        no_token = httpx2.post(url, data={}, headers={"Authorization": f"Bearer {SECRET.decode()}"})
        assert no_token.status_code == 400
        huge = httpx2.post(
            url,
            content=b"token=" + b"a" * 20_000,
            headers={
                "Authorization": f"Bearer {SECRET.decode()}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        assert huge.status_code == 413


# joserfc warns that RFC 9864 deprecates the polymorphic "EdDSA" name in favour of "Ed25519";
# the issue (and RFC 8037 / most deployed verifiers) call for "EdDSA", so that is what we sign.
@pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")
async def test_interop_a_token_verifies_with_joserfc_given_only_the_served_jwks(site: Site) -> None:
    token = await site.token("alpha", scopes=["audit:read"])
    async with running(site):
        served = httpx2.get(f"{site.issuer}/.well-known/jwks.json").json()
    keys = KeySet.import_key_set(served)
    decoded = jwt.decode(token, keys, algorithms=["EdDSA"])
    assert decoded.header["typ"] == "at+jwt"
    assert decoded.header["kid"] == served["keys"][0]["kid"]
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": site.issuer},
        aud={"essential": True, "value": site.mcp},
        sub={"essential": True},
        jti={"essential": True},
        exp={"essential": True},
        nbf={"essential": True},
        iat={"essential": True},
    ).validate(decoded.claims)
    assert decoded.claims["scope"] == "audit:read"
    header, payload, signature = token.split(".")
    tampered = (
        f"{header}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{signature}"
    )
    with pytest.raises(BadSignatureError):
        jwt.decode(tampered, keys, algorithms=["EdDSA"])


# -- charter serve --http --------------------------------------------------------------------


async def test_serve_refuses_unsafe_or_confused_flags(site: Site) -> None:
    env = {"CHARTER_HOME": str(site.home.settings.home)}

    def serve(*args: str) -> Any:
        return CliRunner().invoke(cli, ["serve", *args], env=env)

    remote = serve("--http", "--host", "0.0.0.0")
    assert remote.exit_code == 2 and "pass --allow-remote" in remote.stderr
    no_issuer = serve("--http", "--host", "10.1.2.3", "--allow-remote")
    assert no_issuer.exit_code == 2 and "needs --issuer" in no_issuer.stderr
    with_agent = serve("--http", "--agent", "alpha")
    assert with_agent.exit_code == 2 and "each token names its agent" in with_agent.stderr
    bad_issuer = serve("--http", "--issuer", "https://x.example/path")
    assert bad_issuer.exit_code == 2 and "must be an origin" in bad_issuer.stderr
    other_issuer = serve("--http", "--issuer", "https://other.example")
    assert other_issuer.exit_code == 2
    assert f"is not this home's issuer ({site.issuer})" in other_issuer.stderr
    assert "charter token issuer set URL" in other_issuer.stderr
    assert await tokens.issuer(site.home) == site.issuer  # nothing was recorded


async def test_charter_serve_http_end_to_end(site: Site) -> None:
    """The real command in a subprocess on a home with no issuer yet: it records its own
    address once (and says so), serves JWKS and MCP."""
    port = site.sock.getsockname()[1]
    site.sock.close()  # the subprocess binds the port itself
    token = await site.token("alpha")
    with transaction(raw_db(site.home)):
        raw_db(site.home).execute("DELETE FROM meta WHERE key = 'issuer'")
    assert await tokens.recorded_issuer(site.home) is None
    env = {"CHARTER_HOME": str(site.home.settings.home), "PATH": os.environ.get("PATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "charter", "serve", "--http", "--port", str(port),
         "--log-level", "INFO"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    lines = _Lines(proc)
    try:
        assert lines.wait_for(f"No issuer was set for this home: recorded {site.issuer}", 60)
        assert lines.wait_for("Uvicorn running on", timeout=60)
        assert httpx2.get(f"{site.issuer}/.well-known/jwks.json").json() == await tokens.jwks(
            site.home
        )
        assert post_init(site, None).status_code == 401
        assert post_init(site, token).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
        lines.close()
    assert await tokens.issuer(site.home) == site.issuer


async def test_a_second_server_on_another_port_leaves_the_issuer_alone(site: Site) -> None:
    """Issue 27.3: a second serve on another port neither changes the home's issuer nor
    makes the first server accept tokens naming another issuer."""
    spare = socket.socket()
    spare.bind(("127.0.0.1", 0))
    port = spare.getsockname()[1]
    spare.close()
    good = await site.token("alpha")
    env = {"CHARTER_HOME": str(site.home.settings.home), "PATH": os.environ.get("PATH", "")}
    async with running(site):
        proc = subprocess.Popen(
            [sys.executable, "-m", "charter", "serve", "--http", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines = _Lines(proc)
        try:
            assert lines.wait_for(f"advertises the home's issuer {site.issuer}", timeout=60)
            second = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:  # the warning comes before uvicorn listens
                try:
                    metadata = httpx2.get(f"{second}/.well-known/openid-configuration").json()
                    break
                except httpx2.ConnectError:
                    assert time.monotonic() < deadline, "the second server did not start"
                    time.sleep(0.1)
            assert metadata["issuer"] == site.issuer
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(15)
            lines.close()
        assert await tokens.issuer(site.home) == site.issuer
        # Even when the owner moves the issuer on purpose, the running server keeps the one
        # it advertises: a token naming another issuer is refused, with the reason.
        assert await tokens.set_issuer(site.home, second)
        elsewhere = await site.token("alpha")
        refused = post_init(site, elsewhere)
        assert refused.status_code == 401
        assert (
            'error_description="token is from another issuer"'
            in (refused.headers["www-authenticate"])
        )
        assert post_init(site, good).status_code == 200


class _Lines:
    """The process's stderr lines, read by a thread (select() on a buffered pipe misses some)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        self.stream = proc.stderr
        self.queue: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.stream:
            self.queue.put(line)

    def wait_for(self, needle: str, timeout: float) -> bool:
        """True once a line holds ``needle``; False at the timeout."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                if needle in self.queue.get(timeout=left):
                    return True
            except queue.Empty:
                return False
        return False

    def close(self) -> None:
        """After the process exited: let the reader reach EOF, then close the pipe."""
        self.thread.join(15)
        self.stream.close()


async def test_a_call_verifies_its_token_once(
    site: Site, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request's authentication verifies the token; the gate's resolver, in the same
    request, uses that result instead of a second verification (one storage read less)."""
    checks: list[str] = []
    real = CharterTokenVerifier.check

    async def counted(self: CharterTokenVerifier, token: str) -> tokens.VerifiedToken:
        checks.append(sys._getframe(1).f_code.co_qualname)  # who verifies
        return await real(self, token)

    monkeypatch.setattr(CharterTokenVerifier, "check", counted)
    token = await site.token("alpha")
    async with running(site), mcp_client(site, token, mode) as client:
        checks.clear()
        result = await client.call_tool("identity_whoami", {})
        assert not result.is_error
        assert checks and set(checks) == {"CharterTokenVerifier.verify_token"}, checks
