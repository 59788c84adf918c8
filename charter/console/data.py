"""What the console's pages show, read in units of work over the repositories.

Nothing here writes: the owner's actions go through the services of :mod:`charter.tools`
(``approvals.approve``/``deny``, ``lockdown.lockdown``/``lift``), which sign with the owner
key and append the owner's ledger entries in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from charter.clock import parse_rfc3339, rfc3339
from charter.errors import CharterError, InvalidInput
from charter.evidence import merkle
from charter.evidence.c2sp import NoteError, TlogProof, verify_tlog_proof
from charter.evidence.c2sp.checkpoint import open_checkpoint
from charter.evidence.canonical import canonical_json
from charter.evidence.entries import SIGNING_PREFIX, Entry
from charter.evidence.jwk import b64url_decode, thumbprint, verify_signature
from charter.home import Home
from charter.storage.ports import Tx
from charter.tools import tlog
from charter.tools.charter_views import charter_view
from charter.tools.identity import AgentInfo, agent_info, tree_order

#: Entries per ledger page.
PAGE_SIZE = 50
OUTCOMES = ("ok", "denied", "error")


@dataclass(frozen=True, slots=True)
class AgentRow:
    """An agent of the overview's tree."""

    info: AgentInfo
    last_activity: str | None
    depth: int = 1


@dataclass(frozen=True, slots=True)
class Verification:
    """The ledger's verification state, as far as the stored checkpoints show it."""

    size: int
    checkpoint_size: int | None
    checkpoint_at: str | None
    checkpoint_valid: bool | None
    root: str | None
    witnesses: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Overview:
    """The overview page."""

    owner: str
    agents: list[AgentRow]
    verification: Verification
    #: agent name -> calls per bucket, buckets in order.
    series: dict[str, list[int]]
    buckets: list[str]


@dataclass(frozen=True, slots=True)
class EntryRow:
    """One ledger entry with its checks."""

    seq: int
    ts: str
    agent: str
    action: str
    phase: str
    outcome: str | None
    call: str | None
    hash: str
    args: str
    signature: str  # "valid" | "INVALID" | "unknown key"
    inclusion: str  # "proved in checkpoint N" | "not yet checkpointed" | "PROOF FAILED"
    partner: int | None = None


@dataclass(frozen=True, slots=True)
class Filters:
    """The ledger page's filters, as typed by the owner."""

    agent: str = ""
    tool: str = ""
    outcome: str = ""
    since: str = ""
    until: str = ""

    def query(self) -> dict[str, str]:
        """The non-empty filters, for links to other pages."""
        names = ("agent", "tool", "outcome", "since", "until")
        return {name: getattr(self, name) for name in names if getattr(self, name)}


@dataclass(frozen=True, slots=True)
class LedgerView:
    """A page of the ledger, newest first."""

    rows: list[EntryRow]
    next_before: int | None
    agents: list[str]
    size: int
    checkpoint_size: int | None
    notes: list[str] = field(default_factory=list)


# -- overview ----------------------------------------------------------------------------------


async def overview(home: Home, *, hours: int = 24) -> Overview:
    """Agents (with last activity), the verification state and calls per agent per hour."""
    now = home.clock.now()
    start = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=hours - 1)
    buckets = [rfc3339(start + dt.timedelta(hours=i))[:13] for i in range(hours)]

    def work(tx: Tx) -> Overview:
        infos = [agent_info(home, tx, name) for name in tx.agents.list_names()]
        rows = [
            AgentRow(i, tx.queries.last_activity(i.agent_id), depth + 1)
            for depth, i in tree_order(infos)
        ]
        names = {i.agent_id: i.name for i in infos}
        counts = tx.queries.calls_per_actor(tx.queries.first_seq_at(rfc3339(start)), 13)
        series = {i.name: [0] * hours for i in infos}
        index = {b: n for n, b in enumerate(buckets)}
        for actor, bucket, n in counts:
            if actor in names and bucket in index:
                series[names[actor]][index[bucket]] += n
        return Overview(home.owner_id, rows, verification(home, tx), series, buckets)

    return await home.read(work)


def verification(home: Home, tx: Tx) -> Verification:
    """Size, the latest checkpoint (its signature checked) and the witnesses' progress."""
    size = tx.queries.size()
    latest = tx.checkpoints.latest()
    valid: bool | None = None
    if latest is not None:
        try:
            checkpoint, _ = open_checkpoint(latest.note, [tlog.log_verifier(home)])
            valid = checkpoint.size == latest.size and checkpoint.root_hash == latest.root
        except NoteError:
            valid = False
    witnesses = [
        {
            "name": w.name,
            "url": w.url,
            "size": w.size,
            "cosigned_latest": latest is not None and tx.witnesses.has(latest.size, w.name),
            "last_ok": w.last_ok,
            "last_error": w.last_error,
        }
        for w in tx.witnesses.all()
    ]
    return Verification(
        size=size,
        checkpoint_size=None if latest is None else latest.size,
        checkpoint_at=None if latest is None else latest.created_at,
        checkpoint_valid=valid,
        root=None if latest is None else tlog.b64(latest.root),
        witnesses=witnesses,
    )


# -- ledger ------------------------------------------------------------------------------------


def _stamp(text: str, what: str) -> str | None:
    if not text:
        return None
    try:
        return rfc3339(parse_rfc3339(text))
    except ValueError:
        raise InvalidInput(f"invalid {what} time {text!r}: use RFC 3339") from None


async def ledger_page(home: Home, filters: Filters, before: int | None) -> LedgerView:
    """A page of entries older than ``before`` (None: the newest), with their checks.

    Raises:
        InvalidInput: an unknown agent or outcome, or a malformed time.
    """
    if filters.outcome and filters.outcome not in OUTCOMES:
        raise InvalidInput(f"unknown outcome {filters.outcome!r}: use ok, denied or error")
    since, until = _stamp(filters.since, "since"), _stamp(filters.until, "until")
    if before is not None and before < 0:
        raise InvalidInput("the page cursor must not be negative")

    def work(tx: Tx) -> LedgerView:
        keys, names = _keys(home, tx)
        actor = None
        if filters.agent:
            actor = next((a for a, n in names.items() if n == filters.agent), None)
            if actor is None:
                raise InvalidInput(f"no agent named {filters.agent!r}")
        page = tx.queries.find_older(
            before=before,
            limit=PAGE_SIZE,
            actor=actor,
            action=filters.tool or None,
            outcome=filters.outcome or None,
            since=since,
            until=until,
        )
        latest = tx.checkpoints.latest()
        verifier = tlog.log_verifier(home)
        in_page = {e.hash: e.seq for e in page.entries}
        rows = []
        for entry in page.entries:
            f = entry.fields
            partner = _partner(tx, entry, in_page)
            rows.append(
                EntryRow(
                    seq=entry.seq,
                    ts=f["ts"],
                    agent=names.get(f["actor"], f["actor"]),
                    action=f["action"],
                    phase=f["phase"],
                    outcome=f["outcome"],
                    call=f["call"],
                    hash=entry.hash,
                    args=json.dumps(f["args"], indent=1, ensure_ascii=True)[:2000],
                    signature=signature_status(entry, keys),
                    inclusion=_inclusion(tx, entry, latest, verifier),
                    partner=partner,
                )
            )
        return LedgerView(
            rows=rows,
            next_before=page.next_cursor,
            agents=sorted(names.values()),
            size=tx.queries.size(),
            checkpoint_size=None if latest is None else latest.size,
        )

    return await home.read(work)


def _keys(home: Home, tx: Tx) -> tuple[dict[str, bytes], dict[str, str]]:
    """Signing keys by kid (owner, log, every agent's current charter) and actor -> name."""
    keys = {
        thumbprint(home.owner_public_key): home.owner_public_key,
        thumbprint(home.identity.log_key): home.identity.log_key,
    }
    names = {home.owner_id: "(owner)"}
    for name in tx.agents.list_names():
        record = tx.agents.get(name)
        if record is None:
            continue
        view = charter_view(home, tx, record.charter_hash)
        keys[thumbprint(view.agent_key)] = view.agent_key
        names[record.agent_id] = name
    return keys, names


def signature_status(entry: Entry, keys: dict[str, bytes]) -> str:
    """``valid``, ``INVALID`` or ``unknown key`` for the entry's signature."""
    f = entry.fields
    key = keys.get(f.get("kid", ""))
    if key is None:
        return "unknown key"
    try:
        sig = b64url_decode(f["sig"])
    except (KeyError, ValueError):
        return "INVALID"
    unsigned = {k: v for k, v in f.items() if k != "sig"}
    ok = verify_signature(key, SIGNING_PREFIX + canonical_json(unsigned), sig)
    return "valid" if ok else "INVALID"


def _inclusion(tx: Tx, entry: Entry, latest: Any, verifier: Any) -> str:
    """Prove the entry under the latest checkpoint (verified here), when one covers it."""
    if latest is None or latest.size <= entry.seq:
        return "not yet checkpointed"
    try:
        path = tx.tree.inclusion_proof(entry.seq, latest.size)
        proof = TlogProof(index=entry.seq, proof=tuple(path), checkpoint=latest.note)
        verify_tlog_proof(proof, entry.body, [verifier])
    except (NoteError, merkle.ProofError, CharterError):
        return "PROOF FAILED"
    return f"proved in checkpoint {latest.size}"


def _partner(tx: Tx, entry: Entry, in_page: dict[str, int]) -> int | None:
    """The seq of the other half of an intent/outcome pair."""
    f = entry.fields
    if f["phase"] == "outcome":
        intent = (f.get("args") or {}).get("intent")
        if intent in in_page:
            return in_page[intent]
    if f["phase"] not in ("intent", "outcome") or not f.get("call"):
        return None
    seqs = tx.queries.call_partner(f["actor"], f["call"], entry.seq)
    wanted = "outcome" if f["phase"] == "intent" else "intent"
    for seq in seqs:
        if seq == entry.seq:
            continue
        body = tx.queries.get_body(seq)
        if body is not None and Entry.from_body(body).fields.get("phase") == wanted:
            return seq
    return None
