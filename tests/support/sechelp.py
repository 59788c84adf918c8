"""Helpers for the security tests: homes with every capability, a raw stdio client, checks.

pytest runs with ``--import-mode=importlib``, so ``tests/security/conftest.py`` puts this
folder on ``sys.path`` and the tests import this module as ``sechelp``.

The raw client speaks newline-delimited JSON-RPC to a real ``charter serve`` subprocess
(the 2025-11-25 initialize handshake hosts use). Unlike the SDK client it can keep many
calls in flight and be cut off by ``kill -9`` at any instant, which the crash and
concurrency tests need.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import uvicorn

from charter.config import Settings
from charter.evidence.entries import Entry
from charter.evidence.verifier import VerifyReport
from charter.home import Home
from charter.server.http import build_http_app
from charter.testing import raw_db, raw_tx
from charter.tools import audit, identity, tokens

#: The local transport delivers between agents of one home: this agent is the mailbox.
MAILBOX = "mailbox@agents.example"
#: Generous: the tests send many messages in a few seconds.
RATE_PER_HOUR = 10_000
PROTOCOL_VERSION = "2025-11-25"


async def add_mail_agent(home: Home, name: str, scopes: list[str], **kw: Any) -> None:
    """Register ``name`` with address ``<name>@agents.example`` and a high send rate."""
    email = {"address": f"{name}@agents.example", "rate_per_hour": RATE_PER_HOUR}
    policy = kw.pop("policy", {}) | {"email": email}
    await identity.add_agent(home, name, scopes=scopes, policy=policy, **kw)


async def add_mailbox(home: Home) -> None:
    """The recipient agent every test mail goes to (local transport)."""
    await identity.add_agent(
        home, "mailbox", scopes=["email:read"], policy={"email": {"address": MAILBOX}}
    )


def send_args(subject: str) -> dict[str, Any]:
    """Arguments of an ``email_send`` to the mailbox."""
    return {"to": [MAILBOX], "subject": subject, "text": f"body of {subject}"}


def entries(home: Home) -> list[dict[str, Any]]:
    """Every ledger entry's fields, oldest first."""
    return [Entry.from_body(b).fields for b in raw_tx(home).ledger.iter_bodies()]


async def open_home(root: Path) -> Home:
    """Open an existing home (a fresh connection: sees everything committed so far)."""
    return await Home.open(Settings(home=root))


async def verify(root: Path) -> VerifyReport:
    """Verify the home's whole ledger and that its seqs are exactly 0..n-1.

    Raises:
        LedgerIntegrityError: at the first bad entry.
    """
    async with await open_home(root) as home:
        seqs = [r[0] for r in raw_db(home).execute("SELECT seq FROM ledger ORDER BY seq")]
        assert seqs == list(range(len(seqs))), "the ledger's seqs have a gap"
        report = await audit.verify_home(home)
        assert report.size == len(seqs)
        return report


def server_env(root: Path, **extra: str) -> dict[str, str]:
    """The minimal environment MCP hosts give a stdio server (mcp-sdk-2.md §2)."""
    return {"CHARTER_HOME": str(root), "PATH": os.environ.get("PATH", ""), **extra}


def charter_cli(
    root: Path, *args: str, timeout: float = 60, prefix: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run ``charter ARGS`` against the home at ``root`` (``prefix`` wraps the command)."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "charter", *args],
        env=server_env(root),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``charter ARGS`` in-process (fast); an uncaught exception shows as a traceback."""
    from click.testing import CliRunner

    from charter.cli import cli

    result = CliRunner().invoke(cli, list(args), env={"CHARTER_HOME": str(root)})
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, stderr)


@asynccontextmanager
async def http_server(root: Path) -> AsyncIterator[str]:
    """``charter serve --http`` in a thread on a free loopback port; yields the MCP URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    issuer = f"http://127.0.0.1:{sock.getsockname()[1]}"
    home = await open_home(root)
    await tokens.set_issuer(home, issuer)
    server = uvicorn.Server(
        uvicorn.Config(build_http_app(home, issuer_url=issuer), log_level="warning")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            assert time.monotonic() < deadline, "the HTTP server did not start"
            time.sleep(0.02)
        yield tokens.resource_url(issuer)
    finally:
        server.should_exit = True
        thread.join(15)
        await home.close()
        sock.close()


class ServerGone(Exception):
    """The server process exited (or was killed) before answering."""


class RawStdioServer:
    """``charter serve --agent NAME`` in a subprocess, driven with raw JSON-RPC lines."""

    def __init__(
        self, root: Path, agent: str, stderr: Path, *, prefix: Sequence[str] = (), **env: str
    ) -> None:
        """Start the server; ``prefix`` wraps the command (e.g. ``prlimit --fsize=N``)."""
        self._stderr: IO[bytes] = open(stderr, "ab")  # noqa: SIM115 - closed in close()/kill()
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "charter", "serve", "--agent", agent],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=server_env(root, **env),
        )
        self._next_id = 0
        self._lock = threading.Lock()
        self._inbox: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self.responses: dict[int, dict[str, Any]] = {}
        self.garbage: list[bytes] = []
        #: JSON-RPC errors with a null id: answers to lines whose request id was unreadable.
        self.unanswerable: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    # -- wire ------------------------------------------------------------------------------

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                self.garbage.append(line)
                continue
            if isinstance(message, dict) and "id" in message:
                self._inbox.put(message)
        self._inbox.put(None)

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError) as exc:
            raise ServerGone("the server's stdin is closed") from exc

    def send_raw(self, line: bytes) -> None:
        """Write bytes as they are (a malformed message, say) followed by a newline."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any] | None = None) -> int:
        """Send a request; return its id (answers are collected by :meth:`wait`)."""
        with self._lock:
            self._next_id += 1
            rid = self._next_id
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        self._send(message)
        return rid

    def wait(self, rid: int, timeout: float = 30) -> dict[str, Any]:
        """The response to request ``rid``.

        Raises:
            ServerGone: the server's stdout closed first.  TimeoutError: no answer in time.
        """
        deadline = time.monotonic() + timeout
        while rid not in self.responses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer to request {rid}")
            try:
                message = self._inbox.get(timeout=remaining)
            except queue.Empty:
                continue
            if message is None:
                self._inbox.put(None)  # keep signalling the end to later waits
                raise ServerGone("the server closed its stdout")
            if message["id"] is None:  # an error for a line with no id to echo
                self.unanswerable.append(message)
                continue
            self.responses[int(message["id"])] = message
        return self.responses[rid]

    def next_response(self, timeout: float = 30) -> dict[str, Any]:
        """The next response to arrive, whichever request it answers.

        Raises:
            ServerGone: the server's stdout closed.  queue.Empty: nothing in time.
        """
        message = self._inbox.get(timeout=timeout)
        if message is None:
            self._inbox.put(None)
            raise ServerGone("the server closed its stdout")
        self.responses[int(message["id"])] = message
        return message

    # -- MCP -------------------------------------------------------------------------------

    def initialize(self, timeout: float = 60) -> dict[str, Any]:
        """Run the initialize handshake; return the server's result."""
        rid = self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "charter-security-tests", "version": "1"},
            },
        )
        result = self.wait(rid, timeout)["result"]
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return dict(result)

    def call(self, name: str, arguments: dict[str, Any]) -> int:
        """Start a ``tools/call``; return its request id."""
        return self.request("tools/call", {"name": name, "arguments": arguments})

    # -- lifecycle -------------------------------------------------------------------------

    def kill(self) -> None:
        """``kill -9`` the server."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._release()

    def close(self, timeout: float = 30) -> int:
        """Close stdin (a clean shutdown) and wait for the exit status."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=30)
        self._release()
        return code

    def _release(self) -> None:
        self._reader.join(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._stderr.close()


def tool_result(response: dict[str, Any]) -> tuple[bool, dict[str, Any] | None, str]:
    """(ok, structured content, text) of a ``tools/call`` response."""
    if "error" in response:
        return False, None, str(response["error"].get("message", ""))
    result = response["result"]
    texts = [c.get("text", "") for c in result.get("content", []) if c.get("type") == "text"]
    return not result.get("isError", False), result.get("structuredContent"), "\n".join(texts)
