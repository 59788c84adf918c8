"""Auditing a ledger against signed checkpoints: what a hash chain alone cannot show.

:func:`charter.evidence.verifier.verify_entries` checks every entry and the hash chain.
Around it, this module rebuilds the RFC 9162 Merkle tree from the entry bytes (in O(log n)
memory) and checks:

- every signed checkpoint at hand (an export's ``checkpoints/``, a home's table) is signed by
  the log key under the ledger's origin, and its root is the root of the entries up to its size;
- a checkpoint the auditor kept from earlier: the ledger must extend it. Fewer entries than it
  covers is a *truncation*; another root at its size is a *fork*;
- a C2SP tlog-policy: the log key must be the policy's, and the anchoring checkpoint (the kept
  one, else the newest at hand) must carry the policy's witness quorum. Cosignatures by keys
  the policy does not list are ignored; a bad one by a listed key rejects the checkpoint;
- resume: a state file records the last verified checkpoint (its note, the tree's compact
  range and the verifier's state); the next run verifies only the entries after it, and the
  checkpoints at hand must extend it.

Entry errors win over tree errors: the tree is checked once every entry has verified, so the
first bad entry is still the one reported.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import importlib
import itertools
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from nacl.signing import VerifyKey

from charter.errors import ConfigError, LedgerIntegrityError
from charter.evidence import merkle
from charter.evidence.c2sp import (
    Checkpoint,
    NoteError,
    NoteVerifier,
    Policy,
    Signature,
    Verifier,
    open_checkpoint,
    verify_policy,
)
from charter.evidence.charters import CharterView, verify_charter
from charter.evidence.compact_range import CompactRange
from charter.evidence.delegation import is_delegation, read_delegation
from charter.evidence.entries import LedgerIdentity
from charter.evidence.owners import OwnerCertView, check_charter_signers, verify_owner_certificate
from charter.evidence.verifier import VerifyReport, VerifyState, charter_views, verify_entries

STATE_FORMAT = "charter-audit-state/v1"
#: Where an export keeps its signed checkpoints: ``checkpoints/<size>.note``.
CHECKPOINT_DIR = "checkpoints"
_NOTE_NAME = re.compile(r"(0|[1-9][0-9]{0,19})\.note")

#: A Merkle tree node: (level, index, hash).
Node = tuple[int, int, bytes]
#: Reads entry bytes in order from ``start``; ``offset`` is a resume hint (bytes into a file).
Source = Callable[[int, int | None], Iterator[bytes]]


@dataclass(frozen=True)
class Trust:
    """What the auditor brings from outside the ledger.

    Attributes:
        kept: A signed checkpoint note the auditor kept from an earlier look at this ledger.
        policy: A parsed C2SP tlog-policy (log key, witnesses, quorum).
        state: A resume file: read if it exists, (re)written after a successful verification.
    """

    kept: str | None = None
    policy: Policy | None = None
    state: Path | None = None


@dataclass(frozen=True, slots=True)
class AuditReport(VerifyReport):
    """A :class:`VerifyReport` plus what the Merkle tree and checkpoints showed."""

    #: Size of the newest signed checkpoint checked against the entries (None: none at hand).
    checkpoint_size: int | None = None
    #: Signed checkpoints checked against the entries.
    checkpoints: int = 0
    #: Size of the kept checkpoint the ledger was shown to extend.
    kept_size: int | None = None
    #: Entries before this were verified in an earlier run (0: verified from the start).
    resumed_from: int = 0
    #: Witnesses (policy names) whose cosignatures on the anchoring checkpoint verified.
    witnesses: tuple[str, ...] = ()
    #: Size the state file now records (None: not written).
    state_size: int | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """A root the entries must reproduce at ``size`` (a checkpoint's, or a store's)."""

    size: int
    root: bytes
    label: str
    kept: bool = False


@dataclass
class _Resume:
    note: str
    edge: CompactRange
    state: VerifyState
    offset: int | None
    #: (size, root) of every checkpoint the entries were shown to extend, this run or before.
    verified: set[tuple[int, bytes]]


def _fail(seq: int | None, reason: str) -> NoReturn:
    raise LedgerIntegrityError(seq, reason)


def log_verifier(identity: LedgerIdentity) -> Verifier:
    """The verifier of a ledger's checkpoints: key name = origin, key = the log key."""
    return Verifier(identity.origin, VerifyKey(identity.log_key))


class _Notes:
    """Opens checkpoint notes against the log key (and the policy's witnesses)."""

    def __init__(self, identity: LedgerIdentity, policy: Policy | None) -> None:
        self.origin = identity.origin
        self.log = log_verifier(identity)
        self.policy = policy
        self.verifiers: list[NoteVerifier] = [self.log]
        if policy is not None:
            if not any((v.name, v.key_id) == (self.log.name, self.log.key_id) for v in policy.logs):
                _fail(
                    None, f"the ledger's log key is not the one the policy trusts for {self.origin}"
                )
            self.verifiers.extend(policy.witnesses.values())

    def open(self, note: str, label: str) -> tuple[Checkpoint, list[Signature]]:
        try:
            checkpoint, signatures = open_checkpoint(note, self.verifiers)
        except NoteError as exc:
            _fail(None, f"{label}: {exc.reason}")
        if not any((s.name, s.key_id) == (self.log.name, self.log.key_id) for s in signatures):
            _fail(None, f"{label} is not signed by the log key")
        if checkpoint.origin != self.origin:
            _fail(None, f"{label} is for another log ({checkpoint.origin!r})")
        return checkpoint, signatures

    def witnesses(self, note: str, label: str) -> tuple[str, ...]:
        """Check the policy's quorum on ``note``; return the witnesses that cosigned it."""
        if self.policy is None:
            return ()
        try:
            verify_policy(note, self.policy)
        except NoteError as exc:
            _fail(None, f"{label} does not satisfy the policy: {exc.reason}")
        _, signatures = self.open(note, label)
        signed = {(s.name, s.key_id) for s in signatures}
        return tuple(
            name
            for name, witness in self.policy.witnesses.items()
            if (witness.name, witness.key_id) in signed
        )


def audit(
    identity: LedgerIdentity,
    source: Source,
    claimed_size: int,
    notes: Mapping[int, str],
    trust: Trust,
    *,
    extra: tuple[Target, ...] = (),
    position: Callable[[], int | None] = lambda: None,
    progress: Callable[[int, int], None] | None = None,
    check_nodes: Callable[[list[Node]], str | None] | None = None,
    workers: int | None = 1,
) -> AuditReport:
    """Verify a ledger's entries, its Merkle tree and checkpoints, and the auditor's trust.

    Args:
        identity: The ledger identity.
        source: Reads the entry bytes in order.
        claimed_size: How many entries the ledger claims (a home's head, a manifest's size).
        notes: Signed checkpoint notes at hand, by size.
        trust: The auditor's kept checkpoint, policy and resume file.
        extra: More roots to check (e.g. the home's stored tree).
        position: Where ``source`` is now (a byte offset), recorded for resuming.
        progress: Called with (entries read, claimed size) every 1000 entries.
        check_nodes: Given every tree node the entries produce, in batches; returns why a
            stored copy differs (e.g. a home's ``merkle_nodes``), or None.
        workers: Passed to :func:`verify_entries`.

    Raises:
        LedgerIntegrityError: the first bad entry, or a checkpoint, truncation or fork failure.
        ConfigError: the resume file is unreadable or not for this ledger.
    """
    checker = _Notes(identity, trust.policy)
    targets = list(extra)
    for size, note in sorted(notes.items()):
        checkpoint, _ = checker.open(note, f"checkpoint {size}")
        if checkpoint.size != size:
            _fail(None, f"checkpoint {size} is filed under the wrong size ({checkpoint.size})")
        targets.append(Target(size, checkpoint.root_hash, f"checkpoint {size}"))
    kept = None
    if trust.kept is not None:
        kept, _ = checker.open(trust.kept, "the checkpoint you kept")
        targets.append(Target(kept.size, kept.root_hash, "the checkpoint you kept", kept=True))

    resume = None
    if trust.state is not None and trust.state.exists():
        resume = load_state(trust.state, identity)
        # A kept checkpoint older than the resume point, and not checked in an earlier run,
        # can only be checked from the start.
        if (
            kept is not None
            and kept.size < resume.edge.size
            and (kept.size, kept.root_hash) not in resume.verified
        ):
            resume = None
    start = resume.edge.size if resume else 0
    if claimed_size < start:
        _fail(
            claimed_size,
            f"truncated: {claimed_size} entries here, but your audit state covers {start}",
        )
    edge = resume.edge if resume else CompactRange()
    wanted = {t.size for t in targets if t.size >= start}
    roots = {start: edge.root()} if start in wanted else {}

    pending: list[Node] = []
    node_errors: list[str] = []

    def flush() -> None:
        if check_nodes is not None and pending and not node_errors:
            error = check_nodes(pending)
            if error is not None:
                node_errors.append(error)
        pending.clear()

    def feed() -> Iterator[bytes]:
        for body in source(start, resume.offset if resume else None):
            created = edge.append(merkle.leaf_hash(body))
            if check_nodes is not None:
                pending.extend(created)
                if len(pending) >= 4096:
                    flush()
            if edge.size in wanted:
                roots[edge.size] = edge.root()
            if progress is not None and edge.size % 1000 == 0:
                progress(edge.size, claimed_size)
            yield body

    bodies = feed()
    state = resume.state if resume else VerifyState(head=identity.genesis_hash())
    save_at = max((s for s in notes if s >= start), default=None) if trust.state else None
    saved: dict[str, Any] | None = None
    if save_at is not None and save_at > start:
        prefix = itertools.islice(bodies, save_at - start)
        _, state = verify_entries(identity, prefix, state, workers=workers)
    if save_at is not None and state.size == save_at:
        verified = set(resume.verified) if resume else set()
        verified |= {(t.size, t.root) for t in targets if t.kept or t.size == save_at}
        saved = _state_doc(identity, notes[save_at], edge.copy(), state, position(), verified)
    report, state = verify_entries(identity, bodies, state, workers=workers)
    if progress is not None:
        progress(report.size, claimed_size)
    flush()

    if report.size != claimed_size:
        how = "truncated" if report.size < claimed_size else "extended"
        _fail(report.size, f"{how}: {report.size} entries here but {claimed_size} claimed")
    for target in sorted(targets, key=lambda t: t.size):
        if target.size < start:
            continue
        if target.size > report.size:
            what = "truncated: the checkpoint you kept" if target.kept else target.label
            _fail(
                report.size, f"{what} covers {target.size} entries, but only {report.size} are here"
            )
        if roots[target.size] != target.root:
            if target.kept:
                _fail(
                    None,
                    f"fork: the first {target.size} entries are not the ones in the checkpoint "
                    "you kept (another history was shown to you before)",
                )
            # From a resume point, the root also depends on the history the state vouches for.
            also = " or the history your audit state records (a fork)" if start else ""
            _fail(None, f"{target.label} does not match the entries{also}: its root differs")
    if node_errors:
        _fail(None, node_errors[0])
    anchor = trust.kept if trust.kept is not None else (notes[max(notes)] if notes else None)
    witnesses: tuple[str, ...] = ()
    if trust.policy is not None:
        if anchor is None:
            _fail(None, "no signed checkpoint to check the policy against")
        witnesses = checker.witnesses(anchor, "the anchoring checkpoint")
    if saved is not None and trust.state is not None:
        _write_state(trust.state, saved)
    checked = [s for s in notes if s >= start]
    return AuditReport(
        size=report.size,
        head=report.head,
        agents=report.agents,
        revoked=report.revoked,
        checkpoint_size=max(checked, default=None),
        checkpoints=len(checked),
        kept_size=None if kept is None else kept.size,
        resumed_from=start,
        witnesses=witnesses,
        state_size=None if saved is None else int(saved["size"]),
    )


def audit_export(
    folder: Path, identity: LedgerIdentity, claimed_size: int, trust: Trust
) -> AuditReport:
    """:func:`audit` an export folder: ``entries.jsonl``, ``checkpoints/``, ``log.vkey``.

    The export must carry a signed checkpoint of all its entries (AUDIT-FORMAT.md §8.5):
    without one, whoever holds it could cut its tail unnoticed.

    Raises:
        LedgerIntegrityError: no ``checkpoints/`` folder or no checkpoint of all the entries;
            otherwise as :func:`audit`.
        ConfigError: unreadable files.
    """
    if not (folder / CHECKPOINT_DIR).is_dir():
        _fail(
            None,
            f"the export has no {CHECKPOINT_DIR}/ folder, so nothing signed anchors its entries: "
            "export the ledger again with `charter audit export`",
        )
    notes = export_notes(folder)
    if claimed_size not in notes:
        _fail(
            None,
            f"the export has no signed checkpoint of all its {claimed_size} entries "
            f"({CHECKPOINT_DIR}/{claimed_size}.note)",
        )
    vkey = folder / "log.vkey"
    if vkey.exists() and vkey.read_text(encoding="utf-8").strip() != log_verifier(identity).vkey:
        _fail(None, "log.vkey is not the log key named in ledger.json")
    lines = LinesSource(folder / "entries.jsonl")
    return audit(identity, lines, claimed_size, notes, trust, position=lambda: lines.offset)


# -- sources --------------------------------------------------------------------------------------


class LinesSource:
    """Reads ``entries.jsonl`` line by line, tracking the byte offset for resuming.

    Args:
        path: The JSONL file: entry bytes, one per line, each ended by ``\\n``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def __call__(self, start: int, offset: int | None) -> Iterator[bytes]:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - a generator owns it
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path.name}: {exc.strerror}") from exc
        with fh:
            if offset is not None and self._at_line_start(fh, offset):
                fh.seek(offset)
                self.offset = offset
            else:  # no usable hint: count lines without parsing them
                fh.seek(0)
                self.offset = 0
                for _ in range(start):
                    line = fh.readline()
                    if not line:
                        return
                    self.offset += len(line)
            for seq, line in enumerate(fh, start):
                if not line.endswith(b"\n"):  # never parse what may be half an entry
                    _fail(seq, f"{self.path.name} ends with a partial line (cut or edited)")
                self.offset += len(line)
                yield line[:-1]

    @staticmethod
    def _at_line_start(fh: Any, offset: int) -> bool:
        if offset == 0:
            return True
        fh.seek(offset - 1)
        return bool(fh.read(1) == b"\n")


def export_notes(folder: Path) -> dict[int, str]:
    """The signed checkpoints of an export (``checkpoints/<size>.note``), by size.

    Raises:
        ConfigError: a file there is not a readable ``<size>.note``.
    """
    notes: dict[int, str] = {}
    directory = folder / CHECKPOINT_DIR
    if not directory.is_dir():
        return notes
    for path in directory.iterdir():
        match = _NOTE_NAME.fullmatch(path.name)
        if match is None:
            raise ConfigError(f"unexpected file {CHECKPOINT_DIR}/{path.name} in the export")
        try:
            notes[int(match.group(1))] = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {CHECKPOINT_DIR}/{path.name}: {exc}") from exc
    return notes


# -- resume state ---------------------------------------------------------------------------------


def load_state(path: Path, identity: LedgerIdentity) -> _Resume:
    """Read a resume file and check it against the ledger identity and the log key.

    Raises:
        ConfigError: unreadable, malformed, or for another ledger.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != STATE_FORMAT:
            raise ConfigError(f"{path.name} is not a {STATE_FORMAT} file")
        if doc["origin"] != identity.origin or doc["genesis"] != identity.genesis_hash():
            raise ConfigError(f"{path.name} is the audit state of another ledger")
        checkpoint, _ = open_checkpoint(doc["checkpoint"], [log_verifier(identity)])
        hashes = [base64.b64decode(h, validate=True) for h in doc["tree"]]
        edge = CompactRange(int(doc["size"]), hashes)
        state = _decode(doc["verifier"], {}, identity.owner_key)
        offset = doc.get("offset")
        verified = {(int(n), base64.b64decode(r, validate=True)) for n, r in doc["verified"]}
    except ConfigError:
        raise
    except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ConfigError(f"the audit state {path.name} cannot be used: {exc}") from exc
    if (
        not isinstance(state, VerifyState)
        or (checkpoint.size, checkpoint.root_hash) != (edge.size, edge.root())
        or state.size != edge.size
        or not (offset is None or (isinstance(offset, int) and offset >= 0))
    ):
        raise ConfigError(f"the audit state {path.name} is inconsistent; delete it to start over")
    return _Resume(doc["checkpoint"], edge, state, offset, verified)


def _state_doc(
    identity: LedgerIdentity,
    note: str,
    edge: CompactRange,
    state: VerifyState,
    offset: int | None,
    verified: set[tuple[int, bytes]],
) -> dict[str, Any]:
    return {
        "format": STATE_FORMAT,
        "origin": identity.origin,
        "genesis": identity.genesis_hash(),
        "size": edge.size,
        "checkpoint": note,
        "tree": [base64.b64encode(h).decode("ascii") for h in edge.hashes],
        "offset": offset,
        "verified": [[n, base64.b64encode(r).decode("ascii")] for n, r in sorted(verified)],
        "verifier": _encode(state, {}),
    }


def _write_state(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)  # in order: a reference follows its object
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write the audit state {path.name}: {exc.strerror}") from exc


# The verifier's state is a graph of dataclasses (agents are shared between two indexes), so
# it is saved with references, and only dataclasses of these modules are ever rebuilt.
_STATE_MODULES = (
    "charter.evidence.verifier",
    "charter.evidence.charters",
    "charter.evidence.owners",
)


def _encode(value: Any, memo: dict[int, int]) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dt.datetime):
        return {"$time": value.isoformat()}
    if isinstance(value, list):
        return [_encode(v, memo) for v in value]
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, memo) for v in value]}
    if isinstance(value, set | frozenset):
        return {"$set": [_encode(v, memo) for v in value]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("verifier state has a dict with non-string keys")
        return {"$dict": {k: _encode(v, memo) for k, v in value.items()}}
    cls = type(value)
    if dataclasses.is_dataclass(value) and cls.__module__ in _STATE_MODULES:
        if id(value) in memo:
            return {"$ref": memo[id(value)]}
        memo[id(value)] = len(memo)
        return {
            "$obj": f"{cls.__module__}:{cls.__qualname__}",
            "$id": memo[id(value)],
            "fields": {
                f.name: _encode(getattr(value, f.name), memo) for f in dataclasses.fields(value)
            },
        }
    raise TypeError(f"verifier state holds a {cls.__name__}, which cannot be saved")


def _decode(value: Any, memo: dict[int, Any], owner_key: bytes) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, list):
        return [_decode(v, memo, owner_key) for v in value]
    if not isinstance(value, dict) or len(value) not in (1, 3):
        raise ValueError("malformed verifier state")
    if "$bytes" in value:
        return base64.b64decode(value["$bytes"], validate=True)
    if "$time" in value:
        return dt.datetime.fromisoformat(value["$time"])
    if "$tuple" in value:
        return tuple(_decode(v, memo, owner_key) for v in value["$tuple"])
    if "$set" in value:
        return {_decode(v, memo, owner_key) for v in value["$set"]}
    if "$dict" in value:
        return {str(k): _decode(v, memo, owner_key) for k, v in value["$dict"].items()}
    if "$ref" in value:
        if int(value["$ref"]) not in memo:
            raise ValueError("verifier state refers to an object before defining it")
        return memo[int(value["$ref"])]
    module_name, _, qualname = str(value["$obj"]).partition(":")
    if module_name not in _STATE_MODULES:
        raise ValueError(f"verifier state names an unexpected type {value['$obj']!r}")
    cls = getattr(importlib.import_module(module_name), qualname, None)
    if not isinstance(cls, type) or not dataclasses.is_dataclass(cls):
        raise ValueError(f"verifier state names an unknown type {value['$obj']!r}")
    obj = cls.__new__(cls)
    memo[int(value["$id"])] = obj
    fields = value["fields"]
    if set(fields) != {f.name for f in dataclasses.fields(cls)}:
        raise ValueError(f"verifier state has other fields for {qualname}")
    for name, raw in fields.items():
        object.__setattr__(obj, name, _decode(raw, memo, owner_key))
    if isinstance(obj, CharterView) and _reverify(obj.doc) != obj:
        raise ValueError("verifier state holds a charter that does not verify")
    if isinstance(obj, OwnerCertView) and (
        verify_owner_certificate(obj.doc, owner_key, obj.org_id) != obj
    ):
        raise ValueError("verifier state holds an owner certificate that does not verify")
    if isinstance(obj, VerifyState):  # each charter's signer: the pinned key or an owner's
        check_charter_signers(obj.owners, charter_views(obj), owner_key)
    return obj


def _reverify(doc: Any) -> CharterView:
    """An owner charter (its own signature; who signed it is checked against the pinned key
    and the certified owners with the whole state), or a delegation charter (its parent's
    signature; the chain itself was checked when the entry registering it was replayed)."""
    return read_delegation(doc) if is_delegation(doc) else verify_charter(doc)


__all__ = [
    "CHECKPOINT_DIR",
    "STATE_FORMAT",
    "AuditReport",
    "LinesSource",
    "Source",
    "Target",
    "Trust",
    "audit",
    "audit_export",
    "export_notes",
    "load_state",
    "log_verifier",
]
