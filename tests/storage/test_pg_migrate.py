"""``charter db migrate --to URL``: a SQLite home copied into PostgreSQL (issue 18).

Tree size, root, ledger head and the latest signed checkpoint are identical afterwards, the
copy verifies and takes new entries after the old head, the SQLite file is left byte for byte
as it was, and a second run refuses instead of duplicating.
"""

from __future__ import annotations

import hashlib
import json
import traceback
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from charter.cli import cli
from charter.config import Settings
from charter.home import Home
from charter.storage.pg_copy import LogState, log_state
from charter.testing import BlockingVault, raw_db
from charter.tools import identity, tlog, tokens, vault

pytestmark = pytest.mark.sqlite_only("starts from a SQLite home by design (it makes its own)")


def run(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env={"CHARTER_HOME": str(root)})
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return result.exit_code, result.stdout, stderr


async def sqlite_home(root: Path) -> LogState:
    """A SQLite home with agents, a token, a secret and a signed checkpoint; its log state."""
    async with await Home.init(Settings(home=root), owner="o@example.com", cheap_kdf=True) as h:
        await identity.add_agent(h, "alpha", scopes=["audit:read"], audiences=["https://a.example"])
        await identity.add_agent(h, "beta", scopes=[])
        await tokens.issue_for_owner(
            h, "alpha", audience="https://a.example", scopes=["audit:read"], ttl_seconds=600
        )
        await vault.set_secret(h, "api-key", b"s3cret-value")
        await tlog.checkpoint(h)
        await identity.revoke_agent(h, "beta", reason="left")
        return log_state(raw_db(h))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_migrate_copies_the_home_exactly_and_refuses_a_second_run(
    tmp_path: Path, pg_database: str
) -> None:
    root = tmp_path / "home"
    before = await sqlite_home(root)
    assert before.size >= 5 and before.checkpoint is not None
    files = {p.name: digest(p) for p in root.glob("charter.db*")}

    code, out, err = run(root, "db", "migrate", "--to", pg_database, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["size"] == before.size and report["root"] == before.root
    assert report["verified"] == before.size

    # The SQLite file (and its WAL) is untouched; the home now names the database.
    assert {p.name: digest(p) for p in root.glob("charter.db*")} == files
    assert json.loads((root / "config.json").read_text())["database_url"] == pg_database
    with psycopg.connect(pg_database) as conn:
        count = conn.execute("SELECT count(*) FROM ledger").fetchone()
    assert count is not None and count[0] == before.size

    # Opened through its config: the same log, verifiable, and it goes on after the old head.
    async with await Home.open(Settings(home=root)) as h:
        assert h.settings.database_url == pg_database
        assert log_state(raw_db(h)) == before
        assert BlockingVault(h).get("api-key").reveal() == b"s3cret-value"  # same vault key
        await identity.add_agent(h, "gamma", scopes=[])
        head = await h.read(lambda tx: tx.ledger.head())
        first_new = await h.read(lambda tx: tx.ledger.get(before.size))
        assert head[0] == before.size + 1
        assert first_new is not None and first_new.fields["prev"] == before.head
    code, out, err = run(root, "audit", "verify")
    assert code == 0 and out.startswith(f"OK: {before.size + 1} entries verified"), err

    # A second run refuses: nothing is copied twice, the file is still untouched.
    code, out, err = run(root, "db", "migrate", "--to", pg_database)
    assert code != 0 and "already keeps its rows in PostgreSQL" in err
    assert "Traceback" not in err
    assert {p.name: digest(p) for p in root.glob("charter.db*")} == files


async def test_migrate_refuses_a_database_that_holds_a_ledger(
    tmp_path: Path, pg_database: str
) -> None:
    other = Settings(home=tmp_path / "other", database_url=pg_database)
    await (await Home.init(other, owner="x@example.com", cheap_kdf=True)).close()
    root = tmp_path / "home"
    await sqlite_home(root)
    code, _, err = run(root, "db", "migrate", "--to", pg_database)
    assert code != 0 and "already holds a Charter ledger" in err and "Traceback" not in err
    assert not (root / "config.json").exists()  # the home still uses its SQLite file
    with psycopg.connect(pg_database) as conn:
        count = conn.execute("SELECT count(*) FROM ledger").fetchone()
    assert count is not None and count[0] == 1  # the other home's ledger.init only


def test_migrate_refuses_a_url_that_is_not_postgresql(tmp_path: Path) -> None:
    code, _, err = run(tmp_path / "home", "db", "migrate", "--to", "sqlite:///x.db")
    assert code != 0 and "postgresql://" in err and "Traceback" not in err
