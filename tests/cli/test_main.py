"""The owner's CLI, driven through click's runner against real homes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from charter.cli import cli


def run(home: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, [*args], env={"CHARTER_HOME": str(home)}, input=input)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    result = run(path, "init", "--owner", "alice@example.com")
    assert result.exit_code == 0, result.output
    return path


def test_init_creates_a_private_home(home: Path) -> None:
    assert oct(home.stat().st_mode & 0o777) == "0o700"
    assert oct((home / "keys").stat().st_mode & 0o777) == "0o700"
    for key in (home / "keys").glob("*.key"):
        assert oct(key.stat().st_mode & 0o777) == "0o600"
    names = {p.name for p in (home / "keys").glob("*.key")}
    assert {"owner.key", "log.key"} <= names
    assert any(n.startswith("issuer-") for n in names)


def test_init_refuses_to_overwrite(home: Path) -> None:
    result = run(home, "init", "--owner", "mallory@example.com")
    assert result.exit_code != 0
    assert "already exists" in result.output


def test_init_rejects_a_bad_owner(tmp_path: Path) -> None:
    result = run(tmp_path / "h", "init", "--owner", "not-an-email")
    assert result.exit_code != 0
    assert "email" in result.output


def test_missing_home_says_how_to_init(tmp_path: Path) -> None:
    result = run(tmp_path / "none", "agent", "list")
    assert result.exit_code != 0
    assert "charter init" in result.output


def test_agent_lifecycle(home: Path) -> None:
    added = run(
        home,
        "agent",
        "add",
        "bot",
        "--scope",
        "audit:read",
        "--audience",
        "https://api.example.com",
        "--valid-for",
        "30d",
        "--json",
    )
    assert added.exit_code == 0, added.output
    info = json.loads(added.output)
    assert info["agent_id"] == "spiffe://charter.local/agent/alice/bot"
    assert info["scopes"] == ["audit:read"]
    listed = json.loads(run(home, "agent", "list", "--json").output)
    assert [a["name"] for a in listed] == ["bot"]
    updated = json.loads(
        run(
            home,
            "agent",
            "update",
            "bot",
            "--scope",
            "audit:read",
            "--scope",
            "token:issue",
            "--json",
        ).output
    )
    assert updated["scopes"] == ["audit:read", "token:issue"]
    assert updated["charter_hash"] != info["charter_hash"]
    revoked = run(home, "agent", "revoke", "bot", "--reason", "done", "--yes", "--json")
    assert json.loads(revoked.output)["status"] == "revoked"
    shown = run(home, "agent", "show", "bot")
    assert "revoked" in shown.output
    verified = run(home, "audit", "verify", "--json")
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.output)["size"] == 4  # init, register, update, revoke


def test_unknown_scope_is_refused(home: Path) -> None:
    result = run(home, "agent", "add", "bot", "--scope", "root:everything")
    assert result.exit_code != 0
    assert "unknown scope 'root:everything'" in result.output
    assert json.loads(run(home, "agent", "list", "--json").output) == []


def test_bad_agent_name_is_refused(home: Path) -> None:
    result = run(home, "agent", "add", "../escape", "--scope", "audit:read")
    assert result.exit_code != 0
    assert "invalid agent name" in result.output


def test_audit_verify_fails_at_the_tampered_seq(home: Path) -> None:
    run(home, "agent", "add", "bot", "--scope", "audit:read")
    conn = sqlite3.connect(home / "charter.db")
    conn.execute("DROP TRIGGER ledger_no_update")
    body = conn.execute("SELECT body FROM ledger WHERE seq = 1").fetchone()[0]
    conn.execute(
        "UPDATE ledger SET body = ? WHERE seq = 1",
        (bytes(body).replace(b"audit:read", b"token:issue"),),
    )
    conn.commit()
    conn.close()
    result = run(home, "audit", "verify")
    assert result.exit_code == 7
    assert "entry 1" in result.output


def test_export_verifies_offline_and_detects_truncation(home: Path, tmp_path: Path) -> None:
    run(home, "agent", "add", "bot", "--scope", "audit:read")
    out = tmp_path / "export"
    assert run(home, "audit", "export", str(out)).exit_code == 0
    assert {p.name for p in out.iterdir()} >= {
        "ledger.json",
        "entries.jsonl",
        "keys.json",
        "charters",
    }
    ok = run(home, "audit", "verify", "--export", str(out))
    assert ok.exit_code == 0, ok.output
    lines = (out / "entries.jsonl").read_bytes().splitlines(keepends=True)
    (out / "entries.jsonl").write_bytes(b"".join(lines[:-1]))
    cut = run(home, "audit", "verify", "--export", str(out))
    assert cut.exit_code == 7
    assert "truncated" in cut.output


def test_export_refuses_a_foreign_pinned_owner_key(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    run(home, "audit", "export", str(out))
    result = run(home, "audit", "verify", "--export", str(out), "--owner-key", "AAAA")
    assert result.exit_code == 7
    assert "pinned owner key" in result.output


def test_tail_and_show(home: Path) -> None:
    tail = run(home, "audit", "tail", "-n", "5", "--json")
    assert tail.exit_code == 0
    first = json.loads(tail.output.splitlines()[0])
    assert first["action"] == "ledger.init"
    shown = json.loads(run(home, "audit", "show", "0").output)
    assert shown["seq"] == 0 and "sig" in shown
    assert run(home, "audit", "show", "99").exit_code != 0


def test_passphrase_protected_owner_key(tmp_path: Path) -> None:
    path = tmp_path / "home"
    secret = tmp_path / "pass"
    secret.write_text("correct horse\n")
    wrong = tmp_path / "wrong"
    wrong.write_text("battery staple\n")
    assert (
        run(path, "init", "--owner", "a@example.com", "--passphrase-file", str(secret)).exit_code
        == 0
    )
    key_doc = json.loads((path / "keys" / "owner.key").read_text())
    assert "d" not in key_doc and "sealed" in key_doc  # every key sealed (issue 19)
    refused = run(path, "agent", "add", "bot", "--scope", "audit:read")
    assert refused.exit_code != 0 and "passphrase" in refused.output
    bad = run(path, "agent", "add", "bot", "--scope", "audit:read", "--passphrase-file", str(wrong))
    assert bad.exit_code != 0 and "wrong passphrase" in bad.output
    good = run(
        path, "agent", "add", "bot", "--scope", "audit:read", "--passphrase-file", str(secret)
    )
    assert good.exit_code == 0, good.output


def test_corrupt_key_file_refuses_with_a_clear_message(home: Path) -> None:
    (home / "keys" / "log.key").write_text("{not json")
    result = run(home, "agent", "list")
    assert result.exit_code != 0
    assert "log.key is corrupt" in result.output


def test_corrupt_database_refuses_with_a_clear_message(home: Path) -> None:
    (home / "charter.db").write_bytes(b"this is not sqlite" * 100)
    for side in ("charter.db-wal", "charter.db-shm"):
        (home / side).unlink(missing_ok=True)
    result = run(home, "agent", "list")
    assert result.exit_code != 0
    assert "charter.db" in result.output
    assert "Traceback" not in result.output


def test_every_command_has_help() -> None:
    def walk(group: object, prefix: list[str]) -> list[list[str]]:
        import click

        out = [prefix]
        if isinstance(group, click.Group):
            for name, sub in group.commands.items():
                out += walk(sub, [*prefix, name])
        return out

    for path in walk(cli, []):
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Usage:" in result.output


def test_owner_commands_do_not_import_the_mcp_sdk() -> None:
    """Every command but ``serve`` loads all CLI modules; none of them needs the MCP SDK."""
    code = "import sys; from charter.cli import cli; cli.load_all(); print('mcp' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
