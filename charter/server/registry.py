"""The agent-facing surface: every tool family the server registers.

Each module in ``charter/server/families/`` exposes ``register(server)`` and registers its
tools with ``server.charter_tool(...)``. Family modules must import heavy dependencies (mail,
HTTP clients, crypto for the vault) inside their tools, not at module level, so the server
starts fast. The pinned tool list and schemas live in ``tests/server/test_registry.py``.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from charter.server import families

if TYPE_CHECKING:
    from charter.server.app import CharterServer


def family_modules() -> list[str]:
    """Names of the family modules, sorted (so tool order is stable)."""
    return sorted(
        m.name for m in pkgutil.iter_modules(families.__path__) if not m.name.startswith("_")
    )


def register_all(server: CharterServer) -> None:
    """Register every tool family on ``server``."""
    for name in family_modules():
        importlib.import_module(f"{families.__name__}.{name}").register(server)
