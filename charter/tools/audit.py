"""Reading, verifying and exporting the ledger (agent tools and owner CLI share these)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from charter.clock import parse_rfc3339, rfc3339
from charter.errors import InvalidInput, LedgerIntegrityError
from charter.evidence.auditor import AuditReport, Trust
from charter.evidence.canonical import canonical_json
from charter.evidence.entries import Entry
from charter.evidence.export import EXPORT_FORMAT, check_export, load_export
from charter.evidence.export_files import registered_charters
from charter.evidence.jwk import public_jwk, public_key_from_jwk, thumbprint
from charter.home import Home
from charter.storage.ports import Tx
from charter.tools import tlog

MAX_QUERY_LIMIT = 200

#: Verify an export, raising at the first failure (the owner's CLI and the tests use this
#: form; an auditor's script uses :func:`charter.evidence.verify_export`, which returns a result).
verify_export = check_export


class EntryOut(BaseModel):
    """One ledger entry as returned by queries."""

    seq: int
    ts: str
    hash: str
    actor: str
    action: str
    phase: str
    outcome: str | None
    reason: str | None
    call: str | None
    charter: str | None
    args: dict[str, Any]
    args_hash: str | None
    result_hash: str | None
    kid: str


class QueryPage(BaseModel):
    """A page of entries, oldest first, with the cursor for the next page."""

    entries: list[EntryOut]
    next_cursor: int | None = Field(
        description="Pass as `cursor` to get the next page; null at the end."
    )


class VerifyOut(BaseModel):
    """Result of verifying the whole ledger."""

    valid: bool
    size: int
    head: str | None = Field(description="Hash of the last entry when valid.")
    failed_seq: int | None = None
    reason: str | None = None


def entry_out(entry: Entry) -> EntryOut:
    """Project a stored entry for output."""
    f = entry.fields
    return EntryOut(
        seq=f["seq"],
        ts=f["ts"],
        hash=entry.hash,
        actor=f["actor"],
        action=f["action"],
        phase=f["phase"],
        outcome=f["outcome"],
        reason=f["reason"],
        call=f["call"],
        charter=f["charter"],
        args=f["args"],
        args_hash=f["args_hash"],
        result_hash=f["result_hash"],
        kid=f["kid"],
    )


async def query(
    home: Home,
    *,
    actor: str | None = None,
    action: str | None = None,
    outcome: Literal["ok", "denied", "error"] | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int = 50,
    cursor: int = 0,
    session: str | None = None,
) -> QueryPage:
    """Entries matching every filter, in seq order, from ``cursor`` on.

    Uses the (actor, seq) and (action, seq) indexes, so a page costs O(log n + limit);
    ``session`` (the signed field, e.g. a Claude Code session id) scans the entries the other
    filters leave (``LedgerQueries.find_page``).

    Raises:
        InvalidInput: for a malformed timestamp or an out-of-range limit.
        LedgerIntegrityError: a row of the page whose columns its signed entry contradicts.
    """
    if not 1 <= limit <= MAX_QUERY_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_QUERY_LIMIT}")
    if cursor < 0:
        raise InvalidInput("cursor must not be negative")
    start, end = None if since is None else _stamp(since), None if until is None else _stamp(until)
    page = await home.read(
        lambda tx: tx.queries.find_page(
            cursor=cursor,
            limit=limit,
            actor=actor,
            action=action,
            outcome=outcome,
            since=start,
            until=end,
            session=session,
        )
    )
    return QueryPage(entries=[entry_out(e) for e in page.entries], next_cursor=page.next_cursor)


def _stamp(value: str) -> str:
    """``value`` as the ledger writes timestamps (RFC 3339, UTC, milliseconds)."""
    try:
        return rfc3339(parse_rfc3339(value))
    except ValueError as exc:
        raise InvalidInput(f"invalid timestamp {value!r}: use RFC 3339") from exc


async def entries_from(home: Home, start: int, limit: int = 2000) -> list[EntryOut]:
    """Up to ``limit`` entries from seq ``start`` on, in seq order."""

    def work(tx: Tx) -> list[EntryOut]:
        return [entry_out(Entry.from_body(b)) for b in tx.ledger.iter_bodies(start, start + limit)]

    return await home.read(work)


async def verify_home(
    home: Home,
    progress: Callable[[int, int], None] | None = None,
    *,
    trust: Trust | None = None,
    workers: int | None = 1,
    private: bool = False,
) -> AuditReport:
    """Verify the home's whole ledger, its Merkle tree and signed checkpoints.

    ``trust`` adds a checkpoint the auditor kept, a witness policy and a resume file
    (AUDIT-FORMAT.md §8.5). ``workers`` processes check signatures in parallel (``None``:
    every core; see :func:`charter.evidence.verifier.verify_entries`).

    Raises:
        LedgerIntegrityError: at the first bad entry, or a tree, checkpoint, truncation or
            fork failure.
    """
    return await tlog.audit_home(home, trust, progress, workers=workers, private=private)


async def verify_out(home: Home, *, private: bool = False) -> VerifyOut:
    """:func:`verify_home` as a tool result."""
    try:
        report = await verify_home(home, private=private)
    except LedgerIntegrityError as exc:
        return VerifyOut(
            valid=False,
            size=await home.read(lambda tx: tx.queries.size()),
            head=None,
            failed_seq=exc.seq,
            reason=exc.reason,
        )
    return VerifyOut(valid=True, size=report.size, head=report.head)


# -- export ----------------------------------------------------------------------------------


async def export(home: Home, folder: Path) -> dict[str, Any]:
    """Write an auditor's bundle to ``folder`` (which must be empty or absent).

    Layout (AUDIT-FORMAT.md §6): ``ledger.json`` (identity and head), ``entries.jsonl`` (one
    canonical entry per line), ``keys.json`` (JWKS of every public key), ``charters/<hash>.json``,
    ``checkpoints/<size>.note`` (the log's signed checkpoints, one of them covering exactly the
    exported entries) and ``log.vkey``.

    Raises:
        InvalidInput: the folder exists and is not empty.
    """
    if folder.exists() and any(folder.iterdir()):
        raise InvalidInput(f"{folder} is not empty; choose a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "charters").mkdir(exist_ok=True)
    # A checkpoint first (signed now if the ledger grew): the export holds exactly the
    # entries it covers. Then one read transaction: a consistent snapshot even while servers
    # keep appending.
    size = await home.write(lambda tx: tx.checkpoints.sign().size)

    def write_entries(tx: Tx) -> tuple[str, list[bytes]]:
        last = tx.ledger.get(size - 1)
        head = home.identity.genesis_hash() if last is None else last.hash
        written: list[bytes] = []  # the registrations among them (few)
        with open(folder / "entries.jsonl", "wb") as fh:
            for body in tx.ledger.iter_bodies(0, size):
                fh.write(body + b"\n")
                if b'"charter_hash"' in body:
                    written.append(body)
        tlog.export_checkpoints(home, tx, folder, size)
        return head, written

    head, written = await home.read(write_entries)
    # Charters and agent keys come from the exported entries, not the live tables: an agent
    # registered after the checkpoint is in neither, so the files never contradict them.
    charters = registered_charters(written)
    for h, charter in charters.items():
        (folder / "charters" / f"{h}.json").write_bytes(canonical_json(charter) + b"\n")
    keys = [
        public_jwk(home.owner_public_key)
        | {"kid": thumbprint(home.owner_public_key), "use": "owner"},
        public_jwk(home.log_key.public_key) | {"kid": home.log_key.kid, "use": "log"},
    ]
    agent_keys = {c["agent"]["name"]: c["agent"]["key"] for c in charters.values()}
    for name, jwk in sorted(agent_keys.items()):
        key = public_key_from_jwk(jwk)
        keys.append(public_jwk(key) | {"kid": thumbprint(key), "use": f"agent:{name}"})
    (folder / "keys.json").write_text(json.dumps({"keys": keys}, indent=2) + "\n")
    manifest = {
        "format": EXPORT_FORMAT,
        "origin": home.origin,
        "owner": home.owner_id,
        "owner_key": public_jwk(home.owner_public_key),
        "log_key": public_jwk(home.log_key.public_key),
        "genesis": home.identity.genesis_hash(),
        "size": size,
        "head": head,
    }
    (folder / "ledger.json").write_bytes(canonical_json(manifest) + b"\n")
    for path in folder.rglob("*"):
        os.chmod(path, 0o700 if path.is_dir() else 0o600)
    return manifest


__all__ = [
    "EXPORT_FORMAT",
    "EntryOut",
    "QueryPage",
    "VerifyOut",
    "export",
    "load_export",
    "query",
    "verify_export",
    "verify_home",
    "verify_out",
]
