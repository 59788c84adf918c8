"""MCP over stdio without a thread hop per message.

The SDK's ``stdio_server()`` reads each line and writes and flushes each message through
anyio worker threads: three thread hops per call, about 0.35 ms of a 1 ms round trip on the
machines we measured (``bench/BENCHMARKS.md``). When stdin and stdout are pipes, as every MCP
host launches a server, :func:`fast_stdio` serves the same protocol through the event loop's
own pipe transports instead, and hands the SDK's message loop the same streams it would get
from ``stdio_server()``.

Like the SDK, it claims the standard descriptors while serving: fd 0 reads the null device
and fd 1 points at stderr, so a stray ``print`` or a child process cannot corrupt the wire.
Both are restored, blocking again, on exit.

Anything else (a terminal, a file, stdout shared with stderr, a platform without
``fcntl``) falls back to ``stdio_server()``: non-blocking mode is a property of the open file,
and setting it on a terminal or on a pipe that stderr writes to would surprise its other
users.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
import sys
from collections.abc import AsyncIterator
from typing import Any, cast

from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server

log = logging.getLogger(__name__)

#: Longest message accepted, in bytes (the SDK has no limit; a line past this is dropped).
MAX_LINE = 64 << 20
#: Seconds to finish sending buffered output at exit to a client that has stopped reading.
CLOSE_TIMEOUT = 5.0


#: JSON-RPC 2.0 error codes for a line the SDK cannot take (it would drop it unanswered).
PARSE_ERROR, INVALID_REQUEST = -32700, -32600


def rejection(line: str) -> dict[str, Any] | None:
    """The JSON-RPC error answering ``line``, or None if the SDK accepts it (or it is blank).

    The SDK drops a line it cannot validate without answering, so a client waits forever for
    it: valid JSON its parser refuses (a lone surrogate, nesting past its depth limit), or no
    JSON-RPC message at all. The check is the SDK's own validation (about 5 µs a message), so
    exactly the lines it would drop are answered. The request's id is echoed when the line is
    a JSON object with a ``method`` and a string or integer ``id``; otherwise it is null.
    """
    import mcp_types
    import pydantic

    if not line.strip():
        return None
    try:
        mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
        return None
    except pydantic.ValidationError as exc:
        unreadable = [e for e in exc.errors() if e["type"] == "json_invalid"]
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError):
        doc = None
    request_id = None
    if isinstance(doc, dict) and "method" in doc:
        rid = doc.get("id")
        if isinstance(rid, str) or (isinstance(rid, int) and not isinstance(rid, bool)):
            request_id = rid
    if unreadable:  # the message is generated text and a position, never the input
        error = {"code": PARSE_ERROR, "message": f"Parse error: {unreadable[0]['msg']}"}
    else:
        error = {"code": INVALID_REQUEST, "message": "Invalid Request: not a JSON-RPC 2.0 message"}
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


class PipeLines:
    """Lines from a pipe, decoded as the SDK decodes them (UTF-8, errors replaced).

    With ``answer`` (the wire's writer), a line the SDK would drop unanswered is answered
    here with a JSON-RPC error (:func:`rejection`) and not passed on.
    """

    def __init__(self, reader: asyncio.StreamReader, answer: PipeWriter | None = None) -> None:
        self.reader = reader
        self.answer = answer

    def __aiter__(self) -> PipeLines:
        return self

    async def __anext__(self) -> str:
        while True:
            try:
                line = await self.reader.readline()
            except ValueError:  # longer than the limit: StreamReader discarded it
                log.warning("dropped an incoming message longer than the limit")
                continue
            if not line:
                raise StopAsyncIteration
            text = line.decode("utf-8", errors="replace")
            error = None if self.answer is None else rejection(text)
            if error is None:
                return text
            assert self.answer is not None
            with contextlib.suppress(BrokenPipeError):  # one write: frames never interleave
                await self.answer.write(json.dumps(error) + "\n")
                await self.answer.flush()


class PipeWriter(asyncio.Protocol):
    """The write end of the wire: ``write``/``flush`` as the SDK's stdout writer calls them,
    and the protocol of the loop's pipe transport (flow control, close)."""

    def __init__(self) -> None:
        self.transport: asyncio.WriteTransport | None = None
        self._room = asyncio.Event()
        self._room.set()
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)

    def pause_writing(self) -> None:  # the client is not reading
        self._room.clear()

    def resume_writing(self) -> None:
        self._room.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._room.set()
        if not self.closed.done():
            self.closed.set_result(None)

    async def write(self, text: str) -> None:
        """Queue ``text``; the transport writes at once when the pipe has room.

        Raises:
            BrokenPipeError: the client closed its end (as the SDK's writer would raise).
        """
        if self.transport is None or self.transport.is_closing():
            raise BrokenPipeError("the client closed the connection")
        self.transport.write(text.encode("utf-8"))

    async def flush(self) -> None:
        """Wait while the client is not reading (back pressure above the high-water mark)."""
        await self._room.wait()

    async def aclose(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Send what is still buffered (for at most ``timeout`` seconds), then close."""
        if self.transport is None:
            return
        self.transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            self.transport.abort()


def can_serve_fast() -> bool:
    """True if fd 0 and fd 1 are two distinct pipes, neither shared with stderr (which must
    be open: stray output is diverted there)."""
    if sys.platform == "win32":  # pragma: no cover - POSIX only
        return False
    try:
        ins, outs, err = os.fstat(0), os.fstat(1), os.fstat(2)
    except OSError:
        return False
    if not (stat.S_ISFIFO(ins.st_mode) and stat.S_ISFIFO(outs.st_mode)):
        return False
    files = {(ins.st_dev, ins.st_ino), (outs.st_dev, outs.st_ino), (err.st_dev, err.st_ino)}
    return len(files) == 3


@contextlib.asynccontextmanager
async def fast_stdio() -> AsyncIterator[tuple[Any, Any]]:
    """The SDK's (read_stream, write_stream) pair, served by the event loop's pipes.

    Must run on the asyncio backend, with fd 0 and fd 1 pipes (see :func:`can_serve_fast`).
    """
    import fcntl

    loop = asyncio.get_running_loop()
    # The transports own (and close, e.g. at end of input) their own duplicates of the wire;
    # ``saved`` keeps another pair to put back on fd 0/1 at exit.
    saved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in (0, 1)]
    wire_in = os.fdopen(fcntl.fcntl(saved[0], fcntl.F_DUPFD_CLOEXEC, 3), "rb", buffering=0)
    wire_out = os.fdopen(fcntl.fcntl(saved[1], fcntl.F_DUPFD_CLOEXEC, 3), "wb", buffering=0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    writer: PipeWriter | None = None
    read_transport: asyncio.BaseTransport | None = None
    try:
        reader = asyncio.StreamReader(limit=MAX_LINE, loop=loop)
        read_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader, loop=loop), wire_in
        )
        _, writer = await loop.connect_write_pipe(PipeWriter, wire_out)
        # The SDK types these as anyio.AsyncFile[str]; it only iterates, writes and flushes.
        lines = PipeLines(reader, answer=writer)
        async with stdio_server(cast(Any, lines), cast(Any, writer)) as streams:
            yield streams
    finally:
        if writer is not None:
            await writer.aclose()
        if read_transport is not None:
            read_transport.close()
        wire_in.close()  # no-ops once their transports have closed them
        wire_out.close()
        # Put the wire back on fd 0/1, blocking as we found it.
        for fd, wire in enumerate(saved):
            os.dup2(wire, fd)
            os.close(wire)
            with contextlib.suppress(OSError):
                os.set_blocking(fd, True)


async def serve_stdio(server: MCPServer[Any]) -> None:
    """Serve ``server`` over this process's stdin and stdout until the client disconnects."""
    if not can_serve_fast():
        await server.run_stdio_async()
        return
    lowlevel = server._lowlevel_server  # as MCPServer.run_stdio_async
    async with fast_stdio() as (read_stream, write_stream):
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
