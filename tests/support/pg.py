"""A private PostgreSQL cluster on loopback, for tests and benchmarks (issue 18).

:class:`PgCluster` runs ``initdb`` in a new temporary folder, starts the server on 127.0.0.1
on a free port (its Unix socket in that folder, never the system's), and hands out DSNs.
Nothing system-wide is used or changed: Debian's own ``main`` cluster may not even exist.

- **Not as root.** ``initdb`` and ``postgres`` refuse to run as root, so when this process is
  root every server command runs as ``nobody`` through ``runuser -u nobody --``, in a folder
  ``nobody`` owns. Clients (this process, ``psql``) connect over TCP as the superuser
  ``charter`` with ``trust`` authentication: only loopback listens.
- **Durable like production.** ``fsync=on`` and ``synchronous_commit=on`` (also
  ``full_page_writes=on``), written into the cluster's ``postgresql.conf`` so a restart keeps
  them: an acknowledged commit is on disk, and crash tests mean something.
- **Faults.** :meth:`PgCluster.restart` (fast stop, start on the same port: clients must
  reconnect), :meth:`PgCluster.crash` (``pg_ctl -m immediate``: no shutdown checkpoint, the
  next start replays the WAL) then :meth:`PgCluster.start`.
- **Found where Debian puts it.** The server programs are not on PATH on Debian:
  :func:`find_pg_bin` takes the newest ``/usr/lib/postgresql/*/bin`` (or ``initdb`` on PATH).
  ``.ci/install-postgres`` installs the package. :func:`require_pg_bin` fails a test when
  ``CI`` is set and PostgreSQL is missing, and skips it otherwise.

Use ``with PgCluster() as pg: dsn = pg.create_database()``; :meth:`PgCluster.close` stops the
server (fast) and removes the folder, and runs at interpreter exit for a cluster left open.
pytest fixtures over it are in ``pgfixtures.py``.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from types import TracebackType
from typing import Self

LOOPBACK = "127.0.0.1"
#: The cluster's superuser (initdb -U); clients connect as this role.
SUPERUSER = "charter"
#: Settings written into postgresql.conf (a restart keeps them).
DURABLE_SETTINGS: dict[str, str] = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
}
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_START_ATTEMPTS = 3


class PostgresError(RuntimeError):
    """The cluster could not be created, started, stopped or queried."""


def find_pg_bin() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``, or None if not installed."""
    folders = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parent.name.split(".")],
    )
    found = shutil.which("initdb")
    candidates = [Path(p) for p in reversed(folders)]
    if found:
        candidates.append(Path(found).parent)
    for folder in candidates:
        if all(os.access(folder / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def find_psql() -> str | None:
    """``psql`` on PATH, or in the server's bin folder."""
    found = shutil.which("psql")
    if found:
        return found
    folder = find_pg_bin()
    if folder is not None and os.access(folder / "psql", os.X_OK):
        return str(folder / "psql")
    return None


MISSING = "PostgreSQL is not installed: run .ci/install-postgres (Debian postgresql)"


def require_pg_bin() -> Path:
    """The server's bin folder; when it is missing, fail if ``CI`` is set, else skip."""
    import pytest  # only tests call this; benchmarks use find_pg_bin

    folder = find_pg_bin()
    if folder is not None and find_psql() is not None:
        return folder
    if os.environ.get("CI"):
        pytest.fail(f"{MISSING}; CI is set, so PostgreSQL tests must not be skipped", pytrace=False)
    pytest.skip(MISSING)


def free_port() -> int:
    """A TCP port on loopback nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """A private PostgreSQL cluster in a temporary folder, on 127.0.0.1 (see the module doc).

    ``start()`` (or ``with``) creates and starts it; the port stays the same across
    :meth:`restart` and :meth:`crash` + :meth:`start`, so a DSN stays valid.
    """

    def __init__(self, *, bin_dir: Path | None = None, settings: dict[str, str] | None = None):
        folder = bin_dir or find_pg_bin()
        if folder is None:
            raise PostgresError(MISSING)
        psql = find_psql()
        if psql is None:
            raise PostgresError(MISSING)
        self.bin = folder
        self._psql = psql
        self.host = LOOPBACK
        self.port = 0
        self.user = SUPERUSER
        self.settings = {**DURABLE_SETTINGS, **(settings or {})}
        self._owner = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="charter-pg-"))
        if self._owner is not None:
            os.chown(self.root, self._owner.pw_uid, self._owner.pw_gid)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.running = False
        self._closed = False
        atexit.register(self.close)

    # -- life cycle ----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Create the cluster on first use, then start the server and wait until it accepts."""
        if self._closed:
            raise PostgresError("this cluster was closed")
        if self.running:
            return
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        keep_port = self.port != 0
        for attempt in range(_START_ATTEMPTS):
            if not keep_port:
                self.port = free_port()
            self._write_port()
            result = self._server("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
                                  "-t", "60", "start")  # fmt: skip
            if result.returncode == 0:
                self.running = True
                return
            # Another process may have taken the free port between the probe and the bind.
            if keep_port or attempt == _START_ATTEMPTS - 1:
                raise PostgresError(f"PostgreSQL did not start: {self._failure(result)}")
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (clients cut off, clean checkpoint) or ``immediate``."""
        if not self.running:
            return
        result = self._server("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        if result.returncode != 0:
            raise PostgresError(f"PostgreSQL did not stop: {self._failure(result)}")
        self.running = False

    def restart(self) -> None:
        """Fast stop then start on the same port: open connections break, new ones work."""
        self.stop("fast")
        self.start()

    def crash(self) -> None:
        """Stop without a shutdown checkpoint (``-m immediate``); :meth:`start` recovers."""
        self.stop("immediate")

    def close(self) -> None:
        """Stop the server (fast) and remove its folder. Safe to call twice."""
        if self._closed:
            return
        try:
            self.stop("fast")
        except PostgresError:
            with contextlib.suppress(PostgresError):
                self.stop("immediate")
        finally:
            self._closed = True
            shutil.rmtree(self.root, ignore_errors=True)
            atexit.unregister(self.close)

    # -- databases -----------------------------------------------------------------------------

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq URI for ``dbname`` on this cluster (asyncpg and psycopg both take it)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (from ``template0``: a file copy, fast); return its DSN."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        _check_name(name)
        self.psql(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'")
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, closing any connection still open to it."""
        _check_name(name)
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL through ``psql`` (stop at the first error); return its unaligned output."""
        if not self.running:
            raise PostgresError("the cluster is not running")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        argv = [self._psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        result = subprocess.run(
            [*argv, "-d", self.dsn(dbname), "-c", sql],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise PostgresError(f"psql failed: {result.stderr.strip()}")
        return result.stdout

    # -- internals -----------------------------------------------------------------------------

    def _initdb(self) -> None:
        result = self._server(
            "initdb", "-D", str(self.data), "-U", self.user, "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip
        if result.returncode != 0:
            raise PostgresError(f"initdb failed: {self._failure(result)}")
        lines = [f"{key} = {value}" for key, value in self.settings.items()]
        lines += [
            f"listen_addresses = '{LOOPBACK}'",
            f"unix_socket_directories = '{self.root}'",
            "max_connections = 200",  # many servers x many clients in the fault tests
            "include_if_exists = 'charter-port.conf'",
        ]
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# charter test cluster (tests/support/pg.py)\n")
            conf.write("\n".join(lines) + "\n")

    def _write_port(self) -> None:
        port_conf = self.data / "charter-port.conf"
        port_conf.write_text(f"port = {self.port}\n", encoding="utf-8")
        if self._owner is not None:
            os.chown(port_conf, self._owner.pw_uid, self._owner.pw_gid)

    def _server(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a server program, as ``nobody`` when this process is root."""
        argv = [str(self.bin / tool), *args]
        if self._owner is not None:
            argv = ["runuser", "-u", self._owner.pw_name, "--", *argv]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return subprocess.run(
            argv, cwd=self.root, capture_output=True, text=True, env=env, timeout=120, check=False
        )

    def _failure(self, result: subprocess.CompletedProcess[str]) -> str:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        with contextlib.suppress(OSError):
            detail += self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-5:]
        return " | ".join(detail) or f"exit status {result.returncode}"


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a plain database name: {name!r}")
