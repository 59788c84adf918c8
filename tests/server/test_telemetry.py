"""OpenTelemetry spans for tool calls (charter.server.telemetry): attributes that link each
span to its signed ledger entry, OTLP/HTTP to a real receiver, and nothing loaded when off."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from charter.evidence.entries import Entry
from charter.home import Home
from charter.server import telemetry
from charter.server.app import CharterServer
from charter.testing import make_home, raw_tx, server_for
from charter.tools import identity

REPO = Path(__file__).resolve().parents[2]
OTEL_VARS = ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SDK_DISABLED")


@pytest.fixture(autouse=True)
def _no_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


def ledger(home: Home) -> list[Entry]:
    return [Entry.from_body(b) for b in raw_tx(home).ledger.iter_bodies()]


async def traced_server(home: Home, agent: str, exporter: InMemorySpanExporter) -> CharterServer:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server = await server_for(home, agent)
    assert server.telemetry is None  # nothing configured
    server.telemetry = telemetry.Telemetry(provider, home.origin)
    return server


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_each_call_is_a_span_carrying_its_ledger_entry(home: Home) -> None:
    exporter = InMemorySpanExporter()
    async with Client(await traced_server(home, "alpha", exporter)) as client:
        assert not (await client.call_tool("identity_whoami", {})).is_error
        after_whoami = ledger(home)[-1]
        assert not (await client.call_tool("audit_query", {"limit": 3})).is_error
        after_query = ledger(home)[-1]
    spans = [s for s in exporter.get_finished_spans() if s.name.startswith("tools/call")]
    assert [s.name for s in spans] == ["tools/call identity_whoami", "tools/call audit_query"]
    for span, entry, tool in zip(
        spans, [after_whoami, after_query], ["identity_whoami", "audit_query"], strict=True
    ):
        a = attrs(span)
        assert span.kind == SpanKind.SERVER
        assert a["mcp.method.name"] == "tools/call"
        assert a["gen_ai.operation.name"] == "execute_tool"
        assert a["gen_ai.tool.name"] == tool
        assert a["charter.ledger.seq"] == entry.seq
        assert a["charter.ledger.entry_hash"] == entry.hash
        assert a["charter.outcome"] == "ok" == entry.fields["outcome"]
        assert a["gen_ai.agent.id"] == entry.fields["actor"]
        assert a["gen_ai.agent.id"].endswith("/alpha")
        assert a["charter.owner.id"] == "owner@example.com"
        assert a["charter.call.id"] == entry.fields["call"]
        assert a["charter.charter.hash"] == entry.fields["charter"]
        assert a["charter.ledger.origin"] == home.origin
        assert "error.type" not in a
        assert span.status.status_code != StatusCode.ERROR


async def test_a_refused_call_is_an_error_span_with_its_denied_entry(home: Home) -> None:
    exporter = InMemorySpanExporter()
    async with Client(await traced_server(home, "beta", exporter)) as client:
        result = await client.call_tool("audit_query", {"action": "email.send"})
    assert result.is_error
    entry = ledger(home)[-1]
    assert entry.fields["outcome"] == "denied"
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "tools/call audit_query"]
    a = attrs(span)
    assert a["charter.ledger.seq"] == entry.seq
    assert a["charter.ledger.entry_hash"] == entry.hash
    assert a["charter.outcome"] == "denied"
    assert a["error.type"] == "tool_error"
    assert a["charter.error.type"] == "ScopeDenied"
    assert span.status.status_code == StatusCode.ERROR
    # Arguments never reach a span: the ledger keeps only their redacted summary.
    assert "email.send" not in json.dumps({k: str(v) for k, v in a.items()})
    assert not span.events  # no exception event, no traceback


async def test_invalid_arguments_are_typed_as_such(home: Home) -> None:
    exporter = InMemorySpanExporter()
    async with Client(await traced_server(home, "alpha", exporter)) as client:
        assert (await client.call_tool("audit_query", {"limit": "many"})).is_error
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "tools/call audit_query"]
    assert attrs(span)["charter.error.type"] == "ValidationError"
    assert attrs(span)["charter.ledger.entry_hash"] == ledger(home)[-1].hash


def test_only_the_standard_variables_turn_tracing_on() -> None:
    assert telemetry.wanted({}) == []
    assert telemetry.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == ["otlp"]
    assert telemetry.wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c"}) == ["otlp"]
    assert telemetry.wanted({"OTEL_TRACES_EXPORTER": "console"}) == ["console"]
    assert (
        telemetry.wanted({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}) == []
    )
    assert telemetry.wanted({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}) == []


def test_a_setting_that_cannot_take_effect_is_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with caplog.at_level(logging.WARNING, "charter.server"):
        assert telemetry.Telemetry.from_env() is None
    assert "grpc not supported" in caplog.text
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    caplog.clear()
    with caplog.at_level(logging.WARNING, "charter.server"):
        assert telemetry.Telemetry.from_env() is None
    assert "zipkin not supported" in caplog.text


NO_SDK_SCRIPT = """
import asyncio, sys, tempfile, pathlib
from charter.testing import make_home, server_for
from charter.tools import identity
async def main():
    home = await make_home(pathlib.Path(tempfile.mkdtemp()) / "h")
    await identity.add_agent(home, "alpha", scopes=["audit:read"])
    from mcp import Client
    async with Client(await server_for(home, "alpha")) as client:
        await client.call_tool("identity_whoami", {})
    await home.close()
asyncio.run(main())
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
print(",".join(m for m in loaded if not m.startswith(("opentelemetry.trace",
    "opentelemetry.context", "opentelemetry.util", "opentelemetry.propagat",
    "opentelemetry.baggage", "opentelemetry.attributes", "opentelemetry.environment_variables"))
    and m != "opentelemetry"))
"""


@pytest.mark.parametrize(
    "env",
    [{}, {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}],
)
def test_with_tracing_off_no_sdk_or_exporter_is_imported(env: dict[str, str]) -> None:
    """Only the no-op API the MCP SDK imports itself; no opentelemetry.sdk / exporter /
    proto module, even after a tool call."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", NO_SDK_SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env=clean | env,
    )
    assert out.stdout.splitlines()[-1] == ""


class _Receiver(BaseHTTPRequestHandler):
    requests: list[ExportTraceServiceRequest]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            self.server.requests.append(request)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
async def real_home(tmp_path: Path) -> AsyncIterator[Home]:
    """A home on the real clock: the server subprocess reads the real time."""
    h = await make_home(tmp_path / "home")
    await identity.add_agent(h, "alpha", scopes=["audit:read"])
    yield h
    await h.close()


def otlp_spans(server: ThreadingHTTPServer) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for request in server.requests:  # type: ignore[attr-defined]
        for rs in request.resource_spans:
            resource = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for span in ss.spans:
                    values: dict[str, Any] = {"resource": resource, "kind": span.kind}
                    for kv in span.attributes:
                        v = kv.value
                        values[kv.key] = v.int_value if v.HasField("int_value") else v.string_value
                    out.append((span.name, values))
    return out


async def test_otlp_http_export_from_charter_serve(
    real_home: Home, receiver: ThreadingHTTPServer
) -> None:
    """``charter serve`` configured only by OTEL_EXPORTER_OTLP_ENDPOINT sends one span per
    call over OTLP/HTTP, carrying its ledger entry's seq and hash."""
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
    env = {
        "CHARTER_HOME": str(real_home.settings.home),
        "PATH": os.environ.get("PATH", ""),
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_SERVICE_NAME": "charter-test",
    }
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "charter", "serve", "--agent", "alpha"], env=env
    )
    async with Client(params) as client:
        assert not (await client.call_tool("identity_whoami", {})).is_error
        whoami = ledger(real_home)[-1]
        assert (await client.call_tool("audit_query", {"limit": "x"})).is_error
        refused = ledger(real_home)[-1]
    # The server flushed its spans when it shut down (end of the client session).
    calls = [(name, a) for name, a in otlp_spans(receiver) if name.startswith("tools/call")]
    # One span per call: Charter annotates the MCP SDK's own span rather than nest another.
    assert sorted(name for name, _ in calls) == [
        "tools/call audit_query",
        "tools/call identity_whoami",
    ]
    spans = dict(calls)
    ok = spans["tools/call identity_whoami"]
    assert ok["charter.ledger.seq"] == whoami.seq
    assert ok["charter.ledger.entry_hash"] == whoami.hash
    assert ok["gen_ai.tool.name"] == "identity_whoami"
    assert ok["mcp.method.name"] == "tools/call"
    assert ok["gen_ai.agent.id"].endswith("/alpha")
    assert ok["resource"]["service.name"] == "charter-test"
    assert ok["kind"] == 2  # SPAN_KIND_SERVER
    bad = spans["tools/call audit_query"]
    assert bad["charter.ledger.entry_hash"] == refused.hash
    assert bad["charter.outcome"] == "denied"
    assert bad["error.type"] == "tool_error"
    assert bad["charter.error.type"] == "ValidationError"
