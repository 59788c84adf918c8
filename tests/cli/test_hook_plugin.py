"""The Claude Code plugin in the repository (issue 23): its manifest, marketplace, hooks and
skill are well formed, every hook runs the real `charter hook claude-code` command, and that
command, run through a shell exactly as written, records an event."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from charter.testing import make_home
from charter.tools import audit, identity

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / ".claude-plugin"
EVENTS = {
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PostToolUse",
    "PostToolUseFailure",
    "SubagentStop",
    "Stop",
    "SessionEnd",
}


def load(name: str) -> dict[str, Any]:
    value = json.loads((PLUGIN / name).read_text())
    assert isinstance(value, dict)
    return value


def hook_commands() -> dict[str, list[str]]:
    hooks = load("hooks.json")["hooks"]
    assert isinstance(hooks, dict)
    return {
        event: [h["command"] for group in groups for h in group["hooks"]]
        for event, groups in hooks.items()
    }


def test_manifest_and_marketplace_name_one_plugin_at_the_repository_root() -> None:
    plugin, market = load("plugin.json"), load("marketplace.json")
    assert plugin["name"] == "charter"
    (entry,) = market["plugins"]
    assert entry["name"] == plugin["name"] and entry["source"] == "./"
    for key in ("hooks", "skills"):
        path = plugin[key]
        assert isinstance(path, str) and path.startswith("./")
        assert (ROOT / path).exists(), path
    server = plugin["mcpServers"]["charter"]
    assert server["command"] == "charter" and server["args"][:2] == ["serve", "--agent"]
    for skill in (ROOT / str(plugin["skills"])).glob("*/SKILL.md"):
        head = skill.read_text().split("---")[1]
        assert "name:" in head and "description:" in head


def test_every_event_runs_the_hook_command_with_a_timeout() -> None:
    commands = hook_commands()
    assert set(commands) == EVENTS
    for event, found in commands.items():
        assert len(found) == 1, event
        words = shlex.split(found[0])
        assert words[:4] == ["charter", "hook", "claude-code", "--agent"], event
    pre = load("hooks.json")["hooks"]["PreToolUse"][0]
    assert pre["matcher"] == "*" and pre["hooks"][0]["timeout"] >= 5


async def test_the_hook_command_as_written_records_an_event(tmp_path: Path) -> None:
    home = await make_home(tmp_path / "home")
    await identity.add_agent(home, "claude-code", scopes=[])
    command = hook_commands()["PreToolUse"][0]
    payload = (ROOT / "tests/tools/hook_payloads/pre_tool_use_bash_ls.json").read_bytes()
    bindir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARTER_")}
    env |= {"CHARTER_HOME": str(home.settings.home), "PATH": f"{bindir}:{env.get('PATH', '')}"}
    done = subprocess.run(
        ["sh", "-c", command], input=payload, capture_output=True, env=env, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    (intent,) = (await audit.query(home, session="abc123")).entries
    assert (intent.action, intent.phase, intent.args["tool"]) == ("hook.tool", "intent", "Bash")
    await home.close()
