"""Verifying an export folder offline: what an auditor runs (AUDIT-FORMAT.md §6, §8).

An export (``charter audit export``) holds ``ledger.json`` (format, identity, size, head),
``entries.jsonl``, ``checkpoints/<size>.note``, ``log.vkey``, ``keys.json`` and
``charters/``. :func:`check_export` verifies all of it and raises at the first failure;
:func:`verify_export` is the auditor's form: it never raises for a bad export and returns a
:class:`ExportVerification` saying whether it is valid and, if not, where and why.

Needs PyNaCl and orjson only: nothing of the server, the storage or the command line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charter.errors import ConfigError, LedgerIntegrityError
from charter.evidence.auditor import AuditReport, Trust, audit_export
from charter.evidence.entries import LedgerIdentity
from charter.evidence.export_files import check_export_files
from charter.evidence.jwk import public_jwk, public_key_from_jwk, thumbprint

EXPORT_FORMAT = "charter-export/v1"


@dataclass(frozen=True, slots=True)
class ExportVerification:
    """The outcome of :func:`verify_export`.

    Attributes:
        valid: Every check passed.
        failed_seq: The first bad entry (None: valid, or the export as a whole failed).
        reason: Why it is not valid (None when valid).
        report: What the auditor checked (entries, head, checkpoints, witnesses...), when valid.
    """

    valid: bool
    failed_seq: int | None = None
    reason: str | None = None
    report: AuditReport | None = None

    @property
    def size(self) -> int | None:
        """Entries verified (None when not valid)."""
        return None if self.report is None else self.report.size

    @property
    def head(self) -> str | None:
        """Hash of the last entry (None when not valid)."""
        return None if self.report is None else self.report.head

    @property
    def checkpoints(self) -> int:
        """Signed checkpoints checked against the entries (0 when not valid)."""
        return 0 if self.report is None else self.report.checkpoints


def load_export(folder: Path) -> tuple[LedgerIdentity, dict[str, Any]]:
    """Open an export for verification: (identity, manifest).

    Raises:
        ConfigError: the folder is not a readable export.
    """
    try:
        manifest = json.loads((folder / "ledger.json").read_text())
        if manifest.get("format") != EXPORT_FORMAT:
            raise ConfigError(f"{folder} is not a {EXPORT_FORMAT} export")
        identity = LedgerIdentity(
            origin=str(manifest["origin"]),
            owner_id=str(manifest["owner"]),
            owner_key=public_key_from_jwk(manifest["owner_key"]),
            log_key=public_key_from_jwk(manifest["log_key"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{folder} is not a readable Charter export: {exc}") from exc
    return identity, manifest


def check_export(
    folder: Path, *, owner_key: str | None = None, trust: Trust | None = None
) -> AuditReport:
    """Verify an export offline; ``owner_key`` (a JWK thumbprint or base64url key) pins the owner.

    The entries are also checked against the export's signed checkpoints, and ``trust`` adds a
    checkpoint the auditor kept, a witness policy and a resume file (AUDIT-FORMAT.md §8.5).

    Raises:
        ConfigError: unreadable export.  LedgerIntegrityError: at the first bad entry, if the
            export carries no signed checkpoint of all its entries, or if its size/head disagree
            with its entries or the owner key is not the pinned one.
    """
    identity, manifest = load_export(folder)
    if owner_key is not None and owner_key not in (
        thumbprint(identity.owner_key),
        public_jwk(identity.owner_key)["x"],
    ):
        raise LedgerIntegrityError(None, "the export's owner key is not the pinned owner key")
    if manifest.get("genesis") != identity.genesis_hash():
        raise LedgerIntegrityError(None, "the manifest's genesis hash does not match its identity")
    report = audit_export(folder, identity, _claimed_size(manifest), trust or Trust())
    if report.size != manifest.get("size") or report.head != manifest.get("head"):
        raise LedgerIntegrityError(
            report.size,
            "the entries do not match the manifest's size and head (truncated or extended)",
        )
    check_export_files(folder, identity)  # charters/ and keys.json (log.vkey: audit_export)
    return report


def verify_export(
    folder: str | os.PathLike[str], *, owner_key: str | None = None, trust: Trust | None = None
) -> ExportVerification:
    """Verify an export folder offline (as :func:`check_export`) and say whether it is valid.

    Never raises for a bad or unreadable export: ``valid`` is False and ``failed_seq`` and
    ``reason`` say where and why.
    """
    try:
        report = check_export(Path(folder), owner_key=owner_key, trust=trust)
    except LedgerIntegrityError as exc:
        return ExportVerification(valid=False, failed_seq=exc.seq, reason=exc.reason)
    except ConfigError as exc:
        return ExportVerification(valid=False, reason=exc.public_message)
    return ExportVerification(valid=True, report=report)


def _claimed_size(manifest: dict[str, Any]) -> int:
    size = manifest.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise LedgerIntegrityError(None, "the manifest's size is not a number of entries")
    return size


__all__ = [
    "EXPORT_FORMAT",
    "ExportVerification",
    "check_export",
    "load_export",
    "verify_export",
]
