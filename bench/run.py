"""Run the benchmarks: ``python -m bench.run [--quick] [--only NAME] [--json OUT]``.

Discovers every ``bench/bench_*.py`` module exposing ``run(quick: bool) -> list[dict]``,
prints one table of rows (Charter's figure, the baseline's, the ratio, the target, pass or
fail) and writes them as JSON with the machine they ran on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.metadata
import json
import os
import pkgutil
import platform
import sqlite3
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import bench
from bench._common import ROW_KEYS, Row, scratch_dir
from bench._ledgers import SHARED_ENV

DEFAULT_JSON = Path(__file__).resolve().parent / "results.json"


def modules() -> list[str]:
    """Names of the benchmark modules (``bench_*``), sorted."""
    return sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_")
    )


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    versions = {name: _version(name) for name in ("mcp", "pynacl", "orjson", "pydantic")}
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "packages": versions,
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def run_module(name: str, quick: bool, shared: Path) -> tuple[list[Row], float]:
    """Run one module in a fresh process (no threads, caches or memory left over from the
    others); a crash becomes a failed row rather than stopping the suite."""
    t0 = time.perf_counter()
    out = shared / f"{name}.json"
    argv = [sys.executable, "-m", "bench.run", "--child", name, "--json", str(out)]
    env = os.environ | {SHARED_ENV: str(shared)}
    done = subprocess.run([*argv, *(["--quick"] if quick else [])], env=env, check=False)
    try:
        if done.returncode != 0:
            raise RuntimeError(f"exited with status {done.returncode} (traceback above)")
        rows: list[Row] = json.loads(out.read_text())
    except Exception as exc:  # report and go on with the next benchmark
        rows = [
            {
                "name": f"{name}: crashed",
                "charter": 0.0,
                "baseline": 0.0,
                "unit": "-",
                "ratio": 0.0,
                "target": "-",
                "passed": False,
                "notes": f"{type(exc).__name__}: {exc}",
            }
        ]
    for r in rows:
        r["module"] = name
    return rows, time.perf_counter() - t0


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value < 10 else f"{value:.1f}"


def table(rows: list[Row]) -> Table:
    """The rich table of all rows."""
    t = Table(title="Charter benchmarks (ratio = Charter / same-run baseline)")
    for col in ("benchmark", "Charter", "baseline", "unit", "ratio", "target", "ok", "notes"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(
            r["name"],
            _fmt(r["charter"]),
            _fmt(r["baseline"]),
            r["unit"],
            f"{r['ratio']:.2f}x",
            r["target"],
            _verdict(r["passed"], "[green]pass[/]", "[red]FAIL[/]"),
            r["notes"],
        )
    return t


def _verdict(passed: bool | None, good: str, bad: str) -> str:
    return "-" if passed is None else good if passed else bad


def markdown(rows: list[Row]) -> str:
    """The rows as a Markdown table (for BENCHMARKS.md)."""
    lines = [
        "| benchmark | Charter | baseline | unit | ratio | target | result |",
        "|---|---:|---:|---|---:|---|---|",
    ]
    lines += [
        f"| {r['name']} | {_fmt(r['charter'])} | {_fmt(r['baseline'])} | {r['unit']} "
        f"| {r['ratio']:.2f}x | {r['target']} | {_verdict(r['passed'], 'pass', '**FAIL**')} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def child(name: str, quick: bool, out: Path) -> int:
    """Run one module in this process and write its rows to ``out``."""
    try:
        rows = importlib.import_module(f"bench.{name}").run(quick)
    except Exception:
        traceback.print_exc()
        return 1
    out.write_text(json.dumps(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns 0 (failed targets are reported, not fatal), 2 on a crash."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer rounds")
    parser.add_argument(
        "--only", action="append", default=[], help="run only this benchmark (e.g. append)"
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument("--markdown", type=Path, default=None, help="also write a .md table")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one module, in-process
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.quick, args.json)
    wanted = {name.removeprefix("bench_") for name in args.only}
    names = [m for m in modules() if not wanted or m.removeprefix("bench_") in wanted]
    if not names:
        parser.error(f"no benchmark named {sorted(wanted)}; have {modules()}")
    console = Console(width=None if sys.stdout.isatty() else 200)
    info = machine()
    console.print(f"machine: {info}")
    rows: list[Row] = []
    timings: dict[str, float] = {}
    shared = scratch_dir("run")
    for name in names:
        console.print(f"[bold]running {name}[/] ({'quick' if args.quick else 'full'}) ...")
        got, seconds = run_module(name, args.quick, shared)
        timings[name] = round(seconds, 1)
        rows.extend(got)
        console.print(table(got))
    console.print(table(rows))
    targeted = [r for r in rows if r["passed"] is not None]
    failed = [r["name"] for r in targeted if not r["passed"]]
    console.print(f"{len(targeted) - len(failed)}/{len(targeted)} rows meet their target")
    doc = {
        "command": " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])]),
        "quick": args.quick,
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": info,
        "seconds": timings,
        "rows": [{k: r[k] for k in (*ROW_KEYS, "module")} for r in rows],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    if args.markdown is not None:
        args.markdown.write_text(markdown(rows))
    console.print(f"wrote {args.json}")
    return 2 if any(r["name"].endswith(": crashed") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
