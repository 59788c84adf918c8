"""The ``ledger`` table's columns against the signed entries they copy (G-LEDGER-2).

``body`` holds an entry's bytes; the other columns copy its fields (and its hash) for the
table's indexes. Whoever can write the database file can change a column without touching the
signed body, so every reader that trusts a column checks it against the body here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from charter.errors import LedgerIntegrityError

#: Every column of the ``ledger`` table, ``body`` (the entry's bytes) last. The others are
#: copies of the entry's fields (and its hash) kept for indexes: whoever edits the file can
#: change them without touching the signed body, so they are checked against it wherever
#: they are trusted (:func:`row_mismatch`).
ROW_COLUMNS = "seq, prev, hash, ts, actor, action, phase, outcome, call_id, body"
#: (column, entry field) of the copied columns, in ``ROW_COLUMNS`` order after ``hash``.
_COPIES = (
    ("ts", "ts"), ("actor", "actor"), ("action", "action"), ("phase", "phase"),
    ("outcome", "outcome"), ("call_id", "call"),
)  # fmt: skip


def row_mismatch(row: Sequence[Any]) -> str | None:
    """The first column of a ``SELECT {ROW_COLUMNS}`` row that its entry contradicts, or None.

    None also when the body is not a JSON object: the verifier says what is wrong with it.
    """
    body = bytes(row[-1])
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(fields, dict):
        return None
    expected = (
        ("seq", fields.get("seq")),
        ("prev", fields.get("prev")),
        ("hash", hashlib.sha256(body).hexdigest()),
        *((column, fields.get(name)) for column, name in _COPIES),
    )
    for value, (column, want) in zip(row, expected, strict=False):
        if value != want or type(value) is not type(want):
            return column
    return None


def column_error(seq: int, column: str) -> LedgerIntegrityError:
    """The integrity error for a row whose ``column`` disagrees with its signed entry."""
    return LedgerIntegrityError(
        seq, f"the ledger row's {column} column does not match its signed entry (edited)"
    )


__all__ = ["ROW_COLUMNS", "column_error", "row_mismatch"]
