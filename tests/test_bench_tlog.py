"""Smoke test of ``bench/bench_tlog.py`` (tiny sizes; the figures are not checked here)."""

from __future__ import annotations

import pytest

from bench import bench_tlog
from bench._common import ROW_KEYS, TINY_ENV

pytestmark = pytest.mark.sqlite_only("the benchmarks build their own SQLite homes")


def test_bench_tlog_reports_one_row_per_operation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TINY_ENV, "1")
    rows = bench_tlog.run(quick=True)
    names = [r["name"].split(",")[0] for r in rows]
    assert names == [
        "tlog: durable append",
        "tlog: Merkle append hook",
        "tlog: inclusion proof",
        "tlog: consistency proof",
        "tlog: root",
    ]
    for r in rows:
        assert set(ROW_KEYS) <= set(r)
        assert r["charter"] > 0 and r["baseline"] > 0 and r["unit"] == "µs/op"
        assert r["target"] == bench_tlog.TARGET and isinstance(r["passed"], bool)
        assert "1,000 vs 100 entries" in r["name"]
