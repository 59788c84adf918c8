"""Charter's public Python API, pinned: the names of ``charter`` and ``charter.evidence``, and
an auditor's three-line script run on a real ``charter audit export`` in a process that loads
none of the server stack."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
from auditstack import run_isolated
from click.testing import CliRunner

import charter
import charter.evidence
from charter.cli import cli
from charter.evidence.export import ExportVerification
from charter.home import Home

ROOT = Path(__file__).resolve().parents[1]

#: The auditor's script from AUDIT-FORMAT.md, printing what the result says.
AUDITOR_SCRIPT = (
    "import json, sys\n"
    "from charter.evidence import verify_export\n"
    "result = verify_export(sys.argv[1] if len(sys.argv) > 1 else {folder!r})\n"
    "print(json.dumps({{'valid': result.valid, 'failed_seq': result.failed_seq,"
    " 'reason': result.reason, 'size': result.size, 'checkpoints': result.checkpoints}}))\n"
)


def test_the_root_package_exports_exactly_the_version_and_the_export_verifier() -> None:
    assert charter.__all__ == ["__version__", "verify_export"]
    for name in charter.__all__:
        assert getattr(charter, name) is not None
    assert charter.verify_export is charter.evidence.verify_export
    assert isinstance(charter.__version__, str)


def test_the_evidence_library_exports_a_small_deliberate_surface() -> None:
    assert sorted(charter.evidence.__all__) == [
        "AuditReport",
        "Checkpoint",
        "ExportVerification",
        "LedgerIdentity",
        "Trust",
        "canonical_json",
        "open_checkpoint",
        "verify_entries",
        "verify_export",
    ]
    module = importlib.import_module("charter.evidence")
    for name in charter.evidence.__all__:
        assert getattr(module, name) is not None


def test_importing_charter_alone_loads_none_of_the_server_stack() -> None:
    assert run_isolated("import charter\nprint(charter.__version__)", ROOT) == [
        charter.__version__,
        "",
    ]


def test_importing_charter_alone_loads_nothing_of_charter_and_the_verifier_on_first_use() -> None:
    """Every command and server imports ``charter`` first: it must cost nothing. The public
    names are loaded when first used (PEP 562), and still give the real objects."""
    script = (
        "import sys, charter\n"
        "print(sorted(m for m in sys.modules if m.startswith('charter.')))\n"
        "from charter import verify_export\n"
        "print(verify_export.__module__)"
    )
    assert run_isolated(script, ROOT)[:2] == ["[]", "charter.evidence.export"]


@pytest.fixture
async def exported(home: Home, tmp_path: Path) -> Path:
    """A real export of a home with two agents, made by ``charter audit export``."""
    for i in range(3):
        await home.record_owner_event("test.event", {"i": i})
    folder = tmp_path / "export"
    result = CliRunner().invoke(
        cli, ["audit", "export", str(folder)], env={"CHARTER_HOME": str(home.layout.root)}
    )
    assert result.exit_code == 0, result.output
    return folder


def verify_isolated(folder: Path) -> tuple[dict[str, Any], list[str]]:
    *out, bad = run_isolated(AUDITOR_SCRIPT.format(folder=str(folder)), ROOT)
    return json.loads(out[-1]), [m for m in bad.split(",") if m]


def test_an_auditor_verifies_a_real_export_with_the_evidence_library_alone(
    exported: Path,
) -> None:
    result, loaded = verify_isolated(exported)
    assert result["valid"] is True
    assert result["failed_seq"] is None and result["reason"] is None
    manifest = json.loads((exported / "ledger.json").read_text())
    assert result["size"] == manifest["size"] > 0
    assert result["checkpoints"] >= 1
    assert loaded == []


def test_a_tampered_export_is_not_valid_and_says_where_and_why(exported: Path) -> None:
    path = exported / "entries.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    (seq,) = [i for i, line in enumerate(lines) if b'"args":{"i":0}' in line]
    lines[seq] = lines[seq].replace(b'"args":{"i":0}', b'"args":{"i":7}')  # an edited entry
    path.write_bytes(b"".join(lines))
    result, loaded = verify_isolated(exported)
    assert result["valid"] is False
    assert result["failed_seq"] == seq
    assert isinstance(result["reason"], str) and result["reason"]
    assert result["size"] is None
    assert loaded == []


def test_an_unreadable_export_is_not_valid(tmp_path: Path) -> None:
    result = charter.verify_export(tmp_path / "no-such-export")
    assert result == ExportVerification(valid=False, reason=result.reason)
    assert "not a readable Charter export" in str(result.reason)
