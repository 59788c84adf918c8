"""What an auditor's process may load: PyNaCl, orjson and the standard library, none of the
server stack. Shared by the layout and public-API tests, which run their imports in a fresh
interpreter and ask it which of these it loaded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FORBIDDEN_FOR_AUDITORS = (
    "mcp", "starlette", "uvicorn", "httpx", "httpx2", "aiosmtplib", "click", "rich",
    "aiosqlite", "sqlite3", "pydantic", "charter.storage", "charter.server", "charter.tools",
    "charter.cli", "charter.home", "charter.keys",
)  # fmt: skip

#: Appended to a script: prints, as its last line, the forbidden modules it loaded.
REPORT_FORBIDDEN = (
    "import sys as _sys\n"
    f"_bad = sorted(m for m in _sys.modules if any(m == f or m.startswith(f + '.')"
    f" for f in {FORBIDDEN_FOR_AUDITORS!r}))\n"
    "print(','.join(_bad))\n"
)


def run_isolated(script: str, cwd: Path) -> list[str]:
    """Run ``script`` in a fresh interpreter; return its output lines (the last one: the
    forbidden modules it loaded, comma-separated)."""
    out = subprocess.run(
        [sys.executable, "-c", script + "\n" + REPORT_FORBIDDEN],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    )
    return out.stdout.splitlines()
