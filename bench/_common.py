"""Shared pieces of the benchmarks: rows, targets, interleaved rounds, throwaway ledgers.

Every figure is a ratio against a baseline measured in the same run. Baseline and subject
run in alternating rounds (the order flips every round, so a slow drift in the machine's
load hits both equally) and the rows report medians.
"""

from __future__ import annotations

import atexit
import math
import os
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

#: Set (to anything) to shrink every benchmark to a few seconds: the smoke test uses it.
TINY_ENV = "CHARTER_BENCH_TINY"

Row = dict[str, Any]
ROW_KEYS = ("name", "charter", "baseline", "unit", "ratio", "target", "passed", "notes")

_TARGET = re.compile(r"^\s*(<=|>=)\s*([0-9.]+)x")
#: The target of a row that explains another (e.g. a cost broken out): no pass or fail.
INFO = "info"


def tiny() -> bool:
    """True for the smoke run (sizes cut to the minimum that still exercises the code)."""
    return bool(os.environ.get(TINY_ENV))


def pick(quick: bool, *, full: int, quick_n: int, tiny_n: int) -> int:
    """A size knob: ``tiny_n`` under :data:`TINY_ENV`, else ``quick_n`` or ``full``."""
    if tiny():
        return tiny_n
    return quick_n if quick else full


def meets(target: str, ratio: float) -> bool | None:
    """Whether ``ratio`` meets a target written like ``">= 0.7x"`` or ``"<= 1.5x"``; None
    for an :data:`INFO` row."""
    if target == INFO:
        return None
    m = _TARGET.match(target)
    if m is None:
        raise ValueError(f"unparsable target {target!r}")
    bound = float(m.group(2))
    return ratio >= bound if m.group(1) == ">=" else ratio <= bound


def row(
    name: str,
    charter: float,
    baseline: float,
    unit: str,
    target: str,
    notes: str = "",
    *,
    ratio: float | None = None,
) -> Row:
    """One result row. ``ratio`` defaults to ``charter / baseline``."""
    r = charter / baseline if ratio is None else ratio
    return {
        "name": name,
        "charter": charter,
        "baseline": baseline,
        "unit": unit,
        "ratio": r,
        "target": target,
        "passed": meets(target, r),
        "notes": notes,
    }


def median(values: Sequence[float]) -> float:
    """The median (raises on an empty sequence)."""
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by the nearest-rank method."""
    ordered = sorted(values)
    k = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return ordered[k]


def interleave(
    rounds: int, baseline: Callable[[], float], subject: Callable[[], float]
) -> tuple[list[float], list[float]]:
    """Run ``baseline`` and ``subject`` alternately, ``rounds`` times each.

    The order flips every round (B S, S B, B S, ...). Each callable returns one figure
    (a rate or a duration). Returns (baseline figures, subject figures), round by round.
    """
    base: list[float] = []
    subj: list[float] = []
    for i in range(rounds):
        if i % 2 == 0:
            base.append(baseline())
            subj.append(subject())
        else:
            subj.append(subject())
            base.append(baseline())
    return base, subj


async def ainterleave(
    rounds: int,
    baseline: Callable[[], Awaitable[float]],
    subject: Callable[[], Awaitable[float]],
) -> tuple[list[float], list[float]]:
    """:func:`interleave` for figures measured by coroutines (one event loop for the run)."""
    base: list[float] = []
    subj: list[float] = []
    for i in range(rounds):
        if i % 2 == 0:
            base.append(await baseline())
            subj.append(await subject())
        else:
            subj.append(await subject())
            base.append(await baseline())
    return base, subj


def rate(n: int, fn: Callable[[], object]) -> float:
    """Run ``fn`` once and return ``n`` divided by the seconds it took."""
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


async def arate(n: int, fn: Callable[[], Awaitable[object]]) -> float:
    """:func:`rate` of a coroutine function: await ``fn()`` once, ``n`` per second."""
    t0 = time.perf_counter()
    await fn()
    return n / (time.perf_counter() - t0)


def ratio_of_rounds(subject: Sequence[float], baseline: Sequence[float]) -> float:
    """Median of the per-round ratios subject/baseline (robust to load changing mid-run)."""
    return median([s / b for s, b in zip(subject, baseline, strict=True)])


_SCRATCH: list[Path] = []


def scratch_dir(prefix: str) -> Path:
    """A temporary folder removed when the process exits."""
    path = Path(tempfile.mkdtemp(prefix=f"charter-bench-{prefix}-"))
    _SCRATCH.append(path)
    return path


@atexit.register
def _cleanup() -> None:
    for path in _SCRATCH:
        shutil.rmtree(path, ignore_errors=True)
