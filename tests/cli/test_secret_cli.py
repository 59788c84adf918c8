"""``charter secret ...`` through click's runner against real homes; values never printed."""

from __future__ import annotations

import json
from pathlib import Path

import nacl.pwhash
import pytest
from click.testing import CliRunner, Result

from charter.cli import cli
from charter.config import Settings
from charter.home import Home
from charter.storage import vault as vault_mod
from charter.testing import BlockingVault, raw_tx
from charter.tools import audit

CANARY = "cli-canary-5e4d3c2b1a09f8e7"


def run(home: Path, *args: str, input: str | bytes | None = None) -> Result:
    return CliRunner().invoke(cli, [*args], env={"CHARTER_HOME": str(home)}, input=input)


@pytest.fixture
def home_dir(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    assert run(path, "init", "--owner", "alice@example.com").exit_code == 0
    return path


async def stored(home_dir: Path, name: str, passphrase: bytes | None = None) -> bytes:
    async with await Home.open(Settings(home=home_dir)) as h:
        return BlockingVault(h, passphrase=passphrase).get(name).reveal()


async def test_secret_lifecycle_never_prints_the_value(home_dir: Path, tmp_path: Path) -> None:
    outputs = []
    r = run(
        home_dir,
        "secret",
        "set",
        "GH_TOKEN",
        "--description",
        "GitHub",
        "--allow-host",
        "api.github.com",
        input=CANARY + "\n",
    )
    assert r.exit_code == 0, r.output
    assert "GH_TOKEN version 1" in r.output and "api.github.com" in r.output
    assert await stored(home_dir, "GH_TOKEN") == CANARY.encode()  # one trailing newline dropped
    outputs.append(r.output)

    value_file = tmp_path / "value.txt"
    value_file.write_text(CANARY + "-v2")
    r = run(home_dir, "secret", "set", "GH_TOKEN", "--from-file", str(value_file))
    assert r.exit_code == 0, r.output
    assert "version 2" in r.output and "api.github.com" in r.output  # hosts kept
    outputs.append(r.output)

    r = run(home_dir, "secret", "list", "--json")
    assert r.exit_code == 0, r.output
    (item,) = json.loads(r.output)
    assert item["name"] == "GH_TOKEN" and item["versions"] == [1, 2]
    assert item["allowed_hosts"] == ["https://api.github.com:443"]
    assert item["description"] == "GitHub"
    outputs.append(r.output)
    r = run(home_dir, "secret", "list")
    assert "GH_TOKEN" in r.output
    outputs.append(r.output)

    r = run(home_dir, "secret", "rotate-master-key")
    assert r.exit_code == 0, r.output
    assert "version 2; 2 secret versions re-encrypted" in r.output
    assert await stored(home_dir, "GH_TOKEN") == (CANARY + "-v2").encode()
    outputs.append(r.output)

    r = run(home_dir, "secret", "set", "GH_TOKEN", CANARY)  # the value on argv: refused
    assert r.exit_code == 2
    assert "never from the command line" in r.output
    outputs.append(r.output)

    r = run(home_dir, "secret", "rm", "GH_TOKEN")
    assert r.exit_code == 0 and "versions 1, 2" in r.output
    outputs.append(r.output)
    r = run(home_dir, "secret", "rm", "GH_TOKEN")
    assert r.exit_code == 3 and "no secret named 'GH_TOKEN'" in r.output
    outputs.append(r.output)

    for output in outputs:
        assert CANARY not in output
    async with await Home.open(Settings(home=home_dir)) as h:
        actions = [json.loads(b)["action"] for b in raw_tx(h).ledger.iter_bodies()]
        assert actions.count("secret.set") == 2
        assert "vault.rotate" in actions and "secret.remove" in actions
        assert CANARY.encode() not in b"".join(raw_tx(h).ledger.iter_bodies())
        await audit.verify_home(h)


def test_bad_input_is_a_clear_error(home_dir: Path, tmp_path: Path) -> None:
    r = run(home_dir, "secret", "set", "X", input="")
    assert r.exit_code == 2 and "empty" in r.output
    r = run(home_dir, "secret", "set", "bad name", input="v")
    assert r.exit_code == 2 and "invalid secret name" in r.output
    r = run(home_dir, "secret", "set", "X", "--allow-host", "*.example.com", input="v")
    assert r.exit_code == 2 and "invalid allowed host" in r.output
    r = run(home_dir, "secret", "set", "X", "--from-file", str(tmp_path / "missing"))
    assert r.exit_code == 2 and "cannot read" in r.output
    r = run(home_dir, "secret", "set", "charter:mail-password", input="v")
    assert r.exit_code == 2 and "reserved" in r.output


def test_a_damaged_master_key_fails_closed(home_dir: Path) -> None:
    assert run(home_dir, "secret", "set", "A", input=CANARY).exit_code == 0
    key_file = home_dir / "keys" / "vault.key"
    doc = json.loads(key_file.read_text())
    doc["key"] = doc["key"][::-1]
    key_file.write_text(json.dumps(doc))
    for args in (["secret", "set", "A"], ["secret", "rotate-master-key"]):
        r = run(home_dir, *args, input="new-value")
        assert r.exit_code == 2, r.output
        assert "wrong vault master key" in r.output
        assert CANARY not in r.output


async def test_passphrase_derived_master_key(
    home_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cheap = (nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN)
    monkeypatch.setattr(vault_mod, "KDF_LIMITS", cheap)
    first, second = tmp_path / "p1", tmp_path / "p2"
    first.write_text("first passphrase\n")
    second.write_text("second passphrase\n")
    r = run(home_dir, "secret", "set", "A", "--vault-passphrase-file", str(first), input="val")
    assert r.exit_code == 0, r.output
    r = run(home_dir, "secret", "set", "A", input="val2")
    assert r.exit_code == 2 and "passphrase" in r.output
    r = run(
        home_dir,
        "secret",
        "rotate-master-key",
        "--vault-passphrase-file",
        str(first),
        "--new-vault-passphrase-file",
        str(second),
    )
    assert r.exit_code == 0, r.output
    assert await stored(home_dir, "A", b"second passphrase") == b"val"
    r = run(home_dir, "secret", "rotate-master-key", "--vault-passphrase-file", str(first))
    assert r.exit_code == 2 and "wrong vault master key" in r.output


def test_agents_are_granted_secrets_with_scopes(home_dir: Path) -> None:
    r = run(home_dir, "agent", "add", "bot", "--scope", "secret:use:GH_*", "--json")
    assert r.exit_code == 0, r.output
    r = run(home_dir, "agent", "update", "bot", "--scope", "secret:read:GH_TOKEN", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["scopes"] == ["secret:read:GH_TOKEN"]


def test_doctor_warns_of_bare_hosts_stored_before_and_of_blocked_agents(
    home_dir: Path,
) -> None:
    import sqlite3

    run(home_dir, "secret", "set", "GH", "--allow-host", "api.github.com", input="v1-value")
    conn = sqlite3.connect(home_dir / "charter.db")
    with conn:  # as an older Charter stored it: a bare host, then any port
        conn.execute("UPDATE vault_secrets SET allowed_hosts = '[\"api.github.com\"]'")
        conn.execute(
            "INSERT INTO vault_blocks(agent, secret, blocked_at) VALUES ('bot', 'GH', 'T0')"
        )
    conn.close()
    r = run(home_dir, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(r.output)["checks"]}
    assert checks["secret hosts"]["status"] == "warn"
    assert "GH: api.github.com" in checks["secret hosts"]["detail"]
    assert "port 443" in checks["secret hosts"]["detail"]
    assert "bot from GH" in checks["secret blocks"]["detail"]
    r = run(home_dir, "secret", "unblock", "GH", "--agent", "bot")
    assert r.exit_code == 0 and "may use GH again" in r.output
    r = run(home_dir, "secret", "unblock", "GH", "--agent", "bot")
    assert r.exit_code != 0 and "not blocked" in r.output
    r = run(home_dir, "secret", "set", "GH", "--allow-host", "api.github.com:8443", input="v2")
    r = run(home_dir, "doctor", "--json")
    names = {c["name"] for c in json.loads(r.output)["checks"]}
    assert not names & {"secret hosts", "secret blocks"}


def test_the_rate_is_set_per_secret_and_kept(home_dir: Path) -> None:
    r = run(home_dir, "secret", "set", "K", "--rate-per-minute", "5", "--json", input="v1")
    assert json.loads(r.output)["rate_per_minute"] == 5
    r = run(home_dir, "secret", "set", "K", "--json", input="v2")
    assert json.loads(r.output)["rate_per_minute"] == 5
    r = run(home_dir, "secret", "set", "K", "--rate-per-minute", "0", input="v3")
    assert r.exit_code != 0 and "1-10000" in r.output
