"""OpenTelemetry: one span per tool call, linked to the signed ledger entry that records it.

Off unless the standard variables ask for it: ``OTEL_TRACES_EXPORTER`` (``otlp``,
``console``; ``none`` turns it off) or an OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), unless ``OTEL_SDK_DISABLED=true``. Then, and only
then, the OpenTelemetry SDK is imported (the ``charter[otel]`` extra); with nothing set no
OpenTelemetry SDK or exporter module is loaded (only the no-op API the MCP SDK imports
anyway) and start-up is unchanged. The exporter, endpoint,
headers, timeouts, sampler and resource come from the other ``OTEL_*`` variables as the SDK
reads them; the OTLP exporter speaks HTTP/protobuf (a gRPC protocol setting is refused with
a warning, as is a configuration the installed packages cannot serve).

The span follows the OpenTelemetry MCP / GenAI semantic conventions for a server-side tool
call: name ``tools/call {tool}``, kind SERVER, ``mcp.method.name``, ``gen_ai.operation.name``
(``execute_tool``), ``gen_ai.tool.name``, ``jsonrpc.request.id``, ``error.type`` and an ERROR
status on failure. The MCP SDK (which depends on ``opentelemetry-api``, a no-op until a
provider is set) opens that span itself; Charter sets the provider and annotates it. Charter's
own attributes (``charter.*``, docs/INTEGRATIONS.md) carry the
ledger entry's seq and hash, so a trace links to signed evidence. Arguments and results are
never put on a span (the ledger records only their redacted summary and hashes).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from mcp.server.mcpserver.exceptions import ToolError

import charter

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

    from charter.evidence.entries import Entry

log = logging.getLogger("charter.server")

R = TypeVar("R")

#: Charter's span attributes (the semantic-convention ones are set by name below).
LEDGER_SEQ = "charter.ledger.seq"
LEDGER_ENTRY_HASH = "charter.ledger.entry_hash"
LEDGER_INTENT_SEQ = "charter.ledger.intent_seq"
LEDGER_INTENT_HASH = "charter.ledger.intent_hash"
LEDGER_ORIGIN = "charter.ledger.origin"
OUTCOME = "charter.outcome"
ACTION = "charter.action"
CALL_ID = "charter.call.id"
SESSION_ID = "charter.session.id"
OWNER_ID = "charter.owner.id"
CHARTER_HASH = "charter.charter.hash"
AGENT_ID = "gen_ai.agent.id"
#: Why a call failed, finer than ``error.type`` (``tool_error``): the Charter error class
#: (``ScopeDenied``, ``AgentRevoked``, ``ValidationError`` for bad arguments, …).
ERROR_TYPE = "charter.error.type"

#: The exporters this build can serve (OTEL_TRACES_EXPORTER values).
EXPORTERS = ("otlp", "console")


def wanted(env: Mapping[str, str] | None = None) -> list[str]:
    """The trace exporters the standard ``OTEL_*`` variables ask for ([] = tracing off)."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    names = [n for n in names if n]
    if names:
        return [] if "none" in names else names
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return ["otlp"] if endpoint else []


@dataclass
class _Current:
    span: Span
    error_type: str | None = None


_current: contextvars.ContextVar[_Current | None] = contextvars.ContextVar(
    "charter_span", default=None
)


def note_error(exc: BaseException) -> None:
    """Record why the current call failed (``error.type``): a no-op outside a span."""
    current = _current.get()
    if current is not None:
        current.error_type = type(exc).__qualname__


def note_entry(entry: Entry, intent: Entry | None = None) -> None:
    """Put the call's closing ledger entry (and its intent) on the current span: a no-op
    outside a span (tracing off)."""
    current = _current.get()
    if current is None:
        return
    f = entry.fields
    attrs: dict[str, Any] = {
        LEDGER_SEQ: entry.seq,
        LEDGER_ENTRY_HASH: entry.hash,
        OUTCOME: f["outcome"] or "",
        ACTION: f["action"],
        OWNER_ID: f["owner"],
    }
    if f["actor"] != "unknown":
        attrs[AGENT_ID] = f["actor"]
    for key, name in ((CALL_ID, "call"), (SESSION_ID, "session"), (CHARTER_HASH, "charter")):
        if f[name] is not None:
            attrs[key] = f[name]
    if intent is not None:
        attrs[LEDGER_INTENT_SEQ] = intent.seq
        attrs[LEDGER_INTENT_HASH] = intent.hash
    current.span.set_attributes(attrs)


class Telemetry:
    """Spans for tool calls, from one tracer provider."""

    def __init__(self, provider: TracerProvider, origin: str | None = None) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("charter", charter.__version__)
        self.origin = origin

    @classmethod
    def from_env(cls, origin: str | None = None) -> Telemetry | None:
        """The provider the ``OTEL_*`` variables configure, or ``None`` (tracing off; nothing
        imported). A configuration that cannot take effect is warned about and ignored."""
        names = wanted()
        if not names:
            return None
        unknown = [n for n in names if n not in EXPORTERS]
        if unknown:
            log.warning(
                "OTEL_TRACES_EXPORTER %s not supported by Charter (use otlp or console); ignored",
                ",".join(unknown),
            )
        names = [n for n in names if n in EXPORTERS]
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        if "otlp" in names and protocol.strip() != "http/protobuf":
            log.warning(
                "OTEL_EXPORTER_OTLP_PROTOCOL=%s not supported (Charter exports OTLP over "
                "http/protobuf); no spans are exported over OTLP",
                protocol[:40],
            )
            names.remove("otlp")
        if not names:
            return None
        try:
            return cls(_provider(names), origin)
        except ImportError:
            log.warning(
                "OTEL_* variables ask for traces but the OpenTelemetry SDK is not installed "
                "(pip install 'charter[otel]'); no spans are exported"
            )
            return None

    async def traced(self, tool: str, context: Any, run: Callable[[], Awaitable[R]]) -> R:
        """Run one tool call (``run``) inside its span.

        The MCP SDK opens a ``tools/call {tool}`` server span for every call itself (with the
        client's trace context from ``_meta``), recording once a tracer provider is set:
        then Charter's attributes go on that span, so a call is one span. Otherwise (no
        global provider: an embedding application's own, or tests) Charter opens the span.
        """
        from opentelemetry import trace

        name = f"tools/call {tool}"
        outer = trace.get_current_span()
        if outer.is_recording() and getattr(outer, "name", None) == name:
            return await self._annotate(outer, run)
        attrs: dict[str, Any] = {
            "mcp.method.name": "tools/call",
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
        }
        request_id = _request_id(context)
        if request_id is not None:
            attrs["jsonrpc.request.id"] = request_id
        with self.tracer.start_as_current_span(
            name,
            kind=trace.SpanKind.SERVER,
            attributes=attrs,
            record_exception=False,  # a traceback may hold what the ledger redacts
            set_status_on_exception=False,
        ) as span:
            return await self._annotate(span, run, own=True)

    async def _annotate(self, span: Span, run: Callable[[], Awaitable[R]], own: bool = False) -> R:
        from opentelemetry.trace import Status, StatusCode

        if self.origin is not None:
            span.set_attribute(LEDGER_ORIGIN, self.origin)
        current = _Current(span)
        token = _current.set(current)
        try:
            result = await run()
        except BaseException as exc:
            kind = current.error_type or type(exc).__qualname__
            span.set_attribute(ERROR_TYPE, kind)
            if own:
                error = "tool_error" if isinstance(exc, ToolError) else type(exc).__qualname__
                span.set_attribute("error.type", error)
                # The public message only: what the client was told, never a traceback.
                span.set_status(Status(StatusCode.ERROR, str(exc)[:300]))
            raise
        finally:
            _current.reset(token)
        if getattr(result, "is_error", False):
            span.set_attribute(ERROR_TYPE, current.error_type or "tool_error")
            if own:
                span.set_attribute("error.type", "tool_error")
                span.set_status(Status(StatusCode.ERROR))
        return result

    async def aclose(self) -> None:
        """Export what is pending and stop (server shutdown)."""
        await asyncio.to_thread(self.provider.shutdown)


def _request_id(context: Any) -> str | None:
    try:
        value = context.request_id if context is not None else None
    except (AttributeError, ValueError, LookupError):
        return None
    return None if value is None else str(value)


def _provider(names: list[str]) -> TracerProvider:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attrs = {"service.version": charter.__version__}
    if "OTEL_SERVICE_NAME" not in os.environ and "service.name=" not in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attrs["service.name"] = "charter"
    provider = TracerProvider(resource=Resource.create(attrs))
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    # Global, so the MCP SDK's own span of each call (which Charter annotates) records too.
    trace.set_tracer_provider(provider)
    return provider


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        # stderr: over stdio, stdout is the MCP channel.
        return ConsoleSpanExporter(out=sys.stderr)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout: from OTEL_EXPORTER_OTLP_*
