"""The README never drifts: every `charter …` command in its shell blocks parses against the
real CLI, and the blocks run, in order, against a real home (all but the long-running `serve`
and the `demo`, which tests/cli/test_demo.py runs)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from charter.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
NOT_RUN = ("charter serve", "charter demo")


def shell_lines() -> list[str]:
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", README, flags=re.S):
        lines += [line.strip() for line in block.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line]


def charter_commands() -> list[list[str]]:
    commands = []
    for line in shell_lines():
        for part in line.split("&&"):
            part = part.split("|")[-1].strip()
            if part.startswith("charter "):
                commands.append(shlex.split(part)[1:])
    return commands


def resolve(args: list[str]) -> click.Context:
    """Parse ``args`` exactly as `charter` would, without running anything."""
    ctx = cli.make_context("charter", list(args))
    command: click.Command = cli
    while isinstance(command, click.Group):
        name, sub, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        assert sub is not None, args
        ctx = sub.make_context(name, rest, parent=ctx)
        command = sub
    return ctx


def test_the_readme_has_the_two_setup_commands() -> None:
    setup = README[README.index("## Set up") : README.index("## Quick start")]
    assert "pip install -e . && charter demo" in setup
    assert "pip install -e '.[dev]' && python -m pytest" in setup
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -e '.[dev]' && python -m pytest" in ci  # CI runs the README's command


@pytest.mark.parametrize("args", charter_commands(), ids=" ".join)
def test_every_readme_command_parses(args: list[str]) -> None:
    resolve(args)


def test_the_readme_blocks_run_against_a_real_home(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "CHARTER_HOME": str(tmp_path / "home"),
        "GITHUB_TOKEN": "ghp-readme-test-value",
        "HOME": str(tmp_path),
    }
    ran = 0
    for line in shell_lines():
        command = line.split("&&")[-1].strip()
        if not command.split("|")[-1].strip().startswith("charter ") or command.startswith(NOT_RUN):
            continue
        shell = command.replace("charter ", f"{sys.executable} -m charter ")
        proc = subprocess.run(
            shell,
            shell=True,
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
        assert "ghp-readme-test-value" not in proc.stdout + proc.stderr
        # The README's own settings must all take effect (issue 27.4: no refusal, no warning).
        assert "warning:" not in proc.stderr, f"{command}\n{proc.stderr}"
        ran += 1
    assert ran >= 15


def test_shell_completion_works_as_documented() -> None:
    assert "_CHARTER_COMPLETE=bash_source charter" in README
    proc = subprocess.run(
        [sys.executable, "-c", "from charter.cli import main; main()"],
        env={"PATH": os.environ.get("PATH", ""), "_CHARTER_COMPLETE": "bash_source"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "complete" in proc.stdout, proc.stderr


def test_ci_installs_what_a_bare_debian_lacks() -> None:
    """`.ci/run` starts on a bare Debian 12: python3-venv before the venv, Node >= 22 (from
    the npm registry: Debian's nodejs is 18) before the Inspector."""
    run = (ROOT / ".ci" / "run").read_text()
    venv_install = re.search(r"apt-get install [^\n]*\bpython3 python3-venv\b", run)
    assert venv_install and venv_install.start() < run.index("python3 -m venv")
    assert run.index("bash .ci/install-inspector") < run.index("python -m pytest")
    inspector = (ROOT / ".ci" / "install-inspector").read_text()
    node = inspector.index('"node@$NODE_MAJOR"')
    assert "NODE_MAJOR=22" in inspector
    assert node < inspector.index("@modelcontextprotocol/inspector@")


def test_the_readme_inspector_command_pins_a_version_and_passes_the_home() -> None:
    pinned = (ROOT / ".ci" / "install-inspector").read_text()
    version = re.search(r"@modelcontextprotocol/inspector@([\d.]+)", pinned)
    assert version
    command = next(line for line in shell_lines() if "@modelcontextprotocol/inspector" in line)
    assert f"@modelcontextprotocol/inspector@{version.group(1)} " in command
    assert " -e CHARTER_HOME=" in command  # the Inspector 2.x does not pass the caller's env


def test_the_slow_marker_says_where_slow_tests_run() -> None:
    """The pytest marker text must be true: the README's command (what CI runs) runs every
    test, slow ones included; there is no separate step for them."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    slow = re.search(r'"slow: ([^"]*)"', pyproject)
    assert slow
    run = (ROOT / ".ci" / "run").read_text()
    if "separate step" in slow.group(1):
        assert "-m slow" in run
    assert "-m 'not slow'" not in run and '-m "not slow"' not in run
