"""``charter daemon``: Charter as its own OS account, reached by agents through a Unix socket.

The daemon's account owns the home (keys, database); an agent's account cannot read it. An
agent's MCP client runs ``charter serve --agent NAME --connect SOCKET`` (a byte relay that needs
no home) as the agent's account. Each connection starts with one line from the relay::

    {"charter_connect": 1, "agent": "NAME"}

The daemon reads the caller's OS account from the socket itself (``SO_PEERCRED``: the kernel's
word, not the client's) and serves the connection as ``NAME`` only if the owner bound that
account to the agent (the charter's signed policy ``os_users``, set with ``charter agent add
NAME --os-user USER``). It answers one line, ``{"charter": "ok"}`` or ``{"charter_refused":
REASON}``; a refusal is recorded in the ledger under the log key (``daemon.connect``, denied)
and the connection closed. After ``ok`` the connection carries the MCP stdio stream (JSON-RPC
lines) for that agent, served by the same gate as ``charter serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import secrets
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from mcp.server.stdio import stdio_server

from charter.errors import AgentRevoked, CharterError, ConfigError, NotFound
from charter.home import Home
from charter.server.calls import hash_value, refusal_draft
from charter.server.deps import Deps
from charter.server.stdio import MAX_LINE, PipeLines
from charter.server.wiring import build_server
from charter.tools.identity import AgentContext, load_agent
from charter.tools.os_users import bound_users

log = logging.getLogger("charter.daemon")

#: Longest first line (the hello) and how long a client has to send it.
MAX_HELLO = 4096
HELLO_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Peer:
    """The OS account at the other end of a connection, as the kernel reports it."""

    pid: int
    uid: int
    gid: int

    @property
    def user(self) -> str:
        """The account's name (``uid:N`` when it has none)."""
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return f"uid:{self.uid}"


def peer_of(sock: socket.socket) -> Peer:
    """The peer credentials of a connected Unix socket (Linux ``SO_PEERCRED``).

    Raises:
        ConfigError: the platform has no peer credentials for this socket.
    """
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:  # pragma: no cover - Linux only; macOS would use getpeereid
        raise ConfigError("this platform gives no peer credentials on a Unix socket")
    raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


class SocketWriter:
    """The write end of a connection, as the SDK's stdout writer is called."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    async def write(self, text: str) -> None:
        """Queue ``text``.

        Raises:
            BrokenPipeError: the client closed the connection.
        """
        if self.writer.is_closing():
            raise BrokenPipeError("the client closed the connection")
        self.writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        """Wait while the client is not reading."""
        await self.writer.drain()


class Daemon:
    """Serves every connection of one Unix socket for the agents of one home."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.own_uid = os.getuid()
        self.connections = 0

    async def serve(self, path: Path, ready: asyncio.Event | None = None) -> None:
        """Listen on ``path`` until cancelled.

        Raises:
            ConfigError: something other than a stale socket is at ``path``.
        """
        _clear_stale(path)
        server = await asyncio.start_unix_server(self._connection, path=str(path), limit=MAX_LINE)
        # Any account may connect; who may act as which agent is decided per connection.
        os.chmod(path, 0o666)  # noqa: S103 - the socket admits by peer credentials, not mode
        log.info("charter daemon listening on %s", path)
        if ready is not None:
            ready.set()
        try:
            async with server:
                await server.serve_forever()
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            sock = writer.get_extra_info("socket")
            peer = peer_of(sock)
            agent = await self._admit(peer, reader, writer)
            if agent is not None:
                await self._serve_agent(agent, reader, writer)
        except Exception:  # one connection must never take the daemon down
            log.exception("connection failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _admit(
        self, peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> AgentContext | None:
        """Read the hello and decide; answer ok, or refuse (recorded) and return None."""
        try:
            line = await asyncio.wait_for(reader.readline(), HELLO_TIMEOUT)
        except (TimeoutError, ValueError):
            line = b""
        name = _hello_agent(line)
        if name is None:
            await self._refuse(writer, peer, None, "the connection did not start with a hello")
            return None
        try:
            agent = await load_agent(self.home, name)
        except (NotFound, AgentRevoked, ConfigError) as exc:
            await self._refuse(writer, peer, name, exc.public_message)
            return None
        if peer.uid != self.own_uid and peer.user not in bound_users(agent.charter.policy):
            await self._refuse(
                writer,
                peer,
                name,
                f"OS account {peer.user!r} is not bound to agent {name!r} "
                f"(the owner binds it with `charter agent update {name} --os-user USER`)",
            )
            return None
        writer.write(b'{"charter": "ok"}\n')
        await writer.drain()
        log.info("serving agent %s to OS account %s (pid %d)", name, peer.user, peer.pid)
        return agent

    async def _refuse(
        self, writer: asyncio.StreamWriter, peer: Peer, name: str | None, reason: str
    ) -> None:
        log.warning("refused OS account %s (pid %d): %s", peer.user, peer.pid, reason)
        args: dict[str, Any] = {"os_user": peer.user, "uid": peer.uid, "agent": name}
        draft = refusal_draft(
            self.home,
            action="daemon.connect",
            args=args,
            args_hash=hash_value(args),
            session=f"daemon-{secrets.token_hex(4)}",
            reason=reason,
        )
        try:
            await self.home.store.append([draft])
        except CharterError:
            log.exception("could not record a refused connection")
        with contextlib.suppress(ConnectionError):
            writer.write(json.dumps({"charter_refused": reason}).encode() + b"\n")
            await writer.drain()

    async def _serve_agent(
        self, agent: AgentContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        async def resolve() -> AgentContext:
            return agent

        server = build_server(Deps(home=self.home, resolve_agent=resolve))
        lowlevel = server._lowlevel_server  # as MCPServer.run_stdio_async
        out = SocketWriter(writer)
        lines = PipeLines(reader, answer=cast(Any, out))
        async with stdio_server(cast(Any, lines), cast(Any, out)) as (read_stream, write_stream):
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


def _hello_agent(line: bytes) -> str | None:
    """The agent a hello line names, or None if it is not a hello."""
    if not line or len(line) > MAX_HELLO:
        return None
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("charter_connect") != 1:
        return None
    name = doc.get("agent")
    return name if isinstance(name, str) and 0 < len(name) <= 64 else None


def _clear_stale(path: Path) -> None:
    """Remove a socket left by a daemon that died; refuse to touch anything else."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # nobody listens: a stale socket
        return
    finally:
        probe.close()
    raise ConfigError(f"a daemon is already listening on {path}")
