"""Charter's stdio transport (``charter/server/stdio.py``): the event loop's own pipes.

Real pipes and real subprocesses throughout: what the transport must keep from the SDK's
(the wire protected from stray output, descriptors restored) and what it adds (no thread
hop, back pressure, a bounded line, a fallback wherever non-blocking mode would leak).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from rawstdio import exchange

from charter.server.stdio import PipeLines, PipeWriter

#: A bare MCPServer served by ``serve_stdio``; one tool prints to stdout, as a careless
#: library might; after the client leaves, the script reports its descriptors on fd 1.
SERVER = textwrap.dedent(
    """
    import os, sys
    from mcp.server.mcpserver import MCPServer
    from charter.server.stdio import can_serve_fast, serve_stdio

    server = MCPServer("t")

    @server.tool(name="noisy")
    async def noisy() -> str:
        print("stray output")
        os.system("echo from a child process")
        return "ok"

    fast = can_serve_fast()
    asyncio.run(serve_stdio(server))
    print(json.dumps({"fast": fast, "blocking": [os.get_blocking(0), os.get_blocking(1)]}))
    """
).replace("import os, sys", "import asyncio, json, os, sys")

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
CALL = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "noisy"}}


def _exchange(tmp_path: Path, *, stderr_to_stdout: bool = False) -> tuple[list[str], str]:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if stderr_to_stdout else subprocess.PIPE,
        text=True,
    )
    return exchange(proc, (INITIALIZE, CALL))


def test_pipes_are_served_without_threads_and_the_wire_stays_clean(tmp_path: Path) -> None:
    lines, err = _exchange(tmp_path)
    *wire, last = lines
    assert json.loads(last) == {"fast": True, "blocking": [True, True]}
    messages = [json.loads(line) for line in wire]  # a stray print would fail here
    assert [m["id"] for m in messages] == [1, 2]
    assert messages[1]["result"]["content"][0]["text"] == "ok"
    assert "stray output" in err and "from a child process" in err


def test_stdout_shared_with_stderr_falls_back_to_the_sdk_transport(tmp_path: Path) -> None:
    lines, _ = _exchange(tmp_path, stderr_to_stdout=True)
    report = json.loads(lines[-1])
    assert report["fast"] is False  # O_NONBLOCK on the shared pipe would reach stderr too
    replies = [json.loads(x) for x in lines if x.startswith('{"jsonrpc"')]
    assert [m["id"] for m in replies] == [1, 2]


def test_a_file_on_stdin_falls_back(tmp_path: Path) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_text(json.dumps(INITIALIZE) + "\n")
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    with requests.open() as stdin:
        done = subprocess.run(
            [sys.executable, str(script)],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    *wire, last = done.stdout.splitlines()
    assert json.loads(last)["fast"] is False
    assert json.loads(wire[0])["id"] == 1


async def test_an_overlong_line_is_dropped_and_reading_goes_on() -> None:
    reader = asyncio.StreamReader(limit=64)
    reader.feed_data(b"x" * 500 + b"\n" + b'{"next": 1}\n' + b"tail without newline")
    reader.feed_eof()
    assert [line async for line in PipeLines(reader)] == ['{"next": 1}\n', "tail without newline"]


async def test_flush_waits_while_the_client_is_not_reading() -> None:
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    _, writer = await loop.connect_write_pipe(PipeWriter, os.fdopen(write_fd, "wb", buffering=0))
    payload = "y" * (1 << 20)  # far past the pipe's buffer and the high-water mark
    await writer.write(payload)
    flush = asyncio.ensure_future(writer.flush())
    await asyncio.sleep(0.2)
    assert not flush.done()  # back pressure: the client has read nothing yet

    received = bytearray()

    def drain() -> None:
        while len(received) < len(payload):
            received.extend(os.read(read_fd, 1 << 16))

    reading = threading.Thread(target=drain)
    reading.start()
    await asyncio.wait_for(flush, 10)
    await writer.aclose()
    reading.join(10)
    os.close(read_fd)
    assert bytes(received) == payload.encode()


async def test_writing_after_the_client_left_raises_broken_pipe() -> None:
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    transport, writer = await loop.connect_write_pipe(
        PipeWriter, os.fdopen(write_fd, "wb", buffering=0)
    )
    os.close(read_fd)
    await writer.write("first\n")  # the transport notices the broken pipe and closes
    await asyncio.sleep(0.05)
    assert transport.is_closing()
    try:
        await writer.write("second\n")
    except BrokenPipeError:
        pass
    else:
        raise AssertionError("a write to a closed client must fail")
    await writer.aclose()


def test_a_closed_stderr_falls_back(tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    proc = subprocess.Popen(
        ["sh", "-c", 'exec 2>&- "$0" "$1"', sys.executable, str(script)],  # no fd 2 at all
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(json.dumps(INITIALIZE) + "\n", timeout=30)
    *wire, last = out.splitlines()
    assert json.loads(last)["fast"] is False
    assert json.loads(wire[0])["id"] == 1
