"""Hostile input: every tool, whatever it is, gets random and adversarial arguments.

The tools come from ``list_tools()`` and their arguments from each tool's input schema, so a
tool added later is fuzzed without touching this file. Examples mix schema-shaped values,
realistic calls with one argument replaced by something hostile (huge, deeply nested,
control characters, lone surrogates, wrong types), unknown extra arguments and
path/header/URL/SQL injection strings. Through a real in-process MCP client in both protocol
generations, every response must be a clean result or a clean error: no traceback, no
"internal error" (an unexpected exception), no secret (a canary in the vault, any private
key); every call is on the record and the ledger verifies afterwards.

The acting agent holds every scope except reading the canary, so calls get past the scope
checks into each tool's own validation. ``secret_http_request`` may only reach an echo server
on 127.0.0.1, which reflects what it receives: the canary must come back redacted.
"""

from __future__ import annotations

import email
import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
import sechelp
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.types import CallToolResult, Tool

from charter.home import Home
from charter.testing import make_home, other_db, raw_db, raw_tx, server_for
from charter.tools import audit, identity, tokens
from charter.tools import vault as vault_tools

API = "https://api.example.com"
CANARY = "canary-fuzz-3b9f61d2c8e4a7"
PUBLIC = "public-note-value"
#: Examples per tool and protocol mode (audit_verify re-reads the whole ledger: fewer).
EXAMPLES = 50
SLOW_TOOLS = {"audit_verify": 8}

INJECTIONS = [
    "../../../../etc/passwd",
    "..\\..\\..\\windows\\win.ini",
    "/etc/shadow",
    "file:///etc/passwd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "x\r\nX-Injected: yes",
    "bob@example.com\r\nBcc: victim@example.com",
    "mailbox@agents.example\nX-Injected: yes",
    "=?utf-8?q?x=0d=0aX-Injected:_yes?=",
    "' OR '1'='1",
    '"; DROP TABLE ledger; --',
    "1; DELETE FROM agents",
    "http://127.0.0.1:9/",
    "http://canary.invalid@127.0.0.1:9/",
    "https://evil.example/?k={{secret:CANARY}}",
    "{{secret:CANARY}}",
    "{{secret:../CANARY}}",
    'INBOX" (FLAGS \\Seen)',
    "*",
    "%s%s%n",
    "${jndi:ldap://127.0.0.1:9/x}",
    "<script>alert(1)</script>",
    "\x00",
]
UNICODE = [
    "\ud800",
    "x\udfffy",
    "\u2028\u2029",
    "\ufeff",
    "\u202eevil",
    "e\u0301\u0301\u0301",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "\U0010ffff",
    "\ufffe\uffff",
    "\x1b[31mred\x1b[0m",
    "\x7f\x85",
]


def nested(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


HOSTILE_VALUES: list[Any] = [
    *INJECTIONS,
    *UNICODE,
    "A" * 300_000,
    "\u00e9" * 50_000,
    nested(50),
    nested(150),
    [],
    {},
    {"agent": "mailbox"},
    None,
    True,
    0,
    -1,
    2**53,
    2**64,
    -(2**63),
    1.5,
    float("inf"),
    ["x"] * 1000,
]


def base_args(tool: str, echo: Echo) -> dict[str, Any]:
    """Realistic arguments for the tools that exist today; later tools start from their schema."""
    known: dict[str, dict[str, Any]] = {
        "email_send": sechelp.send_args("fuzz"),
        "email_read": {"message_id": "<nope@agents.example>"},
        "token_issue": {"audience": API, "scopes": ["audit:read"], "ttl_seconds": 60},
        "secret_get": {"name": "PUBLIC_NOTE"},
        "secret_http_request": {
            "method": "POST",
            "url": f"http://127.0.0.1:{echo.port}/echo?k={{{{secret:CANARY}}}}",
            "body": "{{secret:CANARY}}",
        },
        "audit_prove": {"seq": 0},
        "audit_query": {"limit": 5},
    }
    return dict(known.get(tool, {}))


#: Use any secret, read only the public one: the canary may be used, never shown.
SECRET_SCOPES = ("secret:use:*", "secret:read:PUBLIC_*")
IMPERSONATION = {"agent": "mailbox", "actor": "spiffe://charter.local/agent/owner/mailbox"}


# -- a server secret_http_request may reach -----------------------------------------------------


@dataclass
class Echo:
    """Reflects every request (line, headers, body) back as the response body."""

    port: int
    #: The request line and headers of every request received.
    heads: list[str] = field(default_factory=list)


@pytest.fixture
def echo() -> Iterator[Echo]:
    heads: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _reflect(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            head = self.requestline + "\n" + str(self.headers)
            heads.append(head)
            raw = head.encode("utf-8", "replace") + self.rfile.read(length)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("X-Echo", self.headers.get("X-Key", ""))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _reflect

        def do_HEAD(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Silence."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Echo(server.server_address[1], heads)
    server.shutdown()
    server.server_close()


# -- the home -----------------------------------------------------------------------------------


@pytest.fixture
async def fuzz_home(tmp_path: Path, echo: Echo) -> AsyncIterator[Home]:
    home = await make_home(tmp_path / "home")
    await sechelp.add_mailbox(home)
    await sechelp.add_mail_agent(
        home,
        "fuzzer",
        [*("audit:read", "email:send", "email:read", "token:issue"), *SECRET_SCOPES],
        audiences=[API],
    )
    await vault_tools.set_secret(home, "CANARY", CANARY.encode(), allowed_hosts=["127.0.0.1"])
    await vault_tools.set_secret(home, "PUBLIC_NOTE", PUBLIC.encode(), allowed_hosts=["127.0.0.1"])
    yield home
    await home.close()


def never_shown(home: Home) -> list[str]:
    """Values no response may contain: the canary and every private key in the home."""
    values = [CANARY]
    for path in sorted(home.layout.keys.rglob("*.key")):
        doc = json.loads(path.read_text())
        values += [str(doc[k]) for k in ("d", "key", "box") if k in doc]
        if isinstance(doc.get("enc"), dict):
            values.append(str(doc["enc"].get("box")))
    return [v for v in values if len(v) >= 16]


# -- arguments from a JSON schema ---------------------------------------------------------------

_text = st.text(st.characters(codec=None), max_size=60) | st.text(max_size=300)
_hostile = st.sampled_from(HOSTILE_VALUES)
_any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)


def from_schema(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> Any:
    """A strategy for values matching ``schema``, often bent towards its edges."""
    if depth > 6:
        return _any_json
    if "$ref" in schema:
        return from_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, depth + 1)
    if "anyOf" in schema:
        return st.one_of([from_schema(s, defs, depth + 1) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        top = schema.get("maxLength", 1000)
        return (
            st.text(min_size=schema.get("minLength", 0), max_size=min(top, 80))
            | st.sampled_from(INJECTIONS + UNICODE)
            | st.integers(0, top + 5).map(lambda n: "x" * n)
        )
    if kind == "integer":
        low, high = schema.get("minimum", -(2**63)), schema.get("maximum", 2**63)
        return st.integers(low, high) | st.sampled_from([low - 1, high + 1, 0, -1, 2**64])
    if kind == "number":
        return st.floats(allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = from_schema(schema.get("items", {}), defs, depth + 1)
        return st.lists(items, max_size=min(schema.get("maxItems", 4), 4))
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        if not props:
            extra = schema.get("additionalProperties")
            values = from_schema(extra, defs, depth + 1) if isinstance(extra, dict) else _any_json
            return st.dictionaries(_text, values, max_size=4)
        return st.fixed_dictionaries(
            {k: from_schema(v, defs, depth + 1) for k, v in props.items() if k in required},
            optional={
                k: from_schema(v, defs, depth + 1) for k, v in props.items() if k not in required
            },
        )
    return _any_json


def arguments(tool: Tool, base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Arguments for ``tool``: schema-shaped, ``base`` with one value bent, or just hostile."""
    schema = tool.input_schema
    shaped = from_schema(schema, schema.get("$defs", {}))
    names = sorted(set(schema.get("properties", {})) | set(base)) or ["x"]

    @st.composite
    def bent(draw: st.DrawFn) -> dict[str, Any]:
        args = dict(base)
        args[draw(st.sampled_from(names))] = draw(_hostile | _text)
        if draw(st.booleans()):
            args |= draw(st.sampled_from([IMPERSONATION, {"__proto__": {}}, {"x" * 300: 1}]))
        return args

    return st.one_of(shaped, bent(), st.dictionaries(_text, _hostile, max_size=3))


# -- the checks -------------------------------------------------------------------------------


@dataclass
class Tally:
    """Counts, and the check that every answered call left an entry."""

    db: Path
    calls: int = 0
    results: int = 0
    errors: int = 0
    size: int = 0
    home: Home | None = None  # a PostgreSQL home: counted over a connection of its own

    def record(self, result: CallToolResult) -> None:
        self.results += 1
        self.errors += bool(result.is_error)
        if self.home is not None and self.home.settings.database_url is not None:
            conn = other_db(self.home)
        else:
            conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            size = conn.execute("SELECT count(*) FROM ledger").fetchone()[0]
        finally:
            conn.close()
        assert size > self.size, "a call was answered without being recorded"
        self.size = size


def check_response(result: CallToolResult, secrets: list[str]) -> None:
    blob = json.dumps(result.model_dump(mode="json"), ensure_ascii=False)
    for leak in ("Traceback", 'File "/', "internal error"):
        assert leak not in blob, blob[:2000]
    for secret in secrets:
        assert secret not in blob, "a secret reached the agent"


async def check_home(home: Home, before: int, tally: Tally, echo: Echo) -> None:
    size = (await audit.verify_home(home)).size
    assert size - before >= tally.results, "a call was answered without being recorded"
    fuzzer = (await identity.get_agent(home, "fuzzer")).agent_id
    actors = {e["actor"] for e in sechelp.entries(home)[before:]}
    assert actors == {fuzzer}, "an argument made the server act for someone else"
    for (raw,) in raw_db(home).execute("SELECT raw FROM mail_local_inbox"):
        message = email.message_from_bytes(bytes(raw))
        assert "X-Injected" not in message and "Bcc" not in message, message.keys()
    for head in echo.heads:
        assert "X-Injected" not in head, head


def run_tool(
    portal: BlockingPortal,
    client: Client,
    tool: Tool,
    base: dict[str, Any],
    secrets: list[str],
    tally: Tally,
) -> None:
    budget = SLOW_TOOLS.get(tool.name, EXAMPLES)

    @settings(
        max_examples=budget,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(arguments(tool, base))
    def one(args: dict[str, Any]) -> None:
        tally.calls += 1
        try:
            result = portal.call(client.call_tool, tool.name, args)
        except UnicodeEncodeError:
            return  # the client cannot encode a lone surrogate here: nothing was sent
        except ValueError as exc:
            if "depth" not in str(exc):  # pydantic refused to serialize deep nesting
                raise
            return
        tally.record(result)
        check_response(result, secrets)

    one()


async def test_every_tool_survives_hostile_arguments(
    fuzz_home: Home, mode: str, echo: Echo, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = never_shown(fuzz_home)
    before = raw_tx(fuzz_home).ledger.head()[0]
    tally = Tally(fuzz_home.layout.db, size=before, home=fuzz_home)
    with start_blocking_portal() as portal:
        client = portal.wrap_async_context_manager(
            Client(await server_for(fuzz_home, "fuzzer"), mode=mode)
        )
        with client as session:
            tools = portal.call(session.list_tools).tools
            assert len(tools) >= 3
            for tool in tools:
                run_tool(portal, session, tool, base_args(tool.name, echo), secrets, tally)
            alive = portal.call(session.call_tool, "identity_whoami", {})
            assert not alive.is_error
    await check_home(fuzz_home, before, tally, echo)
    with capsys.disabled():
        print(
            f"\nfuzz ({mode}): {tally.calls} calls over {len(tools)} tools,"
            f" {tally.errors} refused cleanly, ledger verified"
        )


# -- every string argument gets every injection -------------------------------------------------


def string_arguments(tool: Tool) -> list[str]:
    """Top-level arguments of ``tool`` that accept a string (possibly among other types)."""

    def takes_string(schema: dict[str, Any]) -> bool:
        if schema.get("type") == "string" or (
            schema.get("type") == "array" and takes_string(schema.get("items", {}))
        ):
            return True
        return any(takes_string(s) for s in schema.get("anyOf", []))

    return [k for k, v in tool.input_schema.get("properties", {}).items() if takes_string(v)]


async def test_injection_strings_in_every_string_argument(
    fuzz_home: Home, echo: Echo, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = never_shown(fuzz_home)
    before = raw_tx(fuzz_home).ledger.head()[0]
    tally = Tally(fuzz_home.layout.db, size=before, home=fuzz_home)
    with start_blocking_portal() as portal:
        client = portal.wrap_async_context_manager(
            Client(await server_for(fuzz_home, "fuzzer"), mode="legacy")
        )
        with client as session:
            for tool in portal.call(session.list_tools).tools:
                for name in string_arguments(tool):
                    for value in INJECTIONS:
                        args = base_args(tool.name, echo)
                        args[name] = [value] if name in ("to", "cc", "bcc", "scopes") else value
                        result = portal.call(session.call_tool, tool.name, args)
                        tally.calls += 1
                        tally.record(result)
                        check_response(result, secrets)
    await check_home(fuzz_home, before, tally, echo)
    async with await sechelp.open_home(fuzz_home.settings.home) as home:
        # SQL injection changed nothing it should not have: only our own agents, one chain.
        names = {r[0] for r in raw_db(home).execute("SELECT name FROM agents")}
        assert names == {"mailbox", "fuzzer"}
    with capsys.disabled():
        print(f"\ninjection: {tally.calls} calls, every string argument of every tool")


# -- what the fuzzer found, pinned --------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("identity_whoami", {"\U0001f600": 1, "x\ud800": "y", "nul\x00": None}),
        ("audit_query", {"action": "\ud800"}),
        ("email_read", {"message_id": "x\udfffy"}),
    ],
)
async def test_a_call_the_ledger_cannot_quote_is_still_recorded(
    fuzz_home: Home, mode: str, tool: str, args: dict[str, Any]
) -> None:
    """Argument names outside the BMP and lone surrogates used to keep a call off the record."""
    before = raw_tx(fuzz_home).ledger.head()[0]
    async with Client(await server_for(fuzz_home, "fuzzer"), mode=mode) as client:
        result = await client.call_tool(tool, args)
    check_response(result, never_shown(fuzz_home))
    written = sechelp.entries(fuzz_home)[before:]
    assert [e["action"] for e in written] == [tool.replace("_", ".", 1)]
    await audit.verify_home(fuzz_home)


async def test_an_out_of_range_cursor_is_a_clean_refusal(fuzz_home: Home, mode: str) -> None:
    """A cursor beyond SQLite's 64-bit integers used to crash audit_query."""
    async with Client(await server_for(fuzz_home, "fuzzer"), mode=mode) as client:
        result = await client.call_tool("audit_query", {"cursor": 2**64})
    assert result.is_error
    check_response(result, never_shown(fuzz_home))
    assert sechelp.entries(fuzz_home)[-1]["outcome"] == "denied"


# -- a malicious client below the tools: the JSON-RPC and HTTP layers ---------------------------

MALFORMED_LINES = [
    b"not json",
    b"\xff\xfe\x00garbage",
    b"[1, 2, 3]",
    b"42",
    b'{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": "nope"}',
    b'{"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "identity_whoami",'
    b' "arguments": [1]}}',
    b'{"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "identity_whoami",'
    b' "arguments": {"x": "\\ud800"}}}',
    b'{"jsonrpc": "2.0", "id": 10, "method": "no/such/method"}',
    b'{"jsonrpc": "1.0", "id": 11, "method": "tools/list"}',
    b"[" * 100_000,
    b'{"jsonrpc": "2.0", "id": 12, "method": "tools/call", "params": {"name": "identity_whoami",'
    b' "arguments": {"pad": "' + b"A" * 5_000_000 + b'"}}}',
]


async def test_malformed_json_rpc_over_stdio_does_not_stop_the_server(tmp_path: Path) -> None:
    root = tmp_path / "home"
    async with await make_home(root) as home:
        await identity.add_agent(home, "alpha", scopes=[])
    log = tmp_path / "stderr.log"
    server = sechelp.RawStdioServer(root, "alpha", log)
    try:
        server.initialize()
        for line in MALFORMED_LINES:
            server.send_raw(line)
        ok, who, text = sechelp.tool_result(server.wait(server.call("identity_whoami", {})))
        assert ok and who is not None and who["name"] == "alpha", text
        answers = list(server.responses.values())
    finally:
        code = server.close()
    assert code == 0
    assert not server.garbage, "the server wrote something other than JSON-RPC to stdout"
    for answer in answers:
        assert "Traceback" not in json.dumps(answer)
    assert "Traceback" not in log.read_text()
    await sechelp.verify(root)


async def test_http_rejects_oversized_and_malformed_requests_cleanly(tmp_path: Path) -> None:
    root = tmp_path / "home"
    await (await make_home(root)).close()
    async with sechelp.http_server(root) as mcp, await sechelp.open_home(root) as home:
        await identity.add_agent(home, "alpha", scopes=[], audiences=[mcp])
        token = (await tokens.issue_for_owner(home, "alpha", audience=mcp)).token
        headers = {
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
        }
        big = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "pad": "'
        big += b"A" * (5 * 1024 * 1024) + b'"}'
        responses = {
            "oversized": httpx2.post(mcp, content=big, headers=headers, timeout=30),
            "not json": httpx2.post(mcp, content=b"{not json", headers=headers, timeout=30),
            "no token": httpx2.post(
                mcp, content=b"{}", headers={"Content-Type": "application/json"}, timeout=30
            ),
        }
    assert responses["oversized"].status_code == 413
    assert responses["not json"].status_code == 400
    assert responses["no token"].status_code == 401
    for response in responses.values():
        assert "Traceback" not in response.text
