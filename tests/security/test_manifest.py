"""Every guarantee in SECURITY.md is enforced by tests that exist (tests/security/manifest.py)."""

from __future__ import annotations

import ast
import importlib.util
import re
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any


def _load_manifest() -> Any:
    """Load tests/security/manifest.py by path (test folders are not importable packages)."""
    path = Path(__file__).with_name("manifest.py")
    spec = importlib.util.spec_from_file_location("security_manifest", path)
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


manifest = _load_manifest()

ROOT = Path(__file__).resolve().parents[2]
#: A guarantee is defined where its id is bold: ``**G-LEDGER-2**``.
DEFINED = re.compile(r"\*\*(G-[A-Z]+-\d+)\*\*")
MENTIONED = re.compile(r"\bG-[A-Z]+-\d+\b")


@cache
def defined_tests(path: Path) -> frozenset[str]:
    """``name`` and ``Class::name`` of every test function in a test file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            )
    return frozenset(n for n in names if n.rsplit("::", 1)[-1].startswith("test_"))


def problems(doc: str, guarantees: Mapping[str, Sequence[str]], root: Path) -> list[str]:
    """Everything wrong between a threat model and its manifest (empty when they agree)."""
    defined = set(DEFINED.findall(doc))
    found = [f"{g} is mentioned but never defined" for g in set(MENTIONED.findall(doc)) - defined]
    found += [f"{g} has no entry in the manifest" for g in defined - set(guarantees)]
    found += [f"{g} is in the manifest but not in SECURITY.md" for g in set(guarantees) - defined]
    for guarantee, tests in guarantees.items():
        if not tests:
            found.append(f"{guarantee} names no test")
        for node in tests:
            file, _, name = node.partition("::")
            path = root / file
            if not file.startswith("tests/") or not path.is_file():
                found.append(f"{guarantee}: no test file {file}")
            elif name.split("[", 1)[0] not in defined_tests(path):
                found.append(f"{guarantee}: no test {node}")
    return sorted(found)


def test_every_guarantee_has_tests_that_exist() -> None:
    doc = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    assert DEFINED.findall(doc), "SECURITY.md defines no guarantee"
    assert problems(doc, manifest.GUARANTEES, ROOT) == []


def test_the_check_catches_a_guarantee_without_tests_or_with_a_missing_test() -> None:
    doc = "- **G-X-1** one thing.\n- **G-X-2** another (see G-X-3).\n"
    here = "tests/security/test_manifest.py::"
    found = problems(
        doc,
        {"G-X-2": (here + "test_no_such_test", "tests/nowhere.py::test_x"), "G-Y-1": ()},
        ROOT,
    )
    assert found == sorted(
        [
            "G-X-3 is mentioned but never defined",
            "G-X-1 has no entry in the manifest",
            "G-Y-1 is in the manifest but not in SECURITY.md",
            "G-Y-1 names no test",
            f"G-X-2: no test {here}test_no_such_test",
            "G-X-2: no test file tests/nowhere.py",
        ]
    )
    assert problems("- **G-X-1** ok.\n", {"G-X-1": (here + "defined_tests",)}, ROOT) == [
        f"G-X-1: no test {here}defined_tests"  # a helper, not a test
    ]
