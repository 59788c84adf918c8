"""Many writers, one ledger: server processes, the owner's CLI and raw appenders at once.

Each server is a real ``charter serve --agent wN`` subprocess kept busy by a raw JSON-RPC
client with several calls in flight (whoami, audit_query and email_send on the local
transport, which also writes the mail tables). Meanwhile the CLI re-issues a charter in a
loop. Afterwards the ledger must verify, hold seqs 0..n-1 with no fork, and no agent may
have seen an error at all, let alone "database is locked".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sechelp

from charter.testing import make_home, raw_tx
from charter.tools import identity

CHILD = str(Path(__file__).with_name("ledger_child.py"))
IN_FLIGHT = 4


@dataclass
class Load:
    """What one load run saw."""

    calls: list[tuple[bool, str]] = field(default_factory=list)
    cli_runs: list[tuple[int, str]] = field(default_factory=list)
    entries_before: int = 0
    entries_after: int = 0
    seconds: float = 0.0

    def figures(self, servers: int) -> dict[str, Any]:
        appended = self.entries_after - self.entries_before
        return {
            "servers": servers,
            "seconds": round(self.seconds, 2),
            "tool_calls": len(self.calls),
            "cli_commands": len(self.cli_runs),
            "entries_appended": appended,
            "entries_per_second": round(appended / self.seconds, 1),
            "calls_per_second": round(len(self.calls) / self.seconds, 1),
        }


async def make_site(root: Path, servers: int) -> None:
    async with await make_home(root) as home:
        await sechelp.add_mailbox(home)
        await identity.add_agent(home, "cli-target", scopes=[])
        for n in range(servers):
            await sechelp.add_mail_agent(home, f"w{n}", ["audit:read", "email:send"])


def drive(server: sechelp.RawStdioServer, name: str, deadline: float, out: Load) -> None:
    """Keep IN_FLIGHT calls outstanding until the deadline, then drain."""
    pending: set[int] = set()
    i = 0
    while time.monotonic() < deadline or pending:
        while time.monotonic() < deadline and len(pending) < IN_FLIGHT:
            kind = i % 3
            if kind == 0:
                rid = server.call("identity_whoami", {})
            elif kind == 1:
                rid = server.call("audit_query", {"limit": 1})
            else:
                rid = server.call("email_send", sechelp.send_args(f"load {name} {i}"))
            pending.add(rid)
            i += 1
        message = server.next_response(timeout=120)
        pending.discard(int(message["id"]))
        ok, _, text = sechelp.tool_result(message)
        out.calls.append((ok, text))


def cli_loop(root: Path, deadline: float, out: Load) -> None:
    """The owner re-issues a charter again and again (each one an owner-signed append)."""
    while True:
        result = sechelp.charter_cli(root, "agent", "update", "cli-target", "--valid-for", "30d")
        out.cli_runs.append((result.returncode, result.stderr))
        if time.monotonic() >= deadline:
            return


async def run_load(tmp_path: Path, servers: int, seconds: float) -> Load:
    root = tmp_path / "home"
    await make_site(root, servers)
    load = Load()
    procs = [
        sechelp.RawStdioServer(root, f"w{n}", tmp_path / f"w{n}.stderr") for n in range(servers)
    ]
    try:
        for proc in procs:
            proc.initialize(timeout=120)
        async with await sechelp.open_home(root) as home:
            load.entries_before = raw_tx(home).ledger.head()[0]
        started = time.monotonic()
        deadline = started + seconds
        threads = [
            threading.Thread(target=drive, args=(proc, f"w{n}", deadline, load))
            for n, proc in enumerate(procs)
        ]
        threads.append(threading.Thread(target=cli_loop, args=(root, deadline, load)))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=seconds + 300)
        load.seconds = time.monotonic() - started
        async with await sechelp.open_home(root) as home:
            load.entries_after = raw_tx(home).ledger.head()[0]
    finally:
        codes = [proc.close() for proc in procs]
    assert codes == [0] * servers, "a server did not shut down cleanly"
    for n in range(servers):
        log = (tmp_path / f"w{n}.stderr").read_text()
        assert "locked" not in log and "Traceback" not in log, log[-2000:]
    return load


async def check_load(tmp_path: Path, load: Load, servers: int) -> dict[str, Any]:
    failures = [text for ok, text in load.calls if not ok]
    assert not failures, failures[:5]
    assert not any("locked" in text or "busy" in text for _, text in load.calls)
    assert load.cli_runs and all(code == 0 for code, _ in load.cli_runs), load.cli_runs[:3]
    report = await sechelp.verify(tmp_path / "home")  # gap-free seqs, one unforked valid chain
    assert report.size == load.entries_after
    # Each call writes at least one entry, an email two, each CLI run one.
    assert load.entries_after - load.entries_before >= len(load.calls) + len(load.cli_runs)
    figures = load.figures(servers)
    out = json.dumps(figures)
    (tmp_path / "concurrency.json").write_text(out + "\n")
    results_dir = os.environ.get("SECURITY_RESULTS_DIR")
    if results_dir:
        Path(results_dir, f"concurrency-{servers}x{round(load.seconds)}s.json").write_text(out)
    return figures


def show(capsys: pytest.CaptureFixture[str], what: str, figures: dict[str, Any]) -> None:
    with capsys.disabled():
        print(f"\n{what}: {json.dumps(figures)}")


async def test_three_servers_and_the_cli_for_three_seconds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load = await run_load(tmp_path, servers=3, seconds=3)
    show(capsys, "concurrency (3 servers + CLI, 3 s)", await check_load(tmp_path, load, 3))


@pytest.mark.slow
async def test_eight_servers_and_the_cli_for_thirty_seconds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load = await run_load(tmp_path, servers=8, seconds=30)
    show(capsys, "concurrency (8 servers + CLI, 30 s)", await check_load(tmp_path, load, 8))


# -- Ledger.append from several processes -----------------------------------------------------


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, CHILD, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=sechelp.server_env(Path(args[1])),
    )


def start_together(children: list[subprocess.Popen[str]]) -> None:
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()


def finish(child: subprocess.Popen[str], check: Callable[[str], bool]) -> None:
    out, _ = child.communicate(timeout=120)
    assert child.returncode == 0 and check(out), out


async def test_four_processes_appending_through_ledger_append_leave_one_valid_chain(
    tmp_path: Path,
) -> None:
    root = tmp_path / "home"
    await (await make_home(root)).close()
    per_child = 60
    children = [spawn("append", str(root), str(per_child), f"p{n}") for n in range(4)]
    start_together(children)
    for child in children:
        finish(child, lambda out: "done" in out)
    report = await sechelp.verify(root)
    assert report.size == 1 + 4 * per_child
    async with await sechelp.open_home(root) as home:
        appended = [e["args"] for e in sechelp.entries(home) if e["action"] == "test.append"]
    for n in range(4):
        assert sorted(a["i"] for a in appended if a["writer"] == f"p{n}") == list(range(per_child))
