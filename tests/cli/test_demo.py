"""`charter demo` (the README's first command) runs the whole story and leaves nothing behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "TMPDIR": str(tmp_path), "HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "charter", "demo", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def test_demo_runs_the_story_and_cleans_up(tmp_path: Path) -> None:
    proc = _demo(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for step in (
        "charter init",
        "identity_whoami",
        "token_issue",
        "secret_http_request",
        "audit_verify",
        "charter audit verify",
    ):
        assert step in out, step
    assert "[REDACTED:DEMO_API_KEY]" in out
    assert "sk-demo-" not in out  # the agent never saw the key
    assert "valid=True" in out
    # The tool's size and the final count differ by the audit_verify call's own entry: said.
    said = re.search(r"valid=True size=(\d+) \(the ledger as it stood when checked", out)
    assert said, out
    size = int(said[1])
    final = rf"OK: {size + 1} entries \(1 more than audit_verify saw: the entries recorded after"
    assert re.search(final, out), out
    assert list(tmp_path.glob("charter-demo-*")) == []


def test_demo_keep_leaves_a_verifiable_home(tmp_path: Path) -> None:
    proc = _demo(tmp_path, "--keep")
    assert proc.returncode == 0, proc.stderr
    [kept] = list(tmp_path.glob("charter-demo-*"))
    verify = subprocess.run(
        [sys.executable, "-m", "charter", "audit", "verify"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": os.environ.get("PATH", ""), "CHARTER_HOME": str(kept / "home")},
    )
    assert verify.returncode == 0, verify.stderr
    assert "OK:" in verify.stdout, verify.stdout
