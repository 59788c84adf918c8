"""Drive a stdio MCP server process with raw JSON-RPC lines, no SDK client in between.

Tests import it by module name (``from rawstdio import exchange``); ``tests/conftest.py`` puts
``tests/support`` on ``sys.path``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from typing import Any


def exchange(
    proc: subprocess.Popen[str], requests: Iterable[dict[str, Any]]
) -> tuple[list[str], str]:
    """Send each request and, if it has an id, read until its answer (closing stdin early
    would cancel calls); then close stdin, read the rest of stdout and all of stderr, and
    assert the process exits 0. Returns (every stdout line, stderr).

    Lines that are not JSON objects are kept, not parsed: callers decide whether a stray
    line on the wire is a failure.
    """
    assert proc.stdin is not None and proc.stdout is not None
    lines: list[str] = []
    for request in requests:
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        while "id" in request:
            line = proc.stdout.readline()
            assert line, "server closed stdout early"
            lines.append(line)
            if line.startswith("{") and json.loads(line).get("id") == request["id"]:
                break
    proc.stdin.close()
    lines += proc.stdout.readlines()
    stderr = proc.stderr.read() if proc.stderr else ""
    proc.stdout.close()
    if proc.stderr:
        proc.stderr.close()
    assert proc.wait(timeout=30) == 0, stderr
    return lines, stderr
