"""Running the console: bound to loopback only, on a socket it opens itself.

:func:`running_console` serves it on the current event loop (the CLI and the tests); the
socket is bound before the URL is printed, so the URL names the port actually listened on
(``--port 0`` picks a free one).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn

from charter.console.app import Console, build_app
from charter.console.auth import ConsoleAuth
from charter.home import Home

HOST = "127.0.0.1"
DEFAULT_PORT = 8766


@dataclass(frozen=True, slots=True)
class Running:
    """A console that is serving: its base URL and its one-time login URL."""

    base: str
    login_url: str
    auth: ConsoleAuth


def bind(port: int) -> socket.socket:
    """A listening TCP socket on the loopback address only (never another interface)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(64)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def running_console(
    home: Home, *, port: int = DEFAULT_PORT, passphrase: bytes | None = None
) -> AsyncIterator[Running]:
    """Serve the console until the block ends.

    Raises:
        OSError: the port is taken.
    """
    sock = bind(port)
    address, actual = sock.getsockname()[:2]
    auth = ConsoleAuth()
    app = build_app(Console(home=home, passphrase=passphrase, auth=auth, port=actual))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        base = f"http://{address}:{actual}"
        yield Running(base=base, login_url=f"{base}/login?token={auth.login_token}", auth=auth)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
