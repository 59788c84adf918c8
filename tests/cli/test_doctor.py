"""`charter doctor` reports what is wrong and how to fix it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from charter.cli import cli
from charter.testing import make_home
from charter.tools import identity


def doctor(home: Path) -> Result:
    return CliRunner().invoke(cli, ["doctor", "--json"], env={"CHARTER_HOME": str(home)})


def report(result: Result) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in json.loads(result.output)["checks"]}


async def _home(tmp_path: Path) -> Path:
    h = await make_home(tmp_path / "home")
    await identity.add_agent(h, "bot", scopes=["audit:read"])
    await h.close()
    return tmp_path / "home"


async def test_healthy_home_passes(tmp_path: Path) -> None:
    result = doctor(await _home(tmp_path))
    assert result.exit_code == 0, result.output
    checks = report(result)
    assert checks["ledger"]["status"] == "ok"
    assert checks["agent key bot"]["status"] == "ok"
    assert checks["owner key"]["status"] == "warn"  # no passphrase: a warning, not a failure


def test_missing_home_says_how_to_init(tmp_path: Path) -> None:
    result = doctor(tmp_path / "nothing")
    assert result.exit_code == 1
    assert "charter init" in report(result)["home"]["fix"]


async def test_loose_permissions_fail_with_the_chmod_to_run(tmp_path: Path) -> None:
    home = await _home(tmp_path)
    (home / "keys" / "agents" / "bot.key").chmod(0o644)
    result = doctor(home)
    assert result.exit_code == 1
    assert "chmod 600" in report(result)["key file modes"]["fix"]


@pytest.mark.sqlite_only(
    "edits the SQLite file with sqlite3; doctor on PostgreSQL: test_pg_selection "
)
async def test_tampered_ledger_fails_naming_the_entry(tmp_path: Path) -> None:
    home = await _home(tmp_path)
    conn = sqlite3.connect(home / "charter.db")
    conn.execute("DROP TRIGGER ledger_no_delete")
    conn.execute("DELETE FROM ledger WHERE seq = 0")
    conn.commit()
    conn.close()
    result = doctor(home)
    assert result.exit_code == 1
    assert "entry 0" in report(result)["ledger"]["detail"]


async def test_missing_agent_key_fails(tmp_path: Path) -> None:
    home = await _home(tmp_path)
    (home / "keys" / "agents" / "bot.key").unlink()
    checks = report(doctor(home))
    assert checks["agent key bot"]["status"] == "fail"
    assert "revoke" in checks["agent key bot"]["fix"]
