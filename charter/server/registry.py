"""The agent-facing surface: which tool families the server registers.

Each family module (``charter/server/families/<family>.py``) registers its tools with
``server.charter_tool(...)``; the pinned list and schemas live in ``tests/server/test_registry.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from charter.server.families import audit, identity

if TYPE_CHECKING:
    from charter.server.app import CharterServer

FAMILIES = (identity, audit)


def register_all(server: CharterServer) -> None:
    """Register every tool family on ``server``."""
    for family in FAMILIES:
        family.register(server)
