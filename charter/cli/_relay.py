"""``charter serve --connect SOCKET``: relay this process's stdio to a Charter daemon.

The relay holds no home, no key and no database: it says which agent it wants, waits for the
daemon's yes (the daemon checks this process's OS account itself), then copies bytes both ways
until either side closes. A refusal is one line on stderr and exit status 3.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
from pathlib import Path

from charter.errors import CharterError, ConfigError

#: Longest answer line the daemon sends before the MCP stream starts.
_MAX_ANSWER = 4096
_CHUNK = 65536


class Refused(CharterError):
    """The daemon refused this account or agent."""

    exit_code = 3


def relay(socket_path: Path, agent: str) -> None:
    """Connect, ask for ``agent``, then relay stdin/stdout until either side closes.

    Raises:
        ConfigError: the daemon cannot be reached.  Refused: it refused (its reason).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(socket_path))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot reach the Charter daemon at {socket_path}: {exc.strerror}"
        ) from exc
    with sock:
        sock.sendall(json.dumps({"charter_connect": 1, "agent": agent}).encode() + b"\n")
        answer = _read_line(sock)
        try:
            doc = json.loads(answer) if answer else {}
        except ValueError:
            doc = {}
        if not isinstance(doc, dict) or doc.get("charter") != "ok":
            reason = doc.get("charter_refused") if isinstance(doc, dict) else None
            raise Refused(str(reason or "the daemon closed the connection"))
        _pump(sock)


def _read_line(sock: socket.socket) -> bytes:
    """One line, read a byte at a time (nothing after it may be consumed here)."""
    out = bytearray()
    while len(out) < _MAX_ANSWER:
        byte = sock.recv(1)
        if not byte or byte == b"\n":
            break
        out += byte
    return bytes(out)


def _pump(sock: socket.socket) -> None:
    """stdin → socket on a thread, socket → stdout here; ends when the daemon closes."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()

    def upstream() -> None:
        with contextlib.suppress(OSError):
            while chunk := os.read(stdin, _CHUNK):
                sock.sendall(chunk)
        with contextlib.suppress(OSError):  # the client is done: the daemon ends the session
            sock.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, name="charter-relay", daemon=True).start()
    while chunk := sock.recv(_CHUNK):
        view = memoryview(chunk)
        while view:
            view = view[os.write(stdout, view) :]
