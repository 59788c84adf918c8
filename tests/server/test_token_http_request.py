"""``token_http_request`` (issue 20 item 4): an outbound request with a fresh DPoP-bound token
and a proof by the agent's key, both made server-side, the model seeing neither.

The relying party is the documented Starlette snippet of docs/DPOP.md, served by uvicorn and
checking the token against a running Charter server's JWKS and the proof with Charter's
checker. A thin recorder in front of it keeps what arrived (for the test's own checks) and
answers ``/echo`` with the request's credentials, raw and base64-encoded, as a careless
service might.
"""

from __future__ import annotations

import base64
import json
import socket
import sqlite3
import types
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from httpthread import serving
from mcp import Client
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from charter.config import Settings
from charter.evidence.entries import Entry
from charter.evidence.jwk import b64url_decode, thumbprint
from charter.home import Home
from charter.server.http import build_http_app
from charter.testing import make_home, on_postgresql, other_db, raw_tx, server_for
from charter.tools import identity, tokens
from charter.tools.tokens.proof import ProofRequired

DOC = Path(__file__).resolve().parents[2] / "docs" / "DPOP.md"


def snippet_app(issuer: str, audience: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The Starlette app of docs/DPOP.md's one Python block, run as written."""
    import re

    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1
    monkeypatch.setenv("CHARTER_ISSUER", issuer)
    monkeypatch.setenv("SERVICE_AUDIENCE", audience)
    module = types.ModuleType("dpop_snippet")
    exec(compile(blocks[0], str(DOC), "exec"), module.__dict__)
    return module.app


def free_socket() -> tuple[socket.socket, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@dataclass
class Service:
    home: Home
    url: str
    #: The headers of each request that reached the service, and the last intent entry in
    #: the ledger at that moment.
    seen: list[dict[str, str]] = field(default_factory=list)
    intents: list[dict[str, Any] | None] = field(default_factory=list)

    def last_intent(self) -> dict[str, Any] | None:
        """Read from another connection, as the relying party's side of the world would."""
        conn: Any = (
            other_db(self.home)
            if on_postgresql()
            else sqlite3.connect(f"file:{self.home.layout.db}?mode=ro", uri=True)
        )
        try:
            row = conn.execute(
                "SELECT body FROM ledger WHERE phase='intent' ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        finally:
            conn.close()
        return None if row is None else Entry.from_body(bytes(row[0])).fields


@pytest.fixture
async def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Service]:
    charter_sock, issuer = free_socket()
    service_sock, service_url = free_socket()
    home = await make_home(tmp_path / "home")  # the real clock: the relying party uses it
    await tokens.set_issuer(home, issuer)
    await identity.add_agent(
        home, "bot", scopes=["token:issue", "audit:read"], audiences=[service_url]
    )
    await identity.add_agent(home, "plain", scopes=["audit:read"], audiences=[service_url])
    svc = Service(home, service_url)
    relying_party = snippet_app(issuer, service_url, monkeypatch)

    async def recorder(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            svc.seen.append(headers)
            svc.intents.append(svc.last_intent())
            if scope["path"] == "/echo":
                echoed = headers.get("authorization", "") + " " + headers.get("dpop", "")
                answer = {
                    "raw": echoed,
                    "b64": base64.b64encode(echoed.encode()).decode(),
                }
                await JSONResponse(answer, headers={"X-Echo": echoed})(scope, receive, send)
                return
        await relying_party(scope, receive, send)

    server_home = await Home.open(Settings(home=home.settings.home))
    try:
        with (
            serving(build_http_app(server_home, issuer_url=issuer), charter_sock),
            serving(recorder, service_sock),
        ):
            yield svc
    finally:
        await server_home.close()
        await home.close()
        charter_sock.close()
        service_sock.close()


async def call(home: Home, args: dict[str, Any], agent: str = "bot") -> Any:
    async with Client(await server_for(home, agent), mode="auto") as client:
        return await client.call_tool("token_http_request", args)


def text_of(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


def ledger_text(home: Home) -> str:
    return "\n".join(b.decode("utf-8", "replace") for b in raw_tx(home).ledger.iter_bodies())


async def test_the_relying_party_accepts_it_and_the_model_never_sees_the_token(
    service: Service,
) -> None:
    result = await call(
        service.home,
        {
            "audience": service.url,
            "method": "POST",
            "url": service.url + "/things",
            "scopes": ["audit:read"],
        },
    )
    assert not result.is_error, text_of(result)
    out = result.structured_content
    assert out["status"] == 200, out
    # The documented relying party verified the token (JWKS, aud, iss) and the proof.
    agent = await identity.get_agent(service.home, "bot")
    assert json.loads(out["body"]) == {"agent": agent.agent_id, "scope": "audit:read"}
    # What was sent: a DPoP token bound to the agent's own key, with a proof by that key.
    sent = service.seen[-1]
    scheme, _, token = sent["authorization"].partition(" ")
    assert scheme == "DPoP"
    claims = json.loads(b64url_decode(token.split(".")[1]))
    bot = await identity.load_agent(service.home, "bot")
    assert claims["cnf"] == {"jkt": thumbprint(bot.key.public_key)}
    assert claims["jti"] == out["token_jti"] and claims["exp"] - claims["iat"] == 60
    proof_header = json.loads(b64url_decode(sent["dpop"].split(".")[0]))
    assert proof_header["alg"] == "EdDSA" and proof_header["jwk"] == bot.key.jwk()
    verified = await tokens.verify(service.home, token, audience=service.url)
    assert verified.token_type == "DPoP"
    with pytest.raises(ProofRequired):  # bound: useless as a bearer token
        tokens.require_proof(verified)
    # The intent was in the ledger before the request left, naming the token, not holding it.
    intent = service.intents[-1]
    assert intent is not None and intent["action"] == "token.http_request"
    details = intent["args"]["details"]
    assert details["jti"] == out["token_jti"] and details["dpop_jkt"] == claims["cnf"]["jkt"]
    assert (details["method"], details["host"], details["ttl_seconds"]) == (
        "POST",
        "127.0.0.1",
        60,
    )
    # Neither the token (nor its signature) nor the proof is in the result or the ledger.
    signature = token.rpartition(".")[2]
    for where in (text_of(result), json.dumps(out), ledger_text(service.home)):
        for secret in (token, signature, sent["dpop"]):
            assert secret not in where


async def test_an_echoed_token_or_proof_comes_back_redacted(service: Service) -> None:
    result = await call(
        service.home, {"audience": service.url, "method": "GET", "url": service.url + "/echo"}
    )
    assert not result.is_error, text_of(result)
    out = result.structured_content
    sent = service.seen[-1]
    token, proof = sent["authorization"].partition(" ")[2], sent["dpop"]
    body = json.loads(out["body"])
    assert body["raw"] == "DPoP [REDACTED:token] [REDACTED:dpop_proof]"
    decoded = base64.b64decode(body["b64"]) if "[REDACTED" not in body["b64"] else b""
    assert token.encode() not in decoded
    echo_header = next(h["value"] for h in out["headers"] if h["name"].lower() == "x-echo")
    assert echo_header == "DPoP [REDACTED:token] [REDACTED:dpop_proof]"
    everything = json.dumps(out) + text_of(result) + ledger_text(service.home)
    for secret in (token, token.rpartition(".")[2], proof):
        assert secret not in everything


@pytest.mark.parametrize(
    ("args", "why"),
    [
        ({"url": "http://127.0.0.2:9/things"}, "not on the audience"),
        ({"url": "https://example.com/things"}, "not on the audience"),
        ({"audience": "https://elsewhere.example", "url": "https://elsewhere.example/"}, "not"),
        ({"headers": {"Authorization": "Bearer x"}}, "may not be set"),
        ({"headers": {"DPoP": "x"}}, "may not be set"),
        ({"url": "{base}/a/%2e%2e/x"}, "'..'"),
        ({"scopes": ["email:send"]}, "not granted"),
    ],
)
async def test_a_request_outside_the_charter_is_refused_before_any_intent(
    service: Service, args: dict[str, Any], why: str
) -> None:
    before = raw_tx(service.home).ledger.head()
    full = {"audience": service.url, "method": "GET", "url": service.url + "/things"} | args
    full["url"] = full["url"].replace("{base}", service.url)
    result = await call(service.home, full)
    assert result.is_error and why in text_of(result), text_of(result)
    assert "Traceback" not in text_of(result)
    assert not service.seen  # nothing left Charter
    bodies = list(raw_tx(service.home).ledger.iter_bodies())[before[0] :]
    assert all(Entry.from_body(b).fields["phase"] != "intent" for b in bodies)


async def test_the_tool_needs_token_issue(service: Service) -> None:
    result = await call(
        service.home,
        {"audience": service.url, "method": "GET", "url": service.url + "/things"},
        agent="plain",
    )
    assert result.is_error and "token:issue" in text_of(result)
    assert not service.seen


@pytest.mark.parametrize(
    ("audience", "url", "refused"),
    [
        ("https://api.example.com/v1", "https://api.example.com/v1/things", None),
        ("https://api.example.com/v1/", "https://api.example.com/v1", None),
        ("https://api.example.com", "https://API.example.com:443/x#frag", None),
        ("https://api.example.com/v1", "https://api.example.com/v1x", "not under"),
        ("https://api.example.com/v1", "https://api.example.com/", "not under"),
        ("https://api.example.com", "http://api.example.com/", "not on the audience"),
        ("https://api.example.com", "https://api.example.com:8443/", "not on the audience"),
        ("https://api.example.com", "https://u:p@api.example.com/", "user info"),
        ("http://api.example.com", "http://api.example.com/", "only sent over https"),
        ("urn:example:api", "https://api.example.com/", "not an http(s) URL"),
    ],
)
def test_the_url_must_be_under_the_audience(audience: str, url: str, refused: str | None) -> None:
    from charter.errors import CharterError
    from charter.tools.tokens.outbound import _check_url

    if refused is None:
        assert _check_url(audience, url).fragment == ""
        return
    with pytest.raises(CharterError) as caught:
        _check_url(audience, url)
    assert refused in str(caught.value)
