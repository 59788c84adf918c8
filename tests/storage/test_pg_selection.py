"""Selecting the PostgreSQL backend: ``charter init --database URL`` (kept in the home's
config file) or ``CHARTER_DATABASE_URL``, honoured by every command; what it refuses."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import traceback
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from charter import testing
from charter.cli import cli
from charter.config import Settings
from charter.home import Home
from charter.storage.backends import database_contains


def charter(root: Path, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    """``charter ARGS`` in-process for the home at ``root`` (``url``: CHARTER_DATABASE_URL)."""
    env = {"CHARTER_HOME": str(root)}
    if url is not None:
        env["CHARTER_DATABASE_URL"] = url
    result = CliRunner().invoke(cli, list(args), env=env)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, stderr)


def ledger_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM ledger").fetchone()
    assert row is not None
    return int(row[0])


def test_init_database_is_kept_and_every_command_uses_it(tmp_path: Path, pg_database: str) -> None:
    root = tmp_path / "home"
    done = charter(root, "init", "--owner", "o@example.com", "--database", pg_database)
    assert done.returncode == 0, done.stderr
    config = root / "config.json"
    assert json.loads(config.read_text())["database_url"] == pg_database
    assert stat.S_IMODE(config.stat().st_mode) == 0o600  # it may hold a password
    assert not (root / "charter.db").exists()  # config and keys only
    assert ledger_rows(pg_database) == 1  # ledger.init is in PostgreSQL

    aud = "https://api.example.com"
    added = charter(root, "agent", "add", "alpha", "--scope", "audit:read", "--audience", aud)
    assert added.returncode == 0, added.stderr
    issued = charter(
        root, "token", "issue", "--agent", "alpha", "--scope", "audit:read", "--audience", aud
    )
    assert issued.returncode == 0, issued.stderr
    verified = charter(root, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert ledger_rows(pg_database) >= 3
    assert not (root / "charter.db").exists()


def test_the_environment_variable_selects_postgresql(tmp_path: Path, pg_database: str) -> None:
    root = tmp_path / "home"
    assert charter(root, "init", "--owner", "o@example.com", url=pg_database).returncode == 0
    assert not (root / "config.json").exists() and not (root / "charter.db").exists()
    assert charter(root, "agent", "add", "alpha", url=pg_database).returncode == 0
    assert ledger_rows(pg_database) == 2  # ledger.init and the agent's registration
    # Without the URL the home has no database: a clear error, not a fresh SQLite file.
    missing = charter(root, "audit", "verify")
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert not (root / "charter.db").exists()


def test_init_refuses_a_database_that_already_holds_a_ledger(
    tmp_path: Path, pg_database: str
) -> None:
    first = charter(tmp_path / "a", "init", "--owner", "o@example.com", "--database", pg_database)
    assert first.returncode == 0
    second = charter(tmp_path / "b", "init", "--owner", "o@example.com", "--database", pg_database)
    assert second.returncode != 0
    assert "already holds a Charter ledger" in second.stderr
    assert "Traceback" not in second.stderr
    assert not (tmp_path / "b" / "keys").exists()  # refused before making anything
    assert ledger_rows(pg_database) == 1


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sqlite:///tmp/x.db", "must be a postgresql:// URL"),
        ("postgresql://charter:s3cret-pw@127.0.0.1:1/charter", "cannot connect to PostgreSQL"),
    ],
)
def test_a_bad_database_url_gets_one_clear_line_without_its_password(
    tmp_path: Path, url: str, says: str
) -> None:
    root = tmp_path / "home"
    done = charter(root, "init", "--owner", "o@example.com", "--database", url)
    assert done.returncode != 0
    assert says in done.stderr
    assert "s3cret-pw" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert not (root / "keys").exists()


def test_a_server_without_synchronous_commit_is_refused(tmp_path: Path, pg_database: str) -> None:
    # An acknowledged entry must survive a crash: synchronous_commit=off would lose it.
    url = f"{pg_database}{'&' if '?' in pg_database else '?'}options=-c%20synchronous_commit%3Doff"
    done = charter(tmp_path / "home", "init", "--owner", "o@example.com", "--database", url)
    assert done.returncode != 0
    assert "synchronous_commit" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "home" / "keys").exists()


def test_charter_demo_runs_on_postgresql(pg_database: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARTER_")}
    env["CHARTER_DATABASE_URL"] = pg_database
    done = subprocess.run(
        [sys.executable, "-m", "charter", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "valid=True" in done.stdout
    assert "secret in the database or the model's context?  no" in done.stdout
    assert ledger_rows(pg_database) >= 13  # the whole story went into PostgreSQL


async def test_the_leak_check_reads_postgresql_rows(tmp_path: Path, pg_database: str) -> None:
    settings = Settings(home=tmp_path / "home", database_url=pg_database)
    async with await Home.init(settings, owner="leak-check@example.com", cheap_kdf=True) as home:
        assert await database_contains(home.store, b"leak-check@example.com")
        assert not await database_contains(
            home.store, b"never-stored-" + os.urandom(8).hex().encode()
        )


def test_doctor_checks_a_postgresql_home(tmp_path: Path, pg_database: str) -> None:
    root = tmp_path / "home"
    assert (
        charter(root, "init", "--owner", "o@example.com", "--database", pg_database).returncode == 0
    )
    doctor = charter(root, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["home"]["status"] == "ok", checks["home"]  # no charter.db is not "no home"
    assert checks["ledger"]["status"] == "ok" and checks["database integrity"]["status"] == "ok"


async def test_the_suite_puts_its_homes_on_the_backend_it_runs_over(home: Home) -> None:
    # CHARTER_TEST_DATABASE=postgresql (.ci/run's second run): every home on PostgreSQL, no
    # file; otherwise the SQLite file, as before.
    on_pg = testing.on_postgresql()
    assert (home.settings.database_url is not None) == on_pg
    assert home.layout.db.exists() != on_pg
    assert (type(home.store).__name__ == "PgStore") == on_pg
