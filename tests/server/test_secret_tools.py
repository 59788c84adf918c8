"""secret_* tools end to end: a real MCP client, a real vault, a real HTTP server on loopback."""

from __future__ import annotations

import base64
import json
import logging
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from charter.home import Home
from charter.storage.ledger import Entry
from charter.testing import server_for
from charter.tools import audit, identity
from charter.tools import vault as vault_tools

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
    returns it base64-encoded, ``/redirect?to=URL[&code=N]`` redirects, ``/big?n=N&at=K``
    sends N bytes with the Authorization value at offset K, ``/hang`` never answers.
    """

    port: int
    seen: list[Seen] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def _handler(state: EchoServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Silent: the test reads the server's records, not its log."""

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            state.seen.append(
                Seen(self.command, self.headers["Host"], self.path, dict(self.headers), body)
            )
            auth = self.headers.get("Authorization", "")
            if url.path == "/echo":
                echo = {"path": self.path, "headers": dict(self.headers), "body": body.decode()}
                self._reply(200, json.dumps(echo).encode(), {"X-Echo-Auth": auth})
            elif url.path == "/b64":
                self._reply(200, base64.b64encode(f"user:{auth}".encode()), {})
            elif url.path == "/redirect":
                self._reply(int(query.get("code", "302")), b"", {"Location": query["to"]})
            elif url.path == "/big":
                n, at = int(query["n"]), int(query["at"])
                data = (b"x" * at + auth.encode() + b"y" * n)[:n]
                self._reply(200, data, {"Content-Type": "text/plain"})
            elif url.path == "/hang":
                state.release.wait(10)
                self._reply(200, b"late", {})
            else:
                self._reply(404, b"not found", {})

        def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    state = EchoServer(port=0)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    state.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def vhome(home: Home) -> Home:
    """The home with secrets API_KEY (canary, on 127.0.0.1), OTHER_KEY and agent ``gamma``."""
    vault_tools.set_secret(
        home, "API_KEY", CANARY.encode(), description="test API", allowed_hosts=["127.0.0.1"]
    )
    vault_tools.set_secret(home, "OTHER_KEY", OTHER.encode(), allowed_hosts=["example.com"])
    identity.add_agent(home, "gamma", scopes=["secret:use:API_*", "secret:read:OTHER_KEY"])
    return home


def entries(home: Home) -> list[dict[str, Any]]:
    return [Entry.from_body(b).fields for b in home.ledger.iter_bodies()]


async def call(home: Home, mode: str, tool: str, args: dict[str, Any], agent: str = "gamma") -> Any:
    async with Client(server_for(home, agent), mode=mode) as client:  # type: ignore[arg-type]
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
    audit.verify_home(vhome)
