"""What an auditor depends on: Charter's evidence formats and their offline verification.

Needs PyNaCl and orjson only. The public surface is ``__all__``; everything else under
``charter.evidence`` is the implementation and may change. To verify an export folder::

    from charter.evidence import verify_export

    result = verify_export("ledger-export")
    print(result.valid, result.failed_seq, result.reason)
"""

from __future__ import annotations

from charter.evidence.auditor import AuditReport, Trust
from charter.evidence.c2sp import Checkpoint, open_checkpoint
from charter.evidence.canonical import canonical_json
from charter.evidence.entries import LedgerIdentity
from charter.evidence.export import ExportVerification, verify_export
from charter.evidence.verifier import verify_entries

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
