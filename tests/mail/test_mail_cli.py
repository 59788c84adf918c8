"""``charter mail ...`` and ``charter agent ... --email`` through click's runner, real servers."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from mailhome import entries, ledger_bytes
from mailservers import (
    SMTP_PASSWORD,
    SMTP_USERNAME,
    DovecotServer,
    SmtpServer,
    TlsMaterial,
    free_port,
)
from mcp import Client

from charter.cli import cli
from charter.clock import rfc3339
from charter.config import Settings
from charter.home import Home
from charter.storage.db import transaction
from charter.testing import BlockingVault, raw_db, server_for
from charter.tools import audit, identity, mail


def run(home: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, [*args], env={"CHARTER_HOME": str(home)}, input=input)


@pytest.fixture
def home_dir(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    assert run(path, "init", "--owner", "alice@example.com").exit_code == 0
    return path


async def _open(home_dir: Path) -> Home:
    return await Home.open(Settings(home=home_dir))


def _setup(home_dir: Path, port: int, *extra: str, password: str = SMTP_PASSWORD) -> Result:
    return run(
        home_dir,
        "mail",
        "setup",
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        str(port),
        "--username",
        SMTP_USERNAME,
        "--timeout",
        "5",
        *extra,
        input=password + "\n",
    )


async def test_setup_reads_the_password_from_stdin_and_keeps_it_only_in_the_vault(
    home_dir: Path, tls_material: TlsMaterial
) -> None:
    r = _setup(home_dir, 2525, "--ca-file", str(tls_material.ca_pem), "--imap-host", "127.0.0.1")
    assert r.exit_code == 0, r.output
    assert "127.0.0.1:2525" in r.output and SMTP_PASSWORD not in r.output
    shown = run(home_dir, "mail", "show", "--json")
    doc = json.loads(shown.output)
    assert doc["transport"] == "smtp"
    assert doc["settings"]["imap_port"] == 993 and doc["settings"]["imap_security"] == "tls"
    assert doc["settings"]["ca_sha256"] and SMTP_PASSWORD not in shown.output
    assert "charter:mail-password" in run(home_dir, "mail", "show").output
    async with await _open(home_dir) as h:
        assert BlockingVault(h).get(mail.PASSWORD_SECRET).reveal_text() == SMTP_PASSWORD
        assert SMTP_PASSWORD.encode() not in ledger_bytes(h)
        assert [e["action"] for e in entries(h)][-1] == "mail.setup"
        await audit.verify_home(h)
    for path in home_dir.rglob("*"):  # the vault stores ciphertext only
        if path.is_file():
            assert SMTP_PASSWORD.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    ("args", "password", "expected"),
    [
        ((), "", "the mail password is empty"),
        (("--smtp-security", "maybe"), "pw", "Invalid value for '--smtp-security'"),
        (("--smtp-port", "70000"), "pw", "invalid port 70000"),
        (("--username", "a\u2028b"), "pw", "username contains a line break"),
    ],
)
async def test_setup_refuses_bad_input(
    home_dir: Path, args: tuple[str, ...], password: str, expected: str
) -> None:
    r = _setup(home_dir, 2525, *args, password=password)
    assert r.exit_code != 0
    assert expected in r.output
    async with await _open(home_dir) as h:
        assert await mail.load_settings(h) is None


async def test_mail_test_sends_through_the_configured_server(
    home_dir: Path, smtp_server_auth_starttls: SmtpServer, tls_material: TlsMaterial
) -> None:
    server = smtp_server_auth_starttls
    assert _setup(home_dir, server.port, "--ca-file", str(tls_material.ca_pem)).exit_code == 0
    r = run(home_dir, "mail", "test", "--to", "owner@example.org")
    assert r.exit_code == 0, r.output
    assert "Sent to owner@example.org: 250 " in r.output
    [received] = server.wait_for_messages(1)
    assert received.tls and received.authenticated_as == SMTP_USERNAME
    assert received.message["Subject"] == "Charter mail test"
    assert received.message["Charter-Signature"] is None  # the owner is not an agent
    async with await _open(home_dir) as h:
        log = entries(h)
        assert [e["action"] for e in log[-2:]] == ["mail.test", "mail.test.result"]
        assert all(e["actor"] == "alice@example.com" for e in log[-2:])
        assert log[-1]["args"]["reply"].startswith("250 ")
        await audit.verify_home(h)


async def test_mail_test_errors(home_dir: Path, tls_material: TlsMaterial) -> None:
    r = run(home_dir, "mail", "test", "--to", "owner@example.org")
    assert r.exit_code != 0
    assert "no mail server is configured" in r.output and "charter mail setup" in r.output
    assert _setup(home_dir, free_port()).exit_code == 0
    r = run(home_dir, "mail", "test", "--to", "owner@example.org")
    assert r.exit_code == 8, r.output
    assert "cannot connect to the SMTP server 127.0.0.1:" in r.output
    assert "Traceback" not in r.output and SMTP_PASSWORD not in r.output
    async with await _open(home_dir) as h:
        last = entries(h)[-1]
        assert (last["action"], last["outcome"]) == ("mail.test.result", "error")
        await audit.verify_home(h)


def test_mail_test_checks_imap_login(home_dir: Path, dovecot: DovecotServer) -> None:
    account = dovecot.new_user()
    r = run(
        home_dir,
        "mail",
        "setup",
        "--smtp-host",
        "127.0.0.1",
        "--imap-host",
        "127.0.0.1",
        "--imap-port",
        str(dovecot.port),
        "--imap-security",
        "none",
        "--username",
        account.address,
        input=account.password + "\n",
    )
    assert r.exit_code == 0, r.output
    r = run(home_dir, "mail", "test")
    assert r.exit_code == 0, r.output
    assert "IMAP ok: 0 message(s) in INBOX" in r.output


async def test_agent_email_options_and_outbox(home_dir: Path) -> None:
    r = run(
        home_dir,
        "agent",
        "add",
        "writer",
        "--scope",
        "email:send",
        "--email",
        "writer@agents.example.com",
        "--email-rate",
        "5",
        "--json",
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["policy"]["email"] == {
        "address": "writer@agents.example.com",
        "rate_per_hour": 5,
    }
    assert (
        run(home_dir, "agent", "add", "inbox", "--email", "inbox@agents.example.com").exit_code == 0
    )
    dup = run(home_dir, "agent", "add", "copycat", "--email", "Writer@agents.example.com")
    assert dup.exit_code != 0 and "already the address of agent 'writer'" in dup.output
    bad = run(home_dir, "agent", "update", "inbox", "--email", "inbox@agents\r\n.example.com")
    assert bad.exit_code != 0 and "line break" in bad.output
    r = run(
        home_dir,
        "agent",
        "update",
        "inbox",
        "--email-allow-sender",
        "*@AGENTS.example.com",
        "--json",
    )
    assert json.loads(r.output)["policy"]["email"] == {
        "address": "inbox@agents.example.com",
        "allow_senders": ["*@agents.example.com"],
    }

    async with await _open(home_dir) as h:

        async def send() -> None:
            async with Client(await server_for(h, "writer")) as client:
                result = await client.call_tool(
                    "email_send",
                    {"to": "inbox@agents.example.com", "subject": "hello", "text": "secret body"},
                )
                assert not result.is_error

        await send()
        assert (await identity.list_agents(h))[0].name == "inbox"  # copycat was never created
        assert len(await identity.list_agents(h)) == 2

    r = run(home_dir, "mail", "outbox", "--json")
    assert r.exit_code == 0, r.output
    [item] = json.loads(r.output)
    assert item["agent"] == "writer" and item["to"] == ["inbox@agents.example.com"]
    assert item["status"] == "sent" and item["transport"] == "local"
    assert "secret body" not in r.output
    table = run(home_dir, "mail", "outbox")
    assert "hello" in table.output and "secret body" not in table.output
    assert item["interrupted"] is None

    async with await _open(
        home_dir
    ) as h:  # as a server killed while the transport had it leaves it
        started = rfc3339(h.clock.now() - dt.timedelta(hours=2))
        with transaction(raw_db(h)):
            raw_db(h).execute("UPDATE mail_sent SET status = 'sending', created_at = ?", (started,))
    [item] = json.loads(run(home_dir, "mail", "outbox", "--json").output)
    assert item["status"] == "sending" and "delivery unknown" in item["interrupted"]
    assert "unknown" in run(home_dir, "mail", "outbox").output  # the table wraps the words


async def test_mail_clear_returns_to_the_local_transport(home_dir: Path) -> None:
    assert _setup(home_dir, 2525).exit_code == 0
    r = run(home_dir, "mail", "clear")
    assert r.exit_code == 0, r.output
    assert "local transport" in run(home_dir, "mail", "show").output
    async with await _open(home_dir) as h:
        assert await mail.load_settings(h) is None
        assert [i.name for i in BlockingVault(h).list(include_system=True)] == []
        await audit.verify_home(h)
