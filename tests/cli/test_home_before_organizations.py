"""A single-owner home made before organizations (issue 28) opens, serves and verifies
unchanged. The fixture was made by the code this change started from (`charter init --owner
alice@example.com`, `charter agent add alpha --scope audit:read --valid-for 3650d`, one served
`identity_whoami`, `charter audit verify`): a throwaway home whose keys are test keys."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

from click.testing import CliRunner, Result
from mcp import Client

from charter.cli import cli
from charter.config import Settings
from charter.home import Home
from charter.testing import raw_tx, server_for
from charter.tools import audit

FIXTURE = Path(__file__).parents[1] / "support" / "fixtures" / "home-before-organizations.tar.gz"


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args], env={"CHARTER_HOME": str(home)})


def unpack(tmp_path: Path) -> Path:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    home = tmp_path / "home"
    for folder, dirs, files in os.walk(home):  # git keeps no modes; the home must be private
        os.chmod(folder, 0o700)
        for name in files:
            os.chmod(Path(folder) / name, 0o600)
        del dirs
    return home


async def test_a_home_made_before_organizations_opens_serves_and_verifies(tmp_path: Path) -> None:
    home = unpack(tmp_path)
    async with await Home.open(Settings(home=home)) as h:
        assert h.organization is None and h.owner_id == "alice@example.com"
        old = list(raw_tx(h).ledger.iter_bodies())
        assert len(old) == 3
        await audit.verify_home(h)  # the old ledger, under the new verifier
        async with Client(await server_for(h, "alpha")) as client:
            result = await client.call_tool("identity_whoami", {})
        assert not result.is_error
        me = result.structured_content
        assert me is not None
        assert (me["owner"], me["organization"]) == ("alice@example.com", None)
    # It works exactly as before: the single owner adds, revokes; no organization commands.
    added = run(home, "agent", "add", "beta", "--scope", "audit:read", "--json")
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["owner"] == "alice@example.com"
    assert run(home, "agent", "revoke", "alpha", "--yes").exit_code == 0
    refused = run(home, "owner", "list")
    assert refused.exit_code == 2 and "no organization" in refused.output
    assert run(home, "agent", "revoke", "beta", "--yes", "--as-org").exit_code == 2
    verified = run(home, "audit", "verify")
    assert verified.exit_code == 0, verified.output
    async with await Home.open(Settings(home=home)) as h:
        now = list(raw_tx(h).ledger.iter_bodies())
        assert now[:3] == old  # the old entries are untouched
        actions = [json.loads(b)["action"] for b in now[3:]]
        assert "agent.register" in actions and "agent.revoke" in actions
        owners = [json.loads(b)["owner"] for b in now]
        assert set(owners) == {"alice@example.com"}
