"""``charter init --database URL --join HOME``: a second host of a team deployment.

What it needs: the database URL and the first host's keys its servers sign with (log,
issuer, vault, agents), never the owner key unless asked. It then verifies the shared ledger,
accepts the first host's tokens (one issuer) and signs entries as an agent that continue the
one chain; owner actions are refused there. A keys folder of another deployment is refused and
leaves nothing behind.
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path

import pytest
from click.testing import CliRunner

from charter.cli import cli
from charter.config import Settings
from charter.evidence.entries import Entry
from charter.home import Home
from charter.testing import agent_draft, make_home
from charter.tools import identity, tokens
from charter.tools.identity import load_agent

pytestmark = pytest.mark.sqlite_only("makes its own PostgreSQL homes (pg_database)")

API = "https://api.example.com"


def run(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env={"CHARTER_HOME": str(root)})
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return result.exit_code, result.stdout, stderr


async def first_host(root: Path, url: str) -> str:
    """The first host's home on ``url`` with agent alpha; a token the owner issued there."""
    settings = Settings(home=root)
    async with await Home.init(settings, owner="o@example.com", cheap_kdf=True, database=url) as h:
        await identity.add_agent(h, "alpha", scopes=["audit:read"], audiences=[API])
        issued = await tokens.issue_for_owner(
            h, "alpha", audience=API, scopes=["audit:read"], ttl_seconds=600
        )
    return issued.token


async def test_a_second_host_joins_with_the_url_and_the_servers_keys(
    tmp_path: Path, pg_database: str
) -> None:
    one, two = tmp_path / "host1", tmp_path / "host2"
    token = await first_host(one, pg_database)

    code, out, err = run(two, "init", "--database", pg_database, "--join", str(one), "--json")
    assert code == 0, err
    joined = json.loads(out)
    assert "keys/owner.key" not in joined["keys"] and not (two / "keys" / "owner.key").exists()
    assert {"keys/log.key", "keys/agents/alpha.key"} <= set(joined["keys"])
    assert any(k.startswith("keys/issuer-") for k in joined["keys"])
    assert not (two / "charter.db").exists()
    assert json.loads((two / "config.json").read_text())["database_url"] == pg_database

    # The shared ledger verifies there, and the first host's token is accepted (one issuer).
    code, out, err = run(two, "audit", "verify")
    assert code == 0 and out.startswith("OK:"), err
    code, out, err = run(two, "token", "verify", token, "--audience", API, "--json")
    assert code == 0 and json.loads(out)["agent"] == "alpha", err + out

    # An agent's entry signed on the second host continues the one chain the first sees.
    async with await Home.open(Settings(home=two)) as h2:
        ctx = await load_agent(h2, "alpha")
        [entry] = await h2.store.append([agent_draft(ctx, action="identity.whoami")])
        assert isinstance(entry, Entry), entry
    async with await Home.open(Settings(home=one)) as h1:
        seen = await h1.read(lambda tx: tx.ledger.get(entry.seq))
        assert seen is not None and seen.hash == entry.hash
    code, out, err = run(one, "audit", "verify")
    assert code == 0 and out.startswith(f"OK: {entry.seq + 1} entries"), err

    # Owner actions need the owner key, which stayed on the first host.
    code, out, err = run(two, "agent", "add", "beta")
    assert code != 0 and "Traceback" not in err and "owner" in err.lower(), err


async def test_joining_with_another_deployments_keys_is_refused(
    tmp_path: Path, pg_database: str
) -> None:
    await first_host(tmp_path / "host1", pg_database)
    stranger = tmp_path / "stranger"
    await (await make_home(stranger)).close()
    two = tmp_path / "host2"
    code, _, err = run(two, "init", "--database", pg_database, "--join", str(stranger))
    assert code != 0 and "log.key does not match" in err and "Traceback" not in err
    assert not two.exists()  # nothing left behind
    code, _, err = run(two, "init", "--join", str(tmp_path / "host1"))
    assert code != 0 and "--database" in err and "Traceback" not in err
