"""Serve an ASGI app with uvicorn in a thread on a socket the test bound, until the block ends
(the HTTP tests: Charter's server, the documented DPoP relying party)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


class _Server(uvicorn.Server):
    """uvicorn's server, telling when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@contextmanager
def serving(app: Any, sock: socket.socket) -> Iterator[None]:
    """``app`` served on ``sock`` in a daemon thread; stopped (and joined) when the block ends."""
    server = _Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert server.ready.wait(15), "the HTTP server did not start"
        yield
    finally:
        server.should_exit = True
        thread.join(15)
