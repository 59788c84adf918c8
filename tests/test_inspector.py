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
INSPECTOR = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "mcp-inspector"


@pytest.fixture
def inspector() -> Path:
    if not INSPECTOR.exists() or shutil.which("node") is None:
        if os.environ.get("CI"):
            pytest.fail("MCP Inspector missing: .ci/install-inspector should have installed it")
        pytest.skip("run `bash .ci/install-inspector` to enable this test")
    return INSPECTOR


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
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_inspector_lists_tools_and_calls_whoami(inspector: Path, tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    identity.add_agent(home, "bot", scopes=["audit:read"])
    home.close()
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
