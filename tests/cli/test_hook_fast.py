"""``charter hook claude-code`` starts lean (issue 26): the usual spelling runs without click,
the MCP SDK, pydantic, or storage and signed-note code a hook never uses; every other
spelling goes through click as before (help, usage errors)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from charter.cli.hook import fast_main
from charter.testing import make_home
from charter.tools import audit, identity

PAYLOAD = (Path(__file__).parents[1] / "tools/hook_payloads/pre_tool_use_bash_ls.json").read_bytes()
#: Modules a PreToolUse hook has no use for (each costs start-up time on every tool call).
NOT_NEEDED = (
    "click",
    "mcp",
    "pydantic",
    "charter.storage.mail",
    "charter.storage.tokens",
    "charter.storage.approvals",
    "charter.storage.queries",
    "charter.evidence.c2sp",
    "charter.evidence.owners",
    "charter.keys.pkcs11",
)
PROBE = (
    "import sys\n"
    "sys.argv = ['charter', *sys.argv[1:]]\n"
    "from charter.cli import main\n"
    "try:\n"
    "    main()\n"
    "finally:\n"
    f"    loaded = [m for m in {NOT_NEEDED!r} if m in sys.modules]\n"
    "    sys.stderr.write(f'LOADED={loaded}\\n')\n"
)


def run(*args: str, data: bytes = PAYLOAD) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARTER_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        input=data,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


async def test_a_pre_tool_use_hook_imports_only_what_it_needs(tmp_path: Path) -> None:
    home = await make_home(tmp_path / "home")
    await identity.add_agent(home, "cc", scopes=[])
    for spelling in (["--agent", "cc", "--home", str(home.settings.home)],
                     [f"--home={home.settings.home}", "--agent=cc"]):  # fmt: skip
        done = run("hook", "claude-code", *spelling)
        assert done.returncode == 0, done.stderr
        assert "LOADED=[]" in done.stderr, done.stderr
    intents = (await audit.query(home, session="abc123")).entries
    assert [(e.action, e.phase) for e in intents] == [("hook.tool", "intent")] * 2
    await home.close()


async def test_a_hook_that_cannot_record_still_fails_closed_on_the_fast_path(
    tmp_path: Path,
) -> None:
    home = await make_home(tmp_path / "home")
    done = run("hook", "claude-code", "--agent", "nobody", "--home", str(home.settings.home))
    await home.close()
    assert done.returncode == 2
    assert "no agent named 'nobody'" in done.stderr and "Traceback" not in done.stderr
    assert "LOADED=[]" in done.stderr


def test_other_spellings_go_through_click(tmp_path: Path) -> None:
    helped = run("hook", "claude-code", "--help", data=b"")
    assert helped.returncode == 0 and "Usage: charter hook claude-code" in helped.stdout
    missing = run("hook", "claude-code", "--home", str(tmp_path), data=b"")
    assert missing.returncode == 2 and "Missing option '--agent'" in missing.stderr
    file_home = tmp_path / "a-file"
    file_home.write_text("")
    as_file = run("hook", "claude-code", "--agent", "cc", "--home", str(file_home), data=b"")
    assert as_file.returncode == 2 and "is a file" in as_file.stderr


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--agent"],
        ["--agent", ""],
        ["--agent=", "--home", "h"],
        ["--agent", "a", "--agent", "b"],
        ["--agent", "a", "--verbose"],
        ["--agent", "a", "extra"],
        ["--home", "h"],
        ["-h"],
        ["--agent", "--home"],
    ],
)
def test_fast_main_leaves_anything_unusual_to_click(args: list[str]) -> None:
    assert fast_main(args) is None


async def test_fast_main_steps_aside_inside_a_running_event_loop() -> None:
    assert fast_main(["--agent", "a"]) is None
