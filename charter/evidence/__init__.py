"""What an auditor depends on: Charter's evidence formats and their offline verification.

Needs PyNaCl and orjson only. The public surface is ``__all__``; everything else under
``charter.evidence`` is the implementation and may change. To verify an export folder::

    from charter.evidence import verify_export

    result = verify_export("ledger-export")
    result.valid, result.failed_seq, result.reason  # (True, None, None) when it verifies
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from charter.evidence.auditor import AuditReport, Trust
    from charter.evidence.c2sp import Checkpoint, open_checkpoint
    from charter.evidence.canonical import canonical_json
    from charter.evidence.entries import LedgerIdentity
    from charter.evidence.export import ExportVerification, verify_export
    from charter.evidence.verifier import verify_entries

#: Where each public name lives. Loaded on first use (PEP 562): the server imports parts of
#: this package on every start (the entry format, canonical JSON) and must not pay for the
#: auditor and the export reader it never runs.
_HOMES = {
    "AuditReport": "charter.evidence.auditor",
    "Trust": "charter.evidence.auditor",
    "Checkpoint": "charter.evidence.c2sp",
    "open_checkpoint": "charter.evidence.c2sp",
    "canonical_json": "charter.evidence.canonical",
    "LedgerIdentity": "charter.evidence.entries",
    "ExportVerification": "charter.evidence.export",
    "verify_export": "charter.evidence.export",
    "verify_entries": "charter.evidence.verifier",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


__all__ = [
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
