"""Real mail servers on 127.0.0.1 for tests: aiosmtpd (SMTP) and a private Dovecot (IMAP).

Tests import it by module name (``from mailservers import SmtpServer``): ``tests/conftest.py``
puts ``tests/support`` on ``sys.path`` (pytest's importlib mode adds no test folder), and
mypy finds it through ``mypy_path``. ``tests/mail/conftest.py`` wraps it in fixtures.

Dovecot comes from the ``dovecot-imapd`` Debian package (``.ci/install-mail-servers``). When it
is missing, :func:`find_dovecot` fails the test if the ``CI`` environment variable is set
(non-empty) and skips it only when ``CI`` is unset, so CI can never silently skip mail tests.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import errno
import imaplib
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

LOOPBACK = "127.0.0.1"
"""Every server here listens on IPv4 loopback only."""

SMTP_USERNAME = "agent@example.com"
"""Username the ``smtp_server_auth_starttls`` fixture accepts."""

SMTP_PASSWORD = "correct horse battery staple"
"""Password the ``smtp_server_auth_starttls`` fixture accepts."""

START_TIMEOUT = 10.0
"""Seconds a server may take to accept connections before start() gives up."""

_BIND_ATTEMPTS = 3
"""free_port() can race with other processes; start() retries this often on EADDRINUSE."""


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on ``host`` that was free a moment ago (bind to 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------------------------
# TLS material
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsMaterial:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost."""

    ca: trustme.CA
    server_cert: trustme.LeafCert
    ca_pem: Path
    """The CA certificate (PEM): what a client must trust."""
    cert_pem: Path
    """The server certificate chain (PEM)."""
    key_pem: Path
    """The server private key (PEM)."""
    client_context: ssl.SSLContext
    """A client context that trusts only this CA and checks host names."""

    def server_context(self) -> ssl.SSLContext:
        """Return a new server-side context presenting the certificate."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(ctx)
        return ctx

    def new_client_context(self) -> ssl.SSLContext:
        """Return a new client context trusting this CA (for tests that tweak the context)."""
        return ssl.create_default_context(cafile=str(self.ca_pem))


def make_tls_material(tmp_dir: Path | str) -> TlsMaterial:
    """Create a CA and a 127.0.0.1/localhost server certificate; write PEM files to ``tmp_dir``."""
    directory = Path(tmp_dir)
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert(LOOPBACK, "localhost")
    ca_pem = directory / "ca.pem"
    cert_pem = directory / "cert.pem"
    key_pem = directory / "key.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    cert_pem.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_pem))
    key_pem.chmod(0o600)
    client_context = ssl.create_default_context(cafile=str(ca_pem))
    return TlsMaterial(
        ca=ca,
        server_cert=cert,
        ca_pem=ca_pem,
        cert_pem=cert_pem,
        key_pem=key_pem,
        client_context=client_context,
    )


# --------------------------------------------------------------------------------------------
# SMTP: aiosmtpd
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMessage:
    """One message an :class:`SmtpServer` accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    """The DATA payload exactly as received (CRLF line endings, dot-unstuffed)."""
    message: EmailMessage
    """``data`` parsed with ``email.policy.default``."""
    mail_options: tuple[str, ...]
    """ESMTP MAIL FROM parameters, e.g. ``BODY=8BITMIME`` or ``SMTPUTF8``."""
    authenticated_as: str | None
    """The AUTH username of the session, None when the client did not authenticate."""
    tls: bool
    """True when the session was encrypted (STARTTLS or implicit TLS)."""


class _Handler:
    """aiosmtpd hooks: apply the owner's failure knobs, record accepted messages."""

    def __init__(self, owner: SmtpServer) -> None:
        self._owner = owner

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        owner = self._owner
        if owner.auth_required and not session.authenticated:
            return "530 5.7.0 Authentication required"
        if owner.mail_reply is not None:
            return owner.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self._owner.rcpt_reply_for(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        owner = self._owner
        if owner.data_reply is not None:
            return owner.data_reply
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        transport = server.transport
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        auth_data: object = session.auth_data if session.authenticated else None
        owner._record(
            ReceivedMessage(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=data,
                message=parsed,
                mail_options=tuple(envelope.mail_options),
                authenticated_as=auth_data if isinstance(auth_data, str) else None,
                tls=tls,
            )
        )
        return "250 2.0.0 Message accepted for delivery"


class SmtpServer:
    """An aiosmtpd server on 127.0.0.1 in its own thread and event loop, capturing messages.

    Usable from sync and async tests alike (``with SmtpServer() as smtp:`` or start()/stop()).
    Failure knobs are plain attributes and may be changed while the server runs:

    * ``mail_reply``: reply to every MAIL FROM instead of 250 (e.g. ``"451 4.3.0 Try later"``);
    * ``rcpt_replies``: recipient address (case-insensitive, ``"*"`` for any) to reply,
      e.g. ``{"nobody@example.com": "550 5.1.1 No such user"}``; see :meth:`reject_recipients`;
    * ``data_reply``: reply after DATA instead of accepting, e.g. ``"451 4.3.0 Try again later"``.
    """

    def __init__(
        self,
        *,
        auth: Mapping[str, str] | None = None,
        auth_required: bool | None = None,
        auth_require_tls: bool = True,
        starttls: TlsMaterial | None = None,
        require_starttls: bool = False,
        implicit_tls: TlsMaterial | None = None,
        server_hostname: str = "mail.test",
    ) -> None:
        """Configure the server; nothing listens until start().

        ``auth`` maps usernames to passwords and enables AUTH PLAIN/LOGIN; ``auth_required``
        (default: True when ``auth`` is given) refuses MAIL FROM before a successful AUTH;
        ``auth_require_tls`` hides AUTH until STARTTLS (ignored for implicit TLS, where the
        whole connection is encrypted). ``starttls`` offers STARTTLS, ``require_starttls``
        refuses mail commands before it; ``implicit_tls`` makes this an SMTPS listener.
        """
        if starttls is not None and implicit_tls is not None:
            raise ValueError("choose either starttls or implicit_tls, not both")
        if require_starttls and starttls is None:
            raise ValueError("require_starttls needs starttls=TlsMaterial")
        if auth and auth_require_tls and starttls is None and implicit_tls is None:
            raise ValueError(
                "AUTH would never be offered: "
                "pass starttls=/implicit_tls= or auth_require_tls=False"
            )
        self.host = LOOPBACK
        self.port = 0
        self.auth: dict[str, str] = dict(auth or {})
        self.auth_required = bool(auth) if auth_required is None else auth_required
        self.auth_require_tls = auth_require_tls
        self.starttls = starttls
        self.require_starttls = require_starttls
        self.implicit_tls = implicit_tls
        self.server_hostname = server_hostname
        self.tls = starttls or implicit_tls
        """The TLS material in use (STARTTLS or implicit), or None."""
        self.mail_reply: str | None = None
        self.rcpt_replies: dict[str, str] = {}
        self.data_reply: str | None = None
        self._messages: list[ReceivedMessage] = []
        self._cond = threading.Condition()
        self._controller: Controller | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Start listening on a free 127.0.0.1 port; returns self."""
        if self._controller is not None:
            raise RuntimeError("SmtpServer already started")
        for attempt in itertools.count(1):
            port = free_port()
            controller = self._make_controller(port)
            try:
                controller.start()
            except OSError as exc:
                self._discard(controller)
                if exc.errno == errno.EADDRINUSE and attempt < _BIND_ATTEMPTS:
                    continue
                raise
            except BaseException:
                self._discard(controller)
                raise
            self._controller = controller
            self.port = port
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Stop the server thread and free the port (idempotent)."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._controller is not None

    def _make_controller(self, port: int) -> Controller:
        smtp_kwargs: dict[str, Any] = {}
        if self.auth:
            smtp_kwargs["authenticator"] = self._authenticate
            # aiosmtpd does not count implicit TLS as TLS for AUTH; the socket is encrypted.
            smtp_kwargs["auth_require_tls"] = self.auth_require_tls and self.implicit_tls is None
        if self.starttls is not None:
            smtp_kwargs["tls_context"] = self.starttls.server_context()
            smtp_kwargs["require_starttls"] = self.require_starttls
        ssl_context = self.implicit_tls.server_context() if self.implicit_tls else None
        return Controller(
            _Handler(self),
            hostname=self.host,
            port=port,
            ssl_context=ssl_context,
            server_hostname=self.server_hostname,
            ready_timeout=START_TIMEOUT,
            **smtp_kwargs,
        )

    @staticmethod
    def _discard(controller: Controller) -> None:
        """Release what a failed Controller.start() leaves behind (thread, event loop)."""
        with contextlib.suppress(Exception):
            controller.stop(no_assert=True)
        if not controller.loop.is_running() and not controller.loop.is_closed():
            controller.loop.close()

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: object,
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            password = auth_data.password.decode("utf-8", "replace")
            expected = self.auth.get(login)
            if expected is not None and expected == password:
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)

    # -- failure knobs -----------------------------------------------------------------------

    def rcpt_reply_for(self, address: str) -> str | None:
        """The configured RCPT reply for ``address`` (or for ``"*"``), None to accept."""
        replies = {key.lower(): value for key, value in self.rcpt_replies.copy().items()}
        return replies.get(address.lower(), replies.get("*"))

    def reject_recipients(self, *addresses: str, reply: str = "550 5.1.1 No such user") -> None:
        """Refuse these recipients at RCPT TO with ``reply`` (a permanent failure by default)."""
        for address in addresses:
            self.rcpt_replies[address] = reply

    def temporary_failure(
        self, reply: str = "451 4.3.0 Temporary failure, try again later"
    ) -> None:
        """Answer DATA with a 4xx reply so the message is not accepted."""
        self.data_reply = reply

    def reset_failures(self) -> None:
        """Accept everything again."""
        self.mail_reply = None
        self.rcpt_replies.clear()
        self.data_reply = None

    # -- captured messages -------------------------------------------------------------------

    def _record(self, received: ReceivedMessage) -> None:
        with self._cond:
            self._messages.append(received)
            self._cond.notify_all()

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A snapshot of every message accepted so far, oldest first."""
        with self._cond:
            return list(self._messages)

    def wait_for_messages(self, count: int = 1, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until at least ``count`` messages arrived; raise TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} message(s) within {timeout} s, got {len(self._messages)}"
                )
            return list(self._messages)

    def clear(self) -> None:
        """Forget captured messages."""
        with self._cond:
            self._messages.clear()


# --------------------------------------------------------------------------------------------
# IMAP: Dovecot
# --------------------------------------------------------------------------------------------


class DovecotError(RuntimeError):
    """Dovecot could not be configured, started or used."""


def find_dovecot() -> tuple[str, str]:
    """Paths of ``dovecot`` and ``doveadm``; fail if ``CI`` is set, else skip, when missing."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    dovecot = shutil.which("dovecot", path=search)
    doveadm = shutil.which("doveadm", path=search)
    if dovecot and doveadm:
        return dovecot, doveadm
    message = "dovecot/doveadm not installed: run .ci/install-mail-servers (Debian dovecot-imapd)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI is set, so the IMAP tests must not be skipped", pytrace=False)
    pytest.skip(message)


@dataclass(frozen=True)
class MailAccount:
    """An IMAP login on a :class:`DovecotServer`."""

    address: str
    password: str


@dataclass(frozen=True)
class _Identity:
    """The system user that owns the mail and runs Dovecot's unprivileged processes.

    ``nobody`` when running as root (CI); otherwise the current user, which Dovecot allows
    for a non-root instance (that path is not exercised by CI).
    """

    name: str
    uid: int
    gid: int

    @classmethod
    def for_current_process(cls) -> _Identity:
        entry = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid)


# Dovecot's default auth_username_chars; it lowercases user names (auth_username_format %Lu).
_USERNAME = re.compile(r"[a-z0-9][a-z0-9.\-_@]*")

# Runs Dovecot as a child and, as a child subreaper, also reaps the processes Dovecot's master
# leaves behind when it exits (log, stats), then SIGKILLs stragglers after a grace period.
# Without it they end up as zombies in containers whose PID 1 does not reap (docker w/o init).
_REAPER = r"""
import ctypes, os, signal, sys, time
try:
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
except (AttributeError, OSError):
    pass
argv = sys.argv[1:]
pid = os.posix_spawn(argv[0], argv, os.environ, setpgroup=0)
def forward(signum, frame):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
signal.signal(signal.SIGTERM, forward)
signal.signal(signal.SIGINT, forward)
status, deadline = 1, None
while True:
    try:
        child, raw = os.waitpid(-1, 0 if deadline is None else os.WNOHANG)
    except ChildProcessError:
        break
    if child == pid:
        status, deadline = os.waitstatus_to_exitcode(raw), time.monotonic() + 2.0
    elif child == 0:
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = float("inf")
        time.sleep(0.01)
sys.exit(status if status >= 0 else 128 - status)
"""


class DovecotServer:
    """A private Dovecot IMAP instance in a temporary directory on 127.0.0.1.

    Plain by default (``ssl = no``). With ``tls``, ``port`` also offers STARTTLS and
    ``ssl_port`` is an implicit-TLS (IMAPS) listener. Dovecot counts loopback connections as
    secure, so it cannot refuse plaintext logins here; to prove a client used TLS, look for
    ``TLS`` in :meth:`login_log`. Each user has its own passwd-file (``passwd.d/<address>``,
    SHA512-CRYPT), read at first login, so :meth:`add_user` works before and after start();
    changing an existing user's password may take a second to be seen (Dovecot re-reads a
    passwd-file at most once per second). Use ``with DovecotServer() as imap:`` or
    start()/stop(); stop() also removes the directory of a server that never started.
    """

    def __init__(self, *, tls: TlsMaterial | None = None) -> None:
        """Write the configuration into a new temporary directory; nothing runs until start()."""
        self._dovecot, self._doveadm = find_dovecot()
        self.tls = tls
        self.host = LOOPBACK
        self.port = 0
        """Plain IMAP port (STARTTLS available when ``tls`` is set)."""
        self.ssl_port: int | None = None
        """Implicit-TLS IMAP port, None without ``tls``."""
        self.users: dict[str, str] = {}
        """Address to password of every user added so far."""
        self._identity = _Identity.for_current_process()
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._homes = itertools.count(1)
        # Own directory, not pytest's tmp_path: that is mode 0700 and the mail processes
        # run as an unprivileged user who must reach their maildir.
        self.root = Path(tempfile.mkdtemp(prefix="charter-dovecot-"))
        """The instance directory: dovecot.conf, passwd.d/, dovecot.log, mail/, run/, state/."""
        self.root.chmod(0o755)
        for sub in ("mail", "run", "state", "passwd.d"):
            (self.root / sub).mkdir()
        if os.geteuid() == 0:
            os.chown(self.root / "mail", self._identity.uid, self._identity.gid)
        self._choose_ports()

    # -- paths and logs ----------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        """The instance's dovecot.conf."""
        return self.root / "dovecot.conf"

    @property
    def passwd_dir(self) -> Path:
        """One passwd-file per user, named by the (lowercase) address."""
        return self.root / "passwd.d"

    @property
    def log_path(self) -> Path:
        """Dovecot's log file."""
        return self.root / "dovecot.log"

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of dovecot.log and of Dovecot's stderr."""
        parts = []
        for path in (self.log_path, self.root / "stderr.log"):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                if text:
                    parts.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(parts) or "(no log output)"

    def login_log(self, address: str, expect: int = 1, timeout: float = 5.0) -> list[str]:
        """dovecot.log lines of successful logins of ``address`` (``TLS`` in them if encrypted).

        Dovecot's log process writes these lines asynchronously, after the client already has
        its ``OK``: wait up to ``timeout`` seconds for ``expect`` of them, then return what is
        there (the caller's assertion reports a shortfall).
        """
        needle = f"Login: user=<{address.lower()}>"
        deadline = time.monotonic() + timeout
        while True:
            lines: list[str] = []
            with contextlib.suppress(OSError):
                text = self.log_path.read_text()
                lines = [line for line in text.splitlines() if needle in line]
            if len(lines) >= expect or time.monotonic() >= deadline:
                return lines
            time.sleep(0.02)

    # -- configuration -----------------------------------------------------------------------

    def _choose_ports(self) -> None:
        self.port = free_port(self.host)
        self.ssl_port = None
        if self.tls is not None:
            while self.ssl_port in (None, self.port):
                self.ssl_port = free_port(self.host)
        self._write_config()

    def _write_config(self) -> None:
        root, ident = self.root, self._identity
        listeners = [
            "  inet_listener imap {",
            f"    address = {self.host}",
            f"    port = {self.port}",
        ]
        listeners.append("  }")
        ssl_lines = ["ssl = no"]
        if self.tls is not None:
            ssl_lines = [
                "ssl = yes",
                f"ssl_cert = <{self.tls.cert_pem}",
                f"ssl_key = <{self.tls.key_pem}",
            ]
            listeners += [
                "  inet_listener imaps {",
                f"    address = {self.host}",
                f"    port = {self.ssl_port}",
                "    ssl = yes",
                "  }",
            ]
        passwd = self.passwd_dir / "%u"
        config = [
            f"base_dir = {root / 'run'}",
            f"state_dir = {root / 'state'}",
            f"log_path = {self.log_path}",
            f"instance_name = {root.name}",
            "protocols = imap",
            f"listen = {self.host}",
            *ssl_lines,
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain login",
            "auth_failure_delay = 0",
            "auth_verbose = yes",
            "passdb {",
            "  driver = passwd-file",
            f"  args = scheme=SHA512-CRYPT {passwd}",
            "}",
            "userdb {",
            "  driver = passwd-file",
            f"  args = {passwd}",
            "}",
            "mail_location = maildir:~/Maildir",
            "mail_fsync = never",
            "mail_max_userip_connections = 100",
            f"first_valid_uid = {max(1, min(ident.uid, 500))}",
            "service imap-login {",
            *listeners,
            "}",
            # No growing delay after failed logins: tests fail logins on purpose.
            "service anvil {",
            "  unix_listener anvil-auth-penalty {",
            "    mode = 0",
            "  }",
            "}",
            f"default_internal_user = {ident.name}",
            f"default_login_user = {ident.name}",
            "",
        ]
        self.config_path.write_text("\n".join(config))

    # -- users -------------------------------------------------------------------------------

    def add_user(self, address: str, password: str) -> MailAccount:
        """Create (or replace) an IMAP user; works before and after start()."""
        name = address.lower()
        if not _USERNAME.fullmatch(name) or any(ch in password for ch in "\r\n"):
            raise ValueError(f"unsupported user name or password for {address!r}")
        hashed = self._run_doveadm("pw", "-s", "SHA512-CRYPT", "-p", password).strip()
        ident = self._identity
        with self._lock:
            home = self.root / "mail" / f"u{next(self._homes)}"
            tmp = self.root / "passwd.tmp"
            tmp.write_text(f"{name}:{hashed}:{ident.uid}:{ident.gid}::{home}::\n")
            tmp.replace(self.passwd_dir / name)
            self.users[address] = password
        return MailAccount(address, password)

    def new_user(self, prefix: str = "agent", domain: str = "example.com") -> MailAccount:
        """Add a user with a unique address and a random password (for a shared server)."""
        return self.add_user(f"{prefix}-{os.urandom(4).hex()}@{domain}", os.urandom(12).hex())

    def _run_doveadm(self, *args: str) -> str:
        result = subprocess.run(
            [self._doveadm, "-c", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise DovecotError(
                f"doveadm {args[0]} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result.stdout

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Run Dovecot (foreground, under a reaper) and wait until its ports accept connections."""
        if self._proc is not None:
            raise DovecotError("Dovecot already started")
        for attempt in itertools.count(1):
            try:
                self._start_once()
                return self
            except DovecotError:
                if "Address already in use" in self.log_tail() and attempt < _BIND_ATTEMPTS:
                    self._choose_ports()
                    continue
                self._cleanup_dir()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _start_once(self) -> None:
        for path in (self.log_path, self.root / "stderr.log"):
            path.unlink(missing_ok=True)
        with (self.root / "stderr.log").open("wb") as stderr:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-c",
                    _REAPER,
                    self._dovecot,
                    "-F",
                    "-c",
                    str(self.config_path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        self._proc = proc
        ports = [self.port] if self.ssl_port is None else [self.port, self.ssl_port]
        deadline = time.monotonic() + START_TIMEOUT
        for port in ports:
            while not self._greets(port):
                if proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                why = (
                    f"exited with status {proc.returncode}"
                    if proc.poll() is not None
                    else f"did not accept connections on {self.host}:{port} in {START_TIMEOUT} s"
                )
                self._terminate()
                raise DovecotError(f"Dovecot {why} (config {self.config_path}).\n{self.log_tail()}")

    def _greets(self, port: int) -> bool:
        """True if an IMAP server greets on ``port`` (through TLS on the IMAPS port).

        A bare TCP connect is not enough: after losing a port race, the port answers too.
        """
        try:
            with socket.create_connection((self.host, port), timeout=0.5) as raw:
                if port == self.ssl_port and self.tls is not None:
                    ctx = self.tls.client_context
                    with ctx.wrap_socket(raw, server_hostname=self.host) as encrypted:
                        return encrypted.recv(64).startswith(b"* OK")
                return raw.recv(64).startswith(b"* OK")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop Dovecot (``doveadm stop``, then SIGKILL as a fallback) and delete its directory."""
        self._terminate()
        self._cleanup_dir()

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(DovecotError, subprocess.TimeoutExpired):
                self._run_doveadm("stop")
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._kill_master()
                proc.kill()
                proc.wait(timeout=5)
        self._kill_master()  # no-op unless the reaper died before its children

    def _kill_master(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            master = int((self.root / "run" / "master.pid").read_text().split()[0])
            os.killpg(master, signal.SIGKILL)

    def _cleanup_dir(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while Dovecot runs."""
        return self._proc is not None and self._proc.poll() is None

    # -- IMAP conveniences -------------------------------------------------------------------

    def connect(self, user: str | MailAccount, password: str | None = None) -> imaplib.IMAP4:
        """A logged-in IMAP client on ``port`` (after STARTTLS when TLS is configured).

        Use it as a context manager so it logs out: ``with server.connect(acct) as imap: ...``.
        """
        address, secret = self._credentials(user, password)
        imap = imaplib.IMAP4(self.host, self.port, timeout=START_TIMEOUT)
        try:
            if self.tls is not None:
                imap.starttls(self.tls.client_context)
            imap.login(address, secret)
        except BaseException:
            imap.shutdown()
            raise
        return imap

    def append(
        self,
        user: str | MailAccount,
        password: str | None,
        raw_message: bytes,
        flags: Iterable[str] = (),
        *,
        mailbox: str = "INBOX",
    ) -> int | None:
        """APPEND ``raw_message`` to ``mailbox`` (created if missing); return its UID if known.

        ``password`` may be None for a :class:`MailAccount` or a user added on this server.
        """
        flag_list = " ".join(flags)
        with self.connect(user, password) as imap:
            if mailbox.upper() != "INBOX":
                imap.create(_quote(mailbox))  # NO if it exists: fine
            typ, data = imap.append(
                _quote(mailbox), f"({flag_list})" if flag_list else "", "", raw_message
            )
        if typ != "OK":
            raise DovecotError(f"APPEND to {mailbox} failed: {data!r}")
        first = data[0] if data else None
        match = re.search(rb"APPENDUID \d+ (\d+)", first if isinstance(first, bytes) else b"")
        return int(match.group(1)) if match else None

    def fetch_all(
        self, user: str | MailAccount, password: str | None = None, *, mailbox: str = "INBOX"
    ) -> list[bytes]:
        """The raw bytes of every message in ``mailbox``, in UID order (without setting \\Seen)."""
        messages: list[bytes] = []
        with self.connect(user, password) as imap:
            typ, data = imap.select(_quote(mailbox), readonly=True)
            if typ != "OK":
                raise DovecotError(f"SELECT {mailbox} failed: {data!r}")
            _, data = imap.uid("SEARCH", "ALL")
            uids = data[0].split() if data and isinstance(data[0], bytes) else []
            for uid in uids:
                _, parts = imap.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
                messages.extend(
                    part[1] for part in parts if isinstance(part, tuple) and len(part) == 2
                )
        return messages

    def _credentials(self, user: str | MailAccount, password: str | None) -> tuple[str, str]:
        if isinstance(user, MailAccount):
            return user.address, user.password
        secret = password if password is not None else self.users.get(user)
        if secret is None:
            raise ValueError(f"no password given or known for {user!r}")
        return user, secret


def _quote(mailbox: str) -> str:
    """Quote a mailbox name for imaplib, which sends arguments verbatim."""
    escaped = mailbox.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
