"""``charter mail outbox`` as a new user first sees it (issue 27.8)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from charter.cli import cli


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args], env={"CHARTER_HOME": str(home)})


def test_an_empty_outbox_says_no_messages_not_an_empty_table(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run(home, "init", "--owner", "alice@example.com").exit_code == 0
    shown = run(home, "mail", "outbox")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == "no messages\n"
    assert run(home, "mail", "outbox", "--agent", "bot").stdout == "no messages from agent bot\n"
    assert json.loads(run(home, "mail", "outbox", "--json").stdout) == []
