"""secret_* tools end to end: a real MCP client, a real vault, a real HTTP server on loopback."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import logging
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from charter.evidence.entries import Entry
from charter.home import Home
from charter.server.deps import Deps
from charter.server.wiring import build_server
from charter.storage.backends import database_contains
from charter.testing import FrozenClock, other_db, raw_db, raw_tx, server_for
from charter.tools import audit, identity
from charter.tools import vault as vault_tools
from charter.tools.vault import http as vault_http

CANARY = "canary-7f3a9c1e5b2d4f60-s3cr3t/+="
OTHER = "other-0d9e8c7b6a5f4e3d"


# -- a real HTTP server on 127.0.0.1 --------------------------------------------------------


@dataclass
class Seen:
    """One request the server received."""

    method: str
    host: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class EchoServer:
    """``/echo`` reflects the request (headers and body, so secrets come back), ``/b64``
    returns ``user:<Authorization>`` base64-encoded, ``/redirect?to=URL[&code=N]`` redirects,
    ``/loop`` redirects to itself, ``/big?n=N&at=K`` sends N bytes with the Authorization
    value at offset K, ``/hang`` answers only when released.
    """

    port: int
    seen: list[Seen] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    #: Called as each request arrives; its results are kept in ``probes``.
    probe: Callable[[], Any] | None = None
    probes: list[Any] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def _handler(state: EchoServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Silent: the test reads the server's records, not its log."""

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            state.seen.append(
                Seen(self.command, self.headers["Host"], self.path, dict(self.headers), body)
            )
            if state.probe is not None:
                state.probes.append(state.probe())
            auth = self.headers.get("Authorization", "")
            if url.path == "/echo":
                echo = {"path": self.path, "headers": dict(self.headers), "body": body.decode()}
                self._reply(200, json.dumps(echo).encode(), {"X-Echo-Auth": auth})
            elif url.path == "/b64":
                self._reply(200, base64.b64encode(f"user:{auth}".encode()), {})
            elif url.path == "/redirect":
                self._reply(int(query.get("code", "302")), b"", {"Location": query["to"]})
            elif url.path == "/redirect-echo":  # the secret comes back inside a Location
                self._reply(302, b"", {"Location": query["to"] + urllib.parse.quote(auth)})
            elif url.path == "/loop":
                self._reply(302, b"", {"Location": "/loop"})
            elif url.path == "/big":
                n, at = int(query["n"]), int(query["at"])
                data = (b"x" * at + auth.encode() + b"y" * n)[:n]
                self._reply(200, data, {"Content-Type": "text/plain"})
            elif url.path == "/reflect":  # the body back, padded, transformed or encoded
                self._reflect(body, query)
            elif url.path == "/hang":
                state.release.wait(10)
                self._reply(200, b"late", {})
            else:
                self._reply(404, b"not found", {})

        def _reflect(self, body: bytes, query: dict[str, str]) -> None:
            data = b"x" * int(query.get("pad", "0")) + _transform(body, query.get("how", ""))
            headers = {"Content-Type": "text/plain"}
            if "enc" in query:  # gzip, but declared as `enc` (which the client may not decode)
                data, headers["Content-Encoding"] = gzip.compress(data), query["enc"]
            self._reply(200, data, headers)

        def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler


def _transform(body: bytes, how: str) -> bytes:
    """How a reflecting server may re-encode what it echoes."""
    text = body.decode()
    if how == "pct-upper":
        return "".join(f"%{b:02X}" for b in body).encode()
    if how == "pct-lower":
        return "".join(f"%{b:02x}" for b in body).encode()
    if how == "pct-mixed":  # every other byte encoded
        return "".join(f"%{b:02x}" if i % 2 else chr(b) for i, b in enumerate(body)).encode()
    if how == "json-u":  # every character as \uXXXX
        return "".join(f"\\u{ord(c):04X}" for c in text).encode()
    if how == "go-html":  # Go's encoding/json: < > & as \u003c \u003e \u0026
        quoted = json.dumps(text)[1:-1]
        for c in "<>&":
            quoted = quoted.replace(c, f"\\u{ord(c):04x}")
        return quoted.encode()
    return body


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    state = EchoServer(port=0)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield state
    state.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
async def vhome(home: Home) -> Home:
    """The home with secrets API_KEY (canary, on 127.0.0.1), OTHER_KEY and agent ``gamma``."""
    await vault_tools.set_secret(
        home, "API_KEY", CANARY.encode(), description="test API", allowed_hosts=["127.0.0.1"]
    )
    await vault_tools.set_secret(home, "OTHER_KEY", OTHER.encode(), allowed_hosts=["example.com"])
    await identity.add_agent(home, "gamma", scopes=["secret:use:API_*", "secret:read:OTHER_KEY"])
    return home


def entries(home: Home) -> list[dict[str, Any]]:
    return [Entry.from_body(b).fields for b in raw_tx(home).ledger.iter_bodies()]


async def call(home: Home, mode: str, tool: str, args: dict[str, Any], agent: str = "gamma") -> Any:
    async with Client(await server_for(home, agent), mode=mode) as client:
        return await client.call_tool(tool, args)


def text_of(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


# -- tests ----------------------------------------------------------------------------------


async def test_http_request_injects_the_secret_and_redacts_the_echo(
    vhome: Home, echo: EchoServer, mode: str
) -> None:
    result = await call(
        vhome,
        mode,
        "secret_http_request",
        {
            "method": "POST",
            "url": echo.url("/echo?key={{secret:API_KEY}}"),
            "headers": {"Authorization": "Bearer {{secret:API_KEY}}"},
            "body": '{"token": "{{secret:API_KEY}}"}',
        },
    )
    assert not result.is_error, text_of(result)
    seen = echo.seen[-1]
    assert seen.headers["Authorization"] == f"Bearer {CANARY}"
    assert seen.body == f'{{"token": "{CANARY}"}}'.encode()
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(seen.path).query)["key"] == [CANARY]
    out = result.structured_content
    assert out["status"] == 200
    assert CANARY not in json.dumps(out) and CANARY not in text_of(result)
    assert "[REDACTED:API_KEY]" in out["body"]
    assert {"name": "X-Echo-Auth", "value": "Bearer [REDACTED:API_KEY]"} in out["headers"]
    assert out["secrets_used"] == ["API_KEY@1"]
    await audit.verify_home(vhome)


async def test_the_intent_is_committed_before_the_request_and_holds_no_value(
    vhome: Home, echo: EchoServer, mode: str
) -> None:
    db = vhome.layout.db

    def last_intent() -> dict[str, Any] | None:
        pg = vhome.settings.database_url is not None
        conn = other_db(vhome) if pg else sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            row = conn.execute(
                "SELECT body FROM ledger WHERE phase='intent' ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        finally:
            conn.close()
        return None if row is None else Entry.from_body(bytes(row[0])).fields

    echo.probe = last_intent
    result = await call(
        vhome,
        mode,
        "secret_http_request",
        {"method": "GET", "url": echo.url("/echo"), "headers": {"X-Key": "{{secret:API_KEY}}"}},
    )
    assert not result.is_error, text_of(result)
    seen_intent = echo.probes[0]
    assert seen_intent is not None and seen_intent["action"] == "secret.http_request"
    assert seen_intent["args"]["details"] == {
        "secrets": [{"name": "API_KEY", "version": 1}],
        "method": "GET",
        "scheme": "http",
        "host": "127.0.0.1",
        "port": echo.port,
    }
    assert seen_intent["args"]["method"] == "GET"
    for hashed in ("url", "headers"):
        assert set(seen_intent["args"][hashed]) == {"sha256"}
    outcome = entries(vhome)[-1]
    assert (outcome["phase"], outcome["outcome"]) == ("outcome", "ok")
    intent = Entry.from_body(list(raw_tx(vhome).ledger.iter_bodies())[-2])
    assert intent.fields == seen_intent
    assert outcome["args"]["intent"] == intent.hash
    assert outcome["args"]["details"]["status"] == 200
    await audit.verify_home(vhome)


async def test_a_host_outside_the_allowlist_is_refused_and_nothing_is_sent(
    vhome: Home, echo: EchoServer, mode: str
) -> None:
    result = await call(
        vhome,
        mode,
        "secret_http_request",
        {"method": "GET", "url": echo.url("/echo/{{secret:API_KEY}}", host="localhost")},
    )
    assert result.is_error
    assert "may not be sent to 'localhost'" in text_of(result)
    assert echo.seen == []
    last = entries(vhome)[-1]
    assert (last["phase"], last["outcome"]) == ("call", "denied")
    await audit.verify_home(vhome)


async def test_a_missing_use_scope_is_refused(vhome: Home, echo: EchoServer, mode: str) -> None:
    result = await call(
        vhome,
        mode,
        "secret_http_request",
        {"method": "GET", "url": echo.url("/echo/{{secret:OTHER_KEY}}")},
    )
    assert result.is_error
    assert "does not grant 'secret:use:OTHER_KEY'" in text_of(result)
    assert echo.seen == []


async def test_a_redirect_on_the_same_host_is_followed(
    vhome: Home, echo: EchoServer, mode: str
) -> None:
    result = await call(
        vhome,
        mode,
        "secret_http_request",
        {
            "method": "GET",
            "url": echo.url("/redirect?to=/echo"),
            "headers": {"Authorization": "{{secret:API_KEY}}"},
        },
    )
    out = result.structured_content
    assert out["status"] == 200 and out["redirects"] == 1 and out["redirect_refused"] is None
    assert [s.path for s in echo.seen] == ["/redirect?to=/echo", "/echo"]
    assert all(s.headers["Authorization"] == CANARY for s in echo.seen)
    assert CANARY not in json.dumps(out)


@pytest.mark.parametrize("code", [302, 307])
async def test_a_redirect_to_another_host_is_not_followed(
    vhome: Home, echo: EchoServer, mode: str, code: int
) -> None:
    elsewhere = echo.url("/echo", host="localhost")
    result = await call(
        vhome,
        mode,
        "secret_http_request",
        {
            "method": "POST",
            "url": echo.url(f"/redirect?code={code}&to={urllib.parse.quote(elsewhere)}"),
            "headers": {"Authorization": "{{secret:API_KEY}}"},
            "body": "{{secret:API_KEY}}",
        },
    )
    out = result.structured_content
    assert out["status"] == code and out["redirects"] == 0
    assert "leaves the hosts" in out["redirect_refused"]
    assert {"name": "Location", "value": elsewhere} in out["headers"]
    assert len(echo.seen) == 1 and all(s.host.startswith("127.0.0.1") for s in echo.seen)
    assert entries(vhome)[-1]["args"]["details"]["redirect_refused"] is True


async def test_redirects_stop_after_five(vhome: Home, echo: EchoServer, mode: str) -> None:
    result = await call(
        vhome,
        mode,
        "secret_http_request",
        {"method": "GET", "url": echo.url("/loop?k={{secret:API_KEY}}")},
    )
    out = result.structured_content
    assert out["status"] == 302 and out["redirects"] == 5
    assert out["redirect_refused"] == "more than 5 redirects"
    assert len(echo.seen) == 6


async def test_an_oversized_response_is_truncated_and_never_ends_in_a_partial_secret(
    vhome: Home, echo: EchoServer, mode: str
) -> None:
    cap = vault_tools.MAX_RESPONSE_BYTES
    result = await call(
        vhome,
        mode,
        "secret_http_request",
        {
            "method": "GET",
            "url": echo.url(f"/big?n={cap + 4096}&at={cap - 10}"),
            "headers": {"Authorization": "{{secret:API_KEY}}"},
        },
    )
    out = result.structured_content
    assert out["truncated"] is True
    body = out["body"]
    assert len(body) == cap - 10 and set(body) == {"x"}  # the 10 secret bytes were cut
    assert CANARY[:10] not in body


async def test_an_unreachable_host_is_a_clear_error_after_the_intent(
    vhome: Home, mode: str
) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await call(
        vhome,
        mode,
        "secret_http_request",
        {"method": "GET", "url": f"http://127.0.0.1:{port}/{{{{secret:API_KEY}}}}"},
    )
    assert result.is_error
    assert text_of(result) == "could not connect to 127.0.0.1"
    last = entries(vhome)[-1]
    assert (last["phase"], last["outcome"]) == ("outcome", "error")
    await audit.verify_home(vhome)


async def test_a_slow_server_is_cut_off_at_the_deadline(
    vhome: Home, echo: EchoServer, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vault_http, "TOTAL_TIMEOUT", 0.3)
    result = await call(
        vhome,
        mode,
        "secret_http_request",
        {"method": "GET", "url": echo.url("/hang?k={{secret:API_KEY}}")},
    )
    assert result.is_error
    assert "timed out" in text_of(result)


async def test_secret_get_reveals_only_with_the_read_scope(vhome: Home, mode: str) -> None:
    got = await call(vhome, mode, "secret_get", {"name": "OTHER_KEY"})
    assert not got.is_error, text_of(got)
    out = got.structured_content
    assert (out["name"], out["version"], out["value"], out["encoding"]) == (
        "OTHER_KEY",
        1,
        OTHER,
        "utf-8",
    )
    intent, outcome = entries(vhome)[-2:]
    assert intent["action"] == "secret.read" and intent["phase"] == "intent"
    assert intent["args"]["details"] == {"name": "OTHER_KEY", "version": 1}
    assert outcome["outcome"] == "ok"
    denied = await call(vhome, mode, "secret_get", {"name": "API_KEY"})  # use, not read
    assert denied.is_error
    assert "does not grant 'secret:read:API_KEY'" in text_of(denied)
    assert CANARY not in text_of(denied)
    await audit.verify_home(vhome)


async def test_secret_list_shows_granted_names_only(vhome: Home, mode: str) -> None:
    result = await call(vhome, mode, "secret_list", {})
    secrets = {s["name"]: s for s in result.structured_content["secrets"]}
    assert set(secrets) == {"API_KEY", "OTHER_KEY"}
    assert secrets["API_KEY"]["allowed_hosts"] == ["127.0.0.1"]
    assert secrets["API_KEY"]["can_use"] and not secrets["API_KEY"]["can_read"]
    assert secrets["OTHER_KEY"]["can_read"] and not secrets["OTHER_KEY"]["can_use"]
    nothing = await call(vhome, mode, "secret_list", {}, agent="beta")
    assert nothing.structured_content == {"secrets": []}


async def test_secret_list_is_narrowed_by_the_calling_token(vhome: Home, mode: str) -> None:
    """Over HTTP a bearer token may grant less than the charter: the list shows only what the
    token allows (names, hosts and flags of the others stay hidden)."""
    gamma = await identity.load_agent(vhome, "gamma")
    narrowed = dataclasses.replace(gamma, token_scopes=("secret:read:OTHER_KEY",))

    async def resolve() -> identity.AgentContext:
        return narrowed

    server = build_server(Deps(home=vhome, resolve_agent=resolve))
    async with Client(server, mode=mode) as client:
        result = await client.call_tool("secret_list", {})
    listed = result.structured_content["secrets"]
    assert [(s["name"], s["can_read"], s["can_use"]) for s in listed] == [
        ("OTHER_KEY", True, False)
    ]
    assert listed[0]["allowed_hosts"] == []


async def test_a_tampered_row_or_wrong_key_fails_closed_through_the_tools(
    vhome: Home, echo: EchoServer, mode: str
) -> None:
    raw_db(vhome).execute(
        "UPDATE vault_versions SET ciphertext = (SELECT ciphertext FROM vault_versions"
        " WHERE name = 'OTHER_KEY') WHERE name = 'API_KEY'"
    )
    result = await call(
        vhome,
        mode,
        "secret_http_request",
        {"method": "GET", "url": echo.url("/{{secret:API_KEY}}")},
    )
    assert result.is_error and "failed authentication" in text_of(result)
    assert echo.seen == []
    key_file = vhome.layout.keys / "vault.key"
    doc = json.loads(key_file.read_text())
    doc["key"] = doc["key"][::-1]
    key_file.write_text(json.dumps(doc))
    got = await call(vhome, mode, "secret_get", {"name": "OTHER_KEY"})
    assert got.is_error and "wrong vault master key" in text_of(got)
    assert OTHER not in text_of(got)
    await audit.verify_home(vhome)


async def test_the_canary_secret_never_leaks(
    vhome: Home,
    echo: EchoServer,
    mode: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """The value appears in secret_get's result and nowhere else: not in the database or its
    WAL, the ledger or its export, the logs, stderr, any other result or any error."""
    caplog.set_level(logging.DEBUG)
    await identity.update_agent(
        vhome, "gamma", scopes=["secret:use:API_*", "secret:read:API_KEY", "audit:read"]
    )
    closed_port = echo.port + 1 if echo.port < 65535 else echo.port - 1
    auth = {"Authorization": "Bearer {{secret:API_KEY}}"}
    calls: list[tuple[str, dict[str, Any]]] = [
        ("secret_list", {}),
        (
            "secret_http_request",
            {
                "method": "POST",
                "url": echo.url("/echo?k={{secret:API_KEY}}"),
                "headers": auth,
                "body": "token={{secret:API_KEY}}",
            },
        ),
        ("secret_http_request", {"method": "GET", "url": echo.url("/b64"), "headers": auth}),
        (
            "secret_http_request",
            {
                "method": "GET",
                "url": echo.url(
                    "/redirect-echo?to=" + urllib.parse.quote(echo.url("/?k=", "localhost"))
                ),
                "headers": auth,
            },
        ),
        (
            "secret_http_request",
            {"method": "GET", "url": echo.url("/{{secret:API_KEY}}", "localhost")},
        ),
        ("secret_http_request", {"method": "GET", "url": echo.url("/{{secret:API_NOPE}}")}),
        (
            "secret_http_request",
            {"method": "GET", "url": f"http://127.0.0.1:{closed_port}/?k={{{{secret:API_KEY}}}}"},
        ),
        ("secret_get", {"name": "API_NOPE"}),
        (
            "secret_http_request",
            {"method": "GET", "url": echo.url("/big?n=100&at=3"), "headers": auth},
        ),
    ]
    results = []
    async with Client(await server_for(vhome, "gamma"), mode=mode) as client:
        for tool, args in calls:
            results.append(await client.call_tool(tool, args))
        revealed = await client.call_tool("secret_get", {"name": "API_KEY"})
        results.append(await client.call_tool("audit_query", {"limit": 200}))
    assert revealed.structured_content["value"] == CANARY  # the one place it may appear
    assert len(echo.seen) == 4 and all(CANARY in json.dumps(s.headers) for s in echo.seen)
    assert sum(r.is_error for r in results) == 4  # host, unknown name, unreachable, no scope

    raw = CANARY.encode()
    forms = [raw, base64.b64encode(raw), urllib.parse.quote(raw, safe="").encode()]

    def assert_clean(where: str, data: bytes) -> None:
        for form in forms:
            assert form not in data, f"the secret leaked into {where}"

    for (tool, _), result in zip([*calls, ("audit_query", {})], results, strict=True):
        blob = json.dumps(result.structured_content) + text_of(result)
        assert_clean(f"the result of {tool}", blob.encode())
    assert_clean("the logs", caplog.text.encode())
    captured = capfd.readouterr()
    assert_clean("stdout/stderr", (captured.out + captured.err).encode())
    ledger = b"".join(raw_tx(vhome).ledger.iter_bodies())
    assert b"secret.read" in ledger and b"secret.http_request" in ledger
    assert_clean("the ledger", ledger)
    await audit.export(vhome, tmp_path / "export")
    exported = [p for p in (tmp_path / "export").rglob("*") if p.is_file()]
    assert exported
    for path in exported:
        assert_clean(f"the export ({path.name})", path.read_bytes())
    files = {p.name: p for p in vhome.layout.root.rglob("*") if p.is_file()}
    if vhome.settings.database_url is None:
        assert {"charter.db", "charter.db-wal", "vault.key"} <= set(files)
    else:  # PostgreSQL: every text and bytea column of every table
        assert "vault.key" in files
        for form in forms:
            assert not await database_contains(vhome.store, form), "the secret leaked into rows"
    for name, path in files.items():
        assert_clean(name, path.read_bytes())
    await audit.verify_home(vhome)


async def test_owner_approval_policy_applies_to_secret_get(vhome: Home, mode: str) -> None:
    """The vault tools check scopes through the gate, so approval policy catches them."""
    await identity.add_agent(
        vhome,
        "guarded",
        scopes=["secret:read:OTHER_KEY"],
        policy={"approvals": [{"pattern": "secret:read:*", "mode": "owner"}]},
    )
    result = await call(vhome, mode, "secret_get", {"name": "OTHER_KEY"}, agent="guarded")
    assert result.is_error
    assert "approval pending" in text_of(result)
    assert OTHER not in text_of(result)
    await audit.verify_home(vhome)


async def test_owner_approval_policy_applies_to_secret_http_request(
    vhome: Home, echo: EchoServer, mode: str
) -> None:
    await identity.add_agent(
        vhome,
        "guarded",
        scopes=["secret:use:API_KEY"],
        policy={"approvals": [{"pattern": "secret:use:*", "mode": "owner"}]},
    )
    result = await call(
        vhome,
        mode,
        "secret_http_request",
        {"method": "GET", "url": echo.url("/echo"), "headers": {"X-Key": "{{secret:API_KEY}}"}},
        agent="guarded",
    )
    assert result.is_error
    assert "approval pending" in text_of(result)
    assert echo.seen == []  # nothing was sent


async def test_the_ledger_holds_no_hash_of_a_revealed_value(vhome: Home, mode: str) -> None:
    """A result hash of `secret_get` would be an offline oracle for guessing the value."""
    from charter.server.calls import hash_value

    result = await call(vhome, mode, "secret_get", {"name": "OTHER_KEY"})
    assert not result.is_error, text_of(result)
    outcome = entries(vhome)[-1]
    assert (outcome["action"], outcome["phase"]) == ("secret.read", "outcome")
    assert outcome["result_hash"] is None
    revealed = hash_value(result.structured_content)
    assert all(revealed not in json.dumps(e) for e in entries(vhome))


# -- issue 16: the vault's holes ------------------------------------------------------------


async def test_the_cut_of_an_oversized_reflection_is_no_prefix_oracle(
    vhome: Home, echo: EchoServer, mode: str
) -> None:
    """A guess the host reflects exactly at the cap is cut the same way whether or not it is
    the beginning of the secret (before the fix a prefix was cut, so the body's length
    confirmed it one character at a time)."""
    cap = vault_tools.MAX_RESPONSE_BYTES
    lengths = {}
    for guess in (CANARY[:4], CANARY[:1] + "zzz", "zzzz"):
        result = await call(
            vhome,
            mode,
            "secret_http_request",
            {
                "method": "POST",
                "url": echo.url(f"/reflect?pad={cap - 4}"),
                "headers": {"Authorization": "{{secret:API_KEY}}"},
                "body": guess + "z" * 4096,
            },
        )
        out = result.structured_content
        assert out["truncated"] is True, text_of(result)
        lengths[guess] = len(out["body"])
    assert set(lengths.values()) == {cap}, lengths
    await audit.verify_home(vhome)


async def test_an_undecodable_content_encoding_never_returns_the_value(
    vhome: Home, echo: EchoServer, mode: str
) -> None:
    """The host reflects the secret gzip-compressed but labelled `br` (which the client does
    not decode): before the fix the compressed bytes came back unredacted."""
    for enc in ("br", "zstd", "x-unknown", "gzip, br"):
        result = await call(
            vhome,
            mode,
            "secret_http_request",
            {
                "method": "POST",
                "url": echo.url(f"/reflect?enc={enc}"),
                "body": "{{secret:API_KEY}}",
            },
        )
        assert result.is_error, enc
        assert "cannot decode" in text_of(result)
        blob = json.dumps(result.structured_content) + text_of(result)
        assert CANARY not in blob and "H4sI" not in blob  # no gzip stream, in any form
        last = entries(vhome)[-1]
        assert (last["phase"], last["outcome"]) == ("outcome", "error")
    # gzip, sent although Charter asks for none, is decoded, then redacted; its compressed
    # length is not shown (it would tell a guess next to the value from a wrong one).
    result = await call(
        vhome,
        mode,
        "secret_http_request",
        {"method": "POST", "url": echo.url("/reflect?enc=gzip"), "body": "k={{secret:API_KEY}}"},
    )
    out = result.structured_content
    assert out["body"] == "k=[REDACTED:API_KEY]"
    assert "content-length" not in {h["name"].lower() for h in out["headers"]}
    assert all(s.headers["Accept-Encoding"] == "identity" for s in echo.seen)
    await audit.verify_home(vhome)


async def test_an_agent_may_not_set_accept_encoding(
    vhome: Home, echo: EchoServer, mode: str
) -> None:
    result = await call(
        vhome,
        mode,
        "secret_http_request",
        {
            "method": "GET",
            "url": echo.url("/echo"),
            "headers": {"Accept-Encoding": "br", "X-Key": "{{secret:API_KEY}}"},
        },
    )
    assert result.is_error and "may not be set" in text_of(result)
    assert echo.seen == []


@pytest.mark.parametrize("how", ["pct-upper", "pct-lower", "pct-mixed", "json-u", "go-html"])
async def test_percent_encoded_and_json_escaped_reflections_are_redacted(
    vhome: Home, echo: EchoServer, mode: str, how: str
) -> None:
    value = "a<b>c&d=0123/x+y z-9f8e7d6c"
    await vault_tools.set_secret(vhome, "API_HTML", value.encode(), allowed_hosts=["127.0.0.1"])
    result = await call(
        vhome,
        mode,
        "secret_http_request",
        {"method": "POST", "url": echo.url(f"/reflect?how={how}"), "body": "{{secret:API_HTML}}"},
    )
    body = result.structured_content["body"]
    assert body == "[REDACTED:API_HTML]", how
    assert echo.seen[-1].body == value.encode()


@pytest.mark.parametrize(
    "where",
    ["url-raw", "url-percent", "body-raw", "body-json-u", "header", "url-periodic"],
)
async def test_a_guessed_value_is_refused_recorded_and_blocks_the_agent(
    vhome: Home, echo: EchoServer, mode: str, where: str
) -> None:
    """The agent writes guesses into its own request; the right one is never sent (so the
    echo's redaction cannot confirm it), the refusal is recorded, and the agent is blocked
    from the secret, so the refusal is the last thing it learns about it."""
    guesses = ["0000", "1234", CANARY, "9999"]
    args: dict[str, Any] = {"method": "POST", "headers": {"X-Key": "{{secret:API_KEY}}"}}
    if where == "url-raw":
        args["url"] = echo.url("/echo?" + "&".join(f"g={urllib.parse.quote(g)}" for g in guesses))
    elif where == "url-percent":
        args["url"] = echo.url("/echo?g=" + "".join(f"%{b:02X}" for b in CANARY.encode()))
    elif where == "body-raw":
        args |= {"url": echo.url("/echo"), "body": " ".join(guesses)}
    elif where == "body-json-u":
        args |= {"url": echo.url("/echo"), "body": "".join(f"\\u{ord(c):04x}" for c in CANARY)}
    elif where == "header":
        args |= {
            "url": echo.url("/echo"),
            "headers": {"X-Key": "{{secret:API_KEY}}", "X-G": CANARY},
        }
    else:  # the value's first characters written right before the placeholder
        await vault_tools.set_secret(vhome, "API_KEY", b"abababab", allowed_hosts=["127.0.0.1"])
        args |= {"url": echo.url("/echo"), "body": "ab{{secret:API_KEY}}"}
    result = await call(vhome, mode, "secret_http_request", args)
    assert result.is_error
    assert "written by the agent" in text_of(result) and "blocked" in text_of(result)
    assert echo.seen == []  # nothing was sent
    last = entries(vhome)[-1]
    assert (last["phase"], last["outcome"], last["action"]) == (
        "call",
        "denied",
        "secret.http_request",
    )
    assert "written by the agent" in last["reason"]
    ledger = b"".join(raw_tx(vhome).ledger.iter_bodies())
    assert CANARY.encode() not in ledger and b"abababab" not in ledger
    # Blocked: even a clean request with that secret is refused, so no more guesses.
    clean = {"method": "GET", "url": echo.url("/echo"), "headers": {"X": "{{secret:API_KEY}}"}}
    again = await call(vhome, mode, "secret_http_request", clean)
    assert again.is_error and "blocked" in text_of(again) and echo.seen == []
    await vault_tools.unblock_secret(vhome, "API_KEY", "gamma")
    assert not (await call(vhome, mode, "secret_http_request", clean)).is_error
    from charter.tools.vault import limits as vault_limits

    assert vault_limits.unblock(raw_tx(vhome), "gamma", "API_KEY") is False
    await audit.verify_home(vhome)


async def test_a_value_the_agent_may_read_is_not_a_guess(
    vhome: Home, echo: EchoServer, mode: str
) -> None:
    await identity.update_agent(vhome, "gamma", scopes=["secret:use:API_*", "secret:read:API_KEY"])
    result = await call(
        vhome,
        mode,
        "secret_http_request",
        {"method": "POST", "url": echo.url("/echo"), "body": f"{CANARY} {{{{secret:API_KEY}}}}"},
    )
    assert not result.is_error, text_of(result)


async def test_a_readable_value_written_into_the_url_is_refused_not_recorded(
    vhome: Home, echo: EchoServer, mode: str
) -> None:
    """The URL is kept as written (an approval request shows it): an agent that may read a
    value must still write the placeholder there, so the value never reaches an approver or
    the ledger. Refused before anything is sent, without blocking (it is no guess)."""
    await identity.update_agent(vhome, "gamma", scopes=["secret:use:API_*", "secret:read:API_KEY"])
    before = len(echo.seen)
    url = echo.url("/echo?k=" + CANARY.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D"))
    result = await call(
        vhome,
        mode,
        "secret_http_request",
        {"method": "GET", "url": url, "headers": {"X": "{{secret:API_KEY}}"}},
    )
    assert result.is_error and "write {{secret:API_KEY}} instead" in text_of(result)
    assert len(echo.seen) == before
    assert not await database_contains(vhome.store, CANARY.encode())
    again = await call(
        vhome,
        mode,
        "secret_http_request",
        {"method": "GET", "url": echo.url("/echo"), "headers": {"X": "{{secret:API_KEY}}"}},
    )
    assert not again.is_error, text_of(again)  # not blocked


async def test_the_url_returned_is_the_one_the_agent_wrote(
    vhome: Home, echo: EchoServer, mode: str
) -> None:
    url = echo.url("/echo?k={{secret:API_KEY}}&n=1")
    result = await call(vhome, mode, "secret_http_request", {"method": "GET", "url": url})
    assert result.structured_content["url"] == url
    followed = await call(
        vhome,
        mode,
        "secret_http_request",
        {"method": "GET", "url": echo.url("/redirect?to=/echo%3Fx%3D1&k={{secret:API_KEY}}")},
    )
    assert followed.structured_content["url"] == echo.url("/echo?x=1")


async def test_the_rate_limit_refuses_and_records(
    vhome: Home, echo: EchoServer, mode: str, clock: FrozenClock
) -> None:
    info = await vault_tools.set_secret(
        vhome, "API_KEY", CANARY.encode(), allowed_hosts=["127.0.0.1"], rate_per_minute=3
    )
    assert info.rate_per_minute == 3
    args = {"method": "GET", "url": echo.url("/echo"), "headers": {"X": "{{secret:API_KEY}}"}}
    for _ in range(3):
        assert not (await call(vhome, mode, "secret_http_request", args)).is_error
    refused = await call(vhome, mode, "secret_http_request", args)
    assert refused.is_error
    assert text_of(refused) == (
        "rate limit: this agent may use secret 'API_KEY' 3 times per minute and has used it "
        "3 times in the last minute; try again later"
    )
    assert len(echo.seen) == 3
    last = entries(vhome)[-1]
    assert (last["phase"], last["outcome"]) == ("call", "denied")
    assert last["reason"].startswith("rate limit")
    # Another agent has its own count; the window moves on.
    await identity.add_agent(vhome, "delta", scopes=["secret:use:API_KEY"])
    assert not (await call(vhome, mode, "secret_http_request", args, agent="delta")).is_error
    clock.advance(seconds=61)
    assert not (await call(vhome, mode, "secret_http_request", args)).is_error
    await audit.verify_home(vhome)


async def test_the_default_rate_is_sixty_per_minute(
    vhome: Home, echo: EchoServer, clock: FrozenClock
) -> None:
    args = {"method": "GET", "url": echo.url("/echo"), "headers": {"X": "{{secret:API_KEY}}"}}
    async with Client(await server_for(vhome, "gamma")) as client:
        results = [await client.call_tool("secret_http_request", args) for _ in range(61)]
    assert [r.is_error for r in results] == [False] * 60 + [True]
    assert "60 times per minute" in text_of(results[-1])


@pytest.mark.parametrize("allowed", ["http://127.0.0.1:{other}", "https://127.0.0.1:{port}"])
async def test_an_allowed_host_with_the_wrong_port_or_scheme_is_refused(
    vhome: Home, echo: EchoServer, mode: str, allowed: str
) -> None:
    entry = allowed.format(port=echo.port, other=echo.port + 1 if echo.port < 65535 else 1)
    await vault_tools.set_secret(vhome, "API_KEY", CANARY.encode(), allowed_hosts=[entry])
    args = {"method": "GET", "url": echo.url("/echo"), "headers": {"X": "{{secret:API_KEY}}"}}
    result = await call(vhome, mode, "secret_http_request", args)
    assert result.is_error and "may not be sent to '127.0.0.1'" in text_of(result)
    assert echo.seen == []
    last = entries(vhome)[-1]
    assert (last["phase"], last["outcome"]) == ("call", "denied")
    # The exact scheme and port are allowed.
    await vault_tools.set_secret(
        vhome, "API_KEY", CANARY.encode(), allowed_hosts=[f"http://127.0.0.1:{echo.port}"]
    )
    assert not (await call(vhome, mode, "secret_http_request", args)).is_error
