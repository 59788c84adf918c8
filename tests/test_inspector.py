"""The official MCP Inspector CLI (a Node client) lists Charter's tools and calls one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from charter.testing import make_home
from charter.tools import identity

ROOT = Path(__file__).resolve().parents[1]
NODE_BIN = ROOT / ".ci" / "node" / "node_modules" / ".bin"
INSPECTOR = NODE_BIN / "mcp-inspector"
#: The Inspector 2.x fails on older Node (`CustomEvent is not defined`; Debian 12 ships 18).
NODE_MAJOR = 22


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why}: .ci/install-inspector should have installed it")
    pytest.skip(f"{why}; run `bash .ci/install-inspector` to enable this test")


def node_env() -> dict[str, str]:
    """The environment the Inspector runs in: the Node that .ci/install-inspector installed
    first on PATH (the Inspector's `#!/usr/bin/env node` picks it)."""
    return {**os.environ, "PATH": f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def node_version(env: dict[str, str]) -> tuple[str, tuple[int, ...]]:
    """The path and version of the `node` the Inspector will run under ``env``."""
    node = shutil.which("node", path=env["PATH"])
    if node is None:
        return "", ()
    out = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    return node, tuple(int(part) for part in out.strip().lstrip("v").split("."))


@pytest.fixture
def inspector() -> Path:
    if not INSPECTOR.exists():
        _unavailable("MCP Inspector missing")
    node, version = node_version(node_env())
    if version < (NODE_MAJOR,):
        _unavailable(f"Node >= {NODE_MAJOR} missing (found {node or 'none'} {version})")
    return INSPECTOR


def test_the_inspector_runs_under_node_22_or_later(inspector: Path) -> None:
    node, version = node_version(node_env())
    assert version >= (NODE_MAJOR,), (node, version)
    if os.environ.get("CI"):
        assert Path(node).parent == NODE_BIN  # the Node CI installed, not the system's


def _inspect(inspector: Path, home: Path, *args: str) -> dict[str, object]:
    charter_bin = Path(sys.executable).parent / "charter"
    proc = subprocess.run(
        [
            str(inspector),
            "--cli",
            "-e",
            f"CHARTER_HOME={home}",
            str(charter_bin),
            "serve",
            "--agent",
            "bot",
            *args,
        ],
        env=node_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


async def test_inspector_lists_tools_and_calls_whoami(inspector: Path, tmp_path: Path) -> None:
    home = await make_home(tmp_path / "home")
    await identity.add_agent(home, "bot", scopes=["audit:read"])
    await home.close()
    listed = _inspect(inspector, tmp_path / "home", "--method", "tools/list")
    tools = {t["name"]: t for t in listed["tools"]}  # type: ignore[attr-defined]
    assert {"identity_whoami", "audit_query", "audit_verify"} <= set(tools)
    for tool in tools.values():
        assert tool["description"], tool["name"]
        assert "annotations" in tool, tool["name"]
    called = _inspect(
        inspector, tmp_path / "home", "--method", "tools/call", "--tool-name", "identity_whoami"
    )
    assert called["isError"] is False
    who = called["structuredContent"]
    assert who["agent_id"] == "spiffe://charter.local/agent/owner/bot"  # type: ignore[index]
    assert who["scopes"] == ["audit:read"]  # type: ignore[index]
