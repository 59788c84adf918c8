"""Storage: SQLite connections and migrations, the ledger, and in-transaction hooks."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from charter.storage.ledger import AppendHook


def ledger_hooks() -> list[AppendHook]:
    """Hooks run inside every ledger append transaction (e.g. Merkle tree maintenance)."""
    from charter.storage import tlog

    return [tlog.append_leaf]
