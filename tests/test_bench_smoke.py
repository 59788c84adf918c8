"""Every benchmark runs end to end at a tiny size, so the suite never rots.

No timing assertions: the figures depend on the machine. Each module's rows must have the
documented keys, positive figures and a target the runner can check.
"""

from __future__ import annotations

import importlib
import json
import math
import os
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.sqlite_only("the benchmarks build their own SQLite homes")

REPO = Path(__file__).resolve().parents[1]


def _bench(monkeypatch: pytest.MonkeyPatch, name: str) -> ModuleType:
    monkeypatch.syspath_prepend(str(REPO))  # bench/ is not an installed package
    monkeypatch.setenv("CHARTER_BENCH_TINY", "1")
    return importlib.import_module(f"bench.{name}")


def _modules() -> list[str]:
    return sorted(p.stem for p in (REPO / "bench").glob("bench_*.py"))


@pytest.mark.parametrize("name", _modules())
def test_benchmark_runs_and_reports_well_formed_rows(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = _bench(monkeypatch, "_common")
    if name == "bench_keystore" and not os.environ.get("CI"):
        why = _bench(monkeypatch, "_softhsm").missing()
        if why:  # CI installs SoftHSM2 (.ci/install-softhsm): never skipped there
            pytest.skip(why)
    rows = _bench(monkeypatch, name).run(quick=True)
    assert rows, f"{name} reported nothing"
    for r in rows:
        assert set(r) >= set(common.ROW_KEYS), r
        assert isinstance(r["name"], str) and r["name"]
        for key in ("charter", "baseline", "ratio"):
            assert isinstance(r[key], float | int) and math.isfinite(r[key]) and r[key] > 0, r
        assert r["passed"] is common.meets(r["target"], r["ratio"]), r
        assert isinstance(r["unit"], str) and isinstance(r["notes"], str)
    if name == "bench_toolcall" and (
        os.environ.get("CI") or _bench(monkeypatch, name).ts_client_available()
    ):
        # The TypeScript client's rows (CI installs it with the Inspector: never skipped there).
        assert any(r["name"].startswith("toolcall, TS client:") for r in rows)


def test_runner_discovers_every_module_and_writes_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _bench(monkeypatch, "run")
    assert run.modules() == _modules()
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "results.json"
    assert run.main(["--quick", "--only", "scale", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["machine"]["nproc"] >= 1
    assert doc["rows"]
    assert {r["module"] for r in doc["rows"]} == {"bench_scale"}


def test_diagnose_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    diagnose = _bench(monkeypatch, "diagnose")
    assert diagnose.main(["-n", "5"]) == 0
    out = capsys.readouterr().out
    for section in ("== toolcall", "== append", "== verify", "PyNaCl verify", "COMMIT", "== pages"):
        assert section in out
