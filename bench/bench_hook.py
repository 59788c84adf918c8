"""The Claude Code hook (issue 23): one PreToolUse round trip through the real command.

Claude Code starts ``charter hook claude-code --agent A`` before every tool call, writes the
event on its stdin and waits for its answer. The figure is that whole round trip: spawn the
``charter`` console script, read the payload, open the home, load the agent's key and
charter, sign and commit the intent (fsync), answer, exit. Baseline: ``python -c pass`` (the
interpreter's own start, the floor of any command hook), spawned the same way in the same
run. Target: the issue's 50 ms median for the command hook.

Wall time on a shared, loaded machine swings with the load; the CPU time the child used
(user + system, from ``getrusage(RUSAGE_CHILDREN)``) swings much less, so both are reported.
"""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench._common import INFO, Row, interleave, median, percentile, pick, row, scratch_dir, tiny
from bench._ledgers import AGENT, create_home
from bench.bench_coldstart import host_env
from bench.bench_toolcall import REPO, charter_command

PAYLOAD = (REPO / "tests" / "tools" / "hook_payloads" / "pre_tool_use_bash_ls.json").read_bytes()
#: The issue's goal for a command hook's median round trip.
GOAL_MS = 50.0


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def round_trip(
    argv: list[str], env: dict[str, str], data: bytes, cpu: list[float] | None = None
) -> float:
    """Seconds from spawning ``argv`` with ``data`` on stdin to its exit (exit 0 required);
    the child's CPU seconds are appended to ``cpu``."""
    c0, t0 = _child_cpu(), time.perf_counter()
    done = subprocess.run(argv, input=data, capture_output=True, env=env, cwd=REPO, check=False)
    elapsed = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(_child_cpu() - c0)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[-3:]} failed: {done.stderr[-300:]!r}")
    return elapsed


def run(quick: bool) -> list[Row]:
    """Median and p99 of a PreToolUse round trip vs ``python -c pass``, interleaved."""
    rounds = pick(quick, full=101, quick_n=21, tiny_n=2)
    root: Path = scratch_dir("hook") / "home"
    asyncio.run(create_home(root))
    hook_argv = [*charter_command(), "hook", "claude-code", "--agent", AGENT]
    env = host_env({"CHARTER_HOME": str(root)})
    base_argv = [sys.executable, "-c", "pass"]
    if not tiny():  # warm the page cache for both
        round_trip(base_argv, env, b"")
        round_trip(hook_argv, env, PAYLOAD)
    base_cpu: list[float] = []
    subj_cpu: list[float] = []
    base, subj = interleave(
        rounds,
        lambda: round_trip(base_argv, env, b"", base_cpu),
        lambda: round_trip(hook_argv, env, PAYLOAD, subj_cpu),
    )
    med, p99 = median(subj) * 1e3, percentile(subj, 99) * 1e3
    base_med, base_p99 = median(base) * 1e3, percentile(base, 99) * 1e3
    note = f"{rounds} interleaved spawns each; the real command, intent committed (fsync)"
    return [
        row(
            "hook: PreToolUse round trip, median vs the 50 ms goal",
            med,
            GOAL_MS,
            "ms",
            "<= 1.0x",
            f"{note}; baseline column = the goal",
        ),
        row("hook: PreToolUse round trip, median", med, base_med, "ms", INFO, f"{note}; "
            "baseline: python -c pass"),
        row("hook: PreToolUse round trip, p99", p99, base_p99, "ms", INFO, f"{note}; "
            "baseline: python -c pass"),
        row("hook: PreToolUse CPU time (user+sys), median", median(subj_cpu) * 1e3,
            max(median(base_cpu) * 1e3, 0.1), "ms", INFO, f"{note}; baseline: python -c pass"),
    ]  # fmt: skip
