"""The shape of the package, held by tests: layers import only downward, no import circles,
no module past 600 lines, the evidence library stands alone, and the wiring is explicit."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from auditstack import run_isolated

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "charter"
MAX_LINES = 600

#: The layers, bottom first: a module may import its own layer and the ones below it only.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("charter", "charter.errors", "charter.clock", "charter.scopes", "charter.config"),
    ("charter.evidence",),
    ("charter.keys",),
    ("charter.storage",),
    ("charter.witness",),
    ("charter.home",),
    ("charter.tools",),
    ("charter.server", "charter.console"),
    ("charter.cli", "charter.testing", "charter.__main__"),
)
#: The package root itself re-exports the evidence library's public face
#: (``charter.verify_export``), so it sits in the evidence layer, not with the shared modules.
ROOT_LAYER = LAYERS.index(("charter.evidence",))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Charter modules ``name`` imports anywhere in the file: functions and
    ``if TYPE_CHECKING:`` blocks included (a circle of type imports is a circle of design)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def layer_of(name: str) -> int:
    if name == "charter":
        return ROOT_LAYER
    best, depth = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = index, len(prefix)
    assert best >= 0, f"module {name} is in no layer: add it to LAYERS"
    return best


def test_no_upward_imports() -> None:
    upward = sorted(
        f"{name} -> {target}"
        for name, targets in graph().items()
        for target in targets
        if layer_of(target) > layer_of(name)
    )
    assert upward == []


def test_no_import_circles() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def strongconnect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                strongconnect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            strongconnect(node)
    assert circles == []


def test_no_module_over_the_limit() -> None:
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_checker_sees_circles_and_upward_imports(tmp_path: Path) -> None:
    """The walk itself works: a planted circle and an upward import are found."""
    pkg = tmp_path / "charter"
    (pkg / "evidence").mkdir(parents=True)
    (pkg / "server").mkdir()
    for f in ("__init__.py", "evidence/__init__.py", "server/__init__.py"):
        (pkg / f).write_text("")
    (pkg / "evidence" / "a.py").write_text(
        "from charter.evidence import b\nimport charter.server.x\n"
    )
    (pkg / "evidence" / "b.py").write_text("def f():\n    from charter.evidence.a import g\n")
    (pkg / "server" / "x.py").write_text("")
    known = {"charter.evidence.a", "charter.evidence.b", "charter.server.x"}
    found_a = imports_of("charter.evidence.a", pkg / "evidence" / "a.py", known)
    found_b = imports_of("charter.evidence.b", pkg / "evidence" / "b.py", known)
    assert found_a == {"charter.evidence.b", "charter.server.x"}
    assert found_b == {"charter.evidence.a"}
    assert layer_of("charter.server.x") > layer_of("charter.evidence.a")


def test_the_evidence_library_needs_none_of_the_server_stack() -> None:
    script = (
        "import charter.evidence, charter.evidence.auditor, charter.evidence.verifier\n"
        "import charter.evidence.c2sp, charter.evidence.charters, charter.evidence.export\n"
    )
    assert run_isolated(script, ROOT)[-1] == ""


def test_every_cli_module_and_tool_family_is_wired() -> None:
    from charter.cli import COMMAND_MODULES
    from charter.server.wiring import FAMILIES

    cli_files = {p.stem for p in (PACKAGE / "cli").glob("*.py") if not p.stem.startswith("_")}
    assert set(COMMAND_MODULES) == cli_files
    family_files = {
        p.stem for p in (PACKAGE / "server" / "families").glob("*.py") if p.stem != "__init__"
    }
    assert {f.__name__.rpartition(".")[2] for f in FAMILIES} == family_files


@pytest.mark.parametrize(
    "forbidden",
    [
        "sqlite3",
        "aiosqlite",
        "psycopg",
        "asyncpg",
    ],
)
def test_no_database_driver_outside_storage(forbidden: str) -> None:
    users = sorted(
        name
        for name, path in modules().items()
        if not name.startswith("charter.storage")
        and any(
            (isinstance(n, ast.Import) and any(a.name.split(".")[0] == forbidden for a in n.names))
            or (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == forbidden)
            for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )
    )
    assert users == []


def test_no_private_key_file_is_read_outside_the_signer() -> None:
    readers = sorted(
        name
        for name, path in modules().items()
        if not name.startswith("charter.keys")
        and any(
            isinstance(n, ast.ImportFrom)
            and n.module == "charter.keys.files"
            and any(a.name in {"read_key_file", "KeyPair"} for a in n.names)
            for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )
    )
    assert readers == []
