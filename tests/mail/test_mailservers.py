"""End-to-end checks of the mail test servers, using only aiosmtplib and stdlib clients."""

from __future__ import annotations

import contextlib
import gc
import imaplib
import socket
import ssl
import subprocess
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import mailservers
import pytest
from mailservers import (
    SMTP_PASSWORD,
    SMTP_USERNAME,
    DovecotServer,
    SmtpServer,
    TlsMaterial,
    free_port,
)

SENDER = "agent@example.com"
RECIPIENT = "owner@example.org"


@pytest.fixture(autouse=True)
def _collect_aborted_connections() -> Iterator[None]:
    """Collect, at the end of each test here, sockets its deliberately failed handshakes left.

    These tests abort SMTP sessions mid-STARTTLS or mid-AUTH; aiosmtplib/aiosmtpd may leave that
    connection's transport for the garbage collector, whose ResourceWarning (an error under
    ``filterwarnings = error``) would otherwise surface in whatever test runs when it collects.
    Only this module's test-infrastructure checks are covered: Charter's own mail tests are not.
    """
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _message(subject: str = "Hello", to: str = RECIPIENT) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("Body line one.\nBody line two, with ünïcode.\n")
    return msg


def _raw(subject: str) -> bytes:
    return (
        f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: {subject}\r\n"
        "Message-ID: <test@example.com>\r\n\r\nHello from APPEND.\r\n"
    ).encode()


# -- helpers -----------------------------------------------------------------------------------


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_tls_material_files(tls_material: TlsMaterial) -> None:
    assert tls_material.ca_pem.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY" in tls_material.key_pem.read_bytes()
    assert tls_material.client_context.verify_mode == ssl.CERT_REQUIRED
    assert tls_material.client_context.check_hostname


# -- SMTP --------------------------------------------------------------------------------------


async def test_plain_smtp_captures_message(smtp_server: SmtpServer) -> None:
    await aiosmtplib.send(
        _message("plain"),
        hostname=smtp_server.host,
        port=smtp_server.port,
        start_tls=False,
    )
    [received] = smtp_server.wait_for_messages(1)
    assert received.mail_from == SENDER
    assert received.rcpt_tos == (RECIPIENT,)
    assert received.message["Subject"] == "plain"
    assert "ünïcode" in received.message.get_content()
    assert received.data.startswith(b"From: ")
    assert not received.tls
    assert received.authenticated_as is None


def test_plain_smtp_from_sync_code(smtp_server: SmtpServer) -> None:
    import smtplib

    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        client.send_message(_message("sync"))
    assert [m.message["Subject"] for m in smtp_server.messages] == ["sync"]


async def test_smtp_rejects_configured_recipient(smtp_server: SmtpServer) -> None:
    smtp_server.reject_recipients("ghost@example.org")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as excinfo:
        await aiosmtplib.send(
            _message(to="ghost@example.org"),
            hostname=smtp_server.host,
            port=smtp_server.port,
            start_tls=False,
        )
    assert excinfo.value.recipients[0].code == 550
    assert smtp_server.messages == []


async def test_smtp_temporary_failure(smtp_server: SmtpServer) -> None:
    smtp_server.temporary_failure()
    with pytest.raises(aiosmtplib.SMTPDataError) as excinfo:
        await aiosmtplib.send(
            _message(), hostname=smtp_server.host, port=smtp_server.port, start_tls=False
        )
    assert excinfo.value.code == 451
    smtp_server.reset_failures()
    await aiosmtplib.send(
        _message(), hostname=smtp_server.host, port=smtp_server.port, start_tls=False
    )
    assert len(smtp_server.messages) == 1


async def test_smtp_refuses_mail_before_starttls(smtp_server_auth_starttls: SmtpServer) -> None:
    server = smtp_server_auth_starttls
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as excinfo:
        await aiosmtplib.send(_message(), hostname=server.host, port=server.port, start_tls=False)
    assert excinfo.value.code == 530
    # Credentials without TLS: the server does not even offer AUTH.
    with pytest.raises(aiosmtplib.SMTPException, match="AUTH"):
        await aiosmtplib.send(
            _message(),
            hostname=server.host,
            port=server.port,
            start_tls=False,
            username=SMTP_USERNAME,
            password=SMTP_PASSWORD,
        )
    assert server.messages == []


async def test_smtp_starttls_and_auth_accepted(
    smtp_server_auth_starttls: SmtpServer, tls_material: TlsMaterial
) -> None:
    server = smtp_server_auth_starttls
    await aiosmtplib.send(
        _message("secure"),
        hostname=server.host,
        port=server.port,
        start_tls=True,
        tls_context=tls_material.client_context,
        username=SMTP_USERNAME,
        password=SMTP_PASSWORD,
    )
    [received] = server.wait_for_messages(1)
    assert received.tls
    assert received.authenticated_as == SMTP_USERNAME
    assert received.message["Subject"] == "secure"


async def test_smtp_starttls_wrong_password(
    smtp_server_auth_starttls: SmtpServer, tls_material: TlsMaterial
) -> None:
    server = smtp_server_auth_starttls
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as excinfo:
        await aiosmtplib.send(
            _message(),
            hostname=server.host,
            port=server.port,
            start_tls=True,
            tls_context=tls_material.client_context,
            username=SMTP_USERNAME,
            password="wrong",
        )
    assert excinfo.value.code == 535
    assert server.messages == []


async def test_smtp_starttls_requires_auth(
    smtp_server_auth_starttls: SmtpServer, tls_material: TlsMaterial
) -> None:
    server = smtp_server_auth_starttls
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as excinfo:
        await aiosmtplib.send(
            _message(),
            hostname=server.host,
            port=server.port,
            start_tls=True,
            tls_context=tls_material.client_context,
        )
    assert excinfo.value.code == 530


async def test_smtp_starttls_rejects_untrusted_certificate(
    smtp_server_auth_starttls: SmtpServer,
) -> None:
    server = smtp_server_auth_starttls
    with pytest.raises(ssl.SSLCertVerificationError):
        await aiosmtplib.send(
            _message(),
            hostname=server.host,
            port=server.port,
            start_tls=True,
            tls_context=ssl.create_default_context(),
            username=SMTP_USERNAME,
            password=SMTP_PASSWORD,
        )


async def test_smtp_implicit_tls_with_auth(tls_material: TlsMaterial) -> None:
    with SmtpServer(auth={"u@example.com": "pw"}, implicit_tls=tls_material) as server:
        await aiosmtplib.send(
            _message("smtps"),
            hostname=server.host,
            port=server.port,
            use_tls=True,
            tls_context=tls_material.client_context,
            username="u@example.com",
            password="pw",
        )
        [received] = server.wait_for_messages(1)
    assert received.tls
    assert received.authenticated_as == "u@example.com"
    assert not server.running


# -- IMAP: Dovecot -----------------------------------------------------------------------------


def test_dovecot_login(dovecot: DovecotServer) -> None:
    account = dovecot.new_user()
    with imaplib.IMAP4(dovecot.host, dovecot.port, timeout=5) as imap:
        typ, _ = imap.login(account.address, account.password)
        assert typ == "OK"
    with (
        imaplib.IMAP4(dovecot.host, dovecot.port, timeout=5) as imap,
        pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"),
    ):
        imap.login(account.address, "wrong password")


def test_dovecot_append_then_fetch(dovecot: DovecotServer) -> None:
    address = f"reader-{uuid.uuid4().hex[:8]}@example.com"  # the server is shared
    account = dovecot.add_user(address, "reader-pw")
    uid = dovecot.append(address, "reader-pw", _raw("stored"), flags=["\\Seen"])
    assert uid == 1
    with imaplib.IMAP4(dovecot.host, dovecot.port, timeout=5) as imap:
        imap.login(account.address, account.password)
        typ, data = imap.select("INBOX")
        assert (typ, data) == ("OK", [b"1"])
        typ, parts = imap.fetch("1", "(FLAGS RFC822)")
        assert typ == "OK"
        first = parts[0]
        assert isinstance(first, tuple)
        envelope, body = first
        assert b"\\Seen" in envelope
        assert b"Subject: stored" in body
        assert body.endswith(b"Hello from APPEND.\r\n")
    assert dovecot.fetch_all(account) == [body]


def test_dovecot_append_to_other_mailbox(dovecot: DovecotServer) -> None:
    account = dovecot.new_user()
    dovecot.append(account, None, _raw("archived"), mailbox="Archive")
    assert dovecot.fetch_all(account) == []
    [raw] = dovecot.fetch_all(account, mailbox="Archive")
    assert b"Subject: archived" in raw


def test_dovecot_tls(dovecot_tls: DovecotServer, tls_material: TlsMaterial) -> None:
    account = dovecot_tls.new_user()
    assert dovecot_tls.tls is tls_material
    assert dovecot_tls.ssl_port is not None
    with imaplib.IMAP4_SSL(
        dovecot_tls.host, dovecot_tls.ssl_port, ssl_context=tls_material.client_context, timeout=5
    ) as imap:
        typ, _ = imap.login(account.address, account.password)
        assert typ == "OK"
    with imaplib.IMAP4(dovecot_tls.host, dovecot_tls.port, timeout=5) as imap:
        assert "STARTTLS" in imap.capabilities
        imap.starttls(tls_material.client_context)
        typ, _ = imap.login(account.address, account.password)
        assert typ == "OK"
    logins = dovecot_tls.login_log(account.address, expect=2)
    assert len(logins) == 2
    assert all(", TLS," in line for line in logins), logins
    dovecot_tls.append(account, None, _raw("over tls"))
    [raw] = dovecot_tls.fetch_all(account)
    assert b"Subject: over tls" in raw


def test_dovecot_tls_untrusted_certificate(dovecot_tls: DovecotServer) -> None:
    assert dovecot_tls.ssl_port is not None
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL(
            dovecot_tls.host,
            dovecot_tls.ssl_port,
            ssl_context=ssl.create_default_context(),
            timeout=5,
        )


def test_dovecot_user_added_while_running_and_stop_cleans_up() -> None:
    with DovecotServer() as server:
        early = server.add_user("Early@Example.com", "early-pw")
        with server.connect(early) as imap:  # Dovecot lowercases; either spelling logs in
            assert imap.select("INBOX")[0] == "OK"
        late = server.add_user("late@example.com", "late-pw")  # same second, new user
        with server.connect(late) as imap:
            assert imap.select("INBOX")[0] == "OK"
        [login] = server.login_log("late@example.com")
        assert ", TLS," not in login
        master = int((server.root / "run" / "master.pid").read_text())
        root, port = server.root, server.port
    assert not server.running
    assert not root.exists()
    left = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-g", str(master)], capture_output=True)
    assert left.stdout == b"", left.stdout  # no process and no zombie of the instance
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, port), timeout=1).close()


def test_dovecot_missing_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda *_args, **_kwargs: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        DovecotServer()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        DovecotServer()


@contextlib.contextmanager
def _port_taken_first(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Make the next free_port() return a port that is in use, as if another process won a race."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken: int = busy.getsockname()[1]
        ports = iter([taken])
        real = mailservers.free_port
        monkeypatch.setattr(
            mailservers, "free_port", lambda host="127.0.0.1": next(ports, None) or real(host)
        )
        yield taken


async def test_smtp_start_retries_when_port_was_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    # aiosmtpd only reports a failed bind after its ready timeout: keep that short here.
    monkeypatch.setattr(mailservers, "START_TIMEOUT", 0.5)
    with _port_taken_first(monkeypatch) as taken, SmtpServer() as server:
        assert server.port != taken
        await aiosmtplib.send(_message(), hostname=server.host, port=server.port)
        assert len(server.messages) == 1
    gc.collect()  # the failed attempt's event loop must already be closed (no ResourceWarning)


def test_dovecot_start_retries_when_port_was_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    with _port_taken_first(monkeypatch) as taken:
        server = DovecotServer()  # picks its ports now, the first one is taken
        assert server.port == taken
        with server:
            assert server.port != taken
            account = server.new_user()
            with server.connect(account) as imap:
                assert imap.noop()[0] == "OK"


def test_dovecot_start_failure_reports_log(tls_material: TlsMaterial, tmp_path: Path) -> None:
    broken = replace(tls_material, key_pem=tmp_path / "missing-key.pem")
    server = DovecotServer(tls=broken)
    root = server.root
    with pytest.raises(mailservers.DovecotError, match=r"missing-key\.pem") as excinfo:
        server.start()
    assert "exited with status" in str(excinfo.value)
    assert not root.exists()
    assert not server.running
