"""The ledger as OCSF API Activity events (class 6003), for a SIEM.

One event per ledger entry, in seq order. The mapping (docs/INTEGRATIONS.md has the table):
the acting agent (or owner) is ``actor.user``, its charter ``actor.authorizations[0].policy``,
the tool's action ``api.operation``, the call id ``api.request.uid``, the outcome
``status_id``/``status``/``status_code`` (and ``status_detail``: the recorded reason), the
responsible owner ``src_endpoint.owner``, the entry's time ``time`` (epoch milliseconds);
the entry's hash is ``metadata.uid`` and its seq ``metadata.sequence``, and the fields a
verifier needs to tie the event back to the signed entry (seq, hash, prev, kid, charter,
phase, args_hash, result_hash, origin) are repeated under ``unmapped.charter``.

An event is a *view* of the signed entry, not evidence: the proof is the entry itself
(``charter audit show SEQ`` / ``charter audit export``), found by ``metadata.uid``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

import charter
from charter.clock import parse_rfc3339
from charter.evidence.entries import Entry
from charter.home import Home
from charter.storage.ports import Tx

#: The OCSF schema version the events follow (and the tests validate against).
OCSF_VERSION = "1.8.0"
CLASS_UID = 6003
CATEGORY_UID = 6
PRODUCT = {"name": "Charter", "vendor_name": "Charter", "version": charter.__version__}

#: OCSF API Activity ``activity_id`` by the last word of the action (``email.send`` ->
#: ``send``); any other action is 99 (Other), its verb kept in ``activity_name``.
ACTIVITIES: dict[str, tuple[int, str]] = {
    **dict.fromkeys(("send", "issue", "register", "set", "init", "request", "add"), (1, "Create")),
    **dict.fromkeys(
        ("whoami", "query", "get", "list", "read", "verify", "prove", "checkpoint"), (2, "Read")
    ),
    **dict.fromkeys(("update", "rotate", "reinstate", "answer", "setup"), (3, "Update")),
    **dict.fromkeys(("revoke", "remove", "clear"), (4, "Delete")),
}

#: ledger outcome -> (status_id, status, severity_id, severity)
STATUSES: dict[str | None, tuple[int, str, int, str]] = {
    "ok": (1, "Success", 1, "Informational"),
    "denied": (2, "Failure", 3, "Medium"),
    "error": (2, "Failure", 2, "Low"),
    None: (0, "Unknown", 1, "Informational"),  # an intent: the outcome entry follows
}


def event(entry: Entry, origin: str) -> dict[str, Any]:
    """The OCSF API Activity event of one ledger entry of the ledger named ``origin``."""
    f = entry.fields
    action: str = f["action"]
    verb = action.rsplit(".", 1)[-1]
    activity_id, activity_name = ACTIVITIES.get(verb, (99, verb))
    outcome = f["outcome"]
    status_id, status, severity_id, severity = STATUSES.get(outcome, STATUSES["error"])
    is_agent = f["charter"] is not None
    user: dict[str, Any] = {"uid": f["actor"], "type_id": 99, "type": "AI Agent"}
    if is_agent:
        user["name"] = f["actor"].rsplit("/", 1)[-1]
    else:
        user |= {"name": f["actor"], "type_id": 1, "type": "User"}
    actor: dict[str, Any] = {"user": user, "app_name": "Charter"}
    if f["session"] is not None:
        actor["session"] = {"uid": f["session"]}
    if is_agent:
        decision = "denied" if outcome == "denied" else "allowed"
        policy = {"uid": f["charter"], "name": "charter"}
        actor["authorizations"] = [{"decision": decision, "policy": policy}]
    api: dict[str, Any] = {"operation": action, "service": {"name": "charter"}}
    if f["call"] is not None:
        api["request"] = {"uid": f["call"]}
    owner = {"uid": f["owner"], "email_addr": f["owner"], "type_id": 1, "type": "User"}
    src: dict[str, Any] = {"owner": owner}
    src |= {"uid": f["session"]} if f["session"] is not None else {"name": "owner"}
    ms = int(parse_rfc3339(f["ts"]).timestamp() * 1000)
    out: dict[str, Any] = {
        "class_uid": CLASS_UID,
        "class_name": "API Activity",
        "category_uid": CATEGORY_UID,
        "category_name": "Application Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": f"API Activity: {activity_name}",
        "time": ms,
        "severity_id": severity_id,
        "severity": severity,
        "status_id": status_id,
        "status": status,
        "status_code": outcome or f["phase"],
        "message": f"{f['actor']} {action} {outcome or f['phase']}",
        "actor": actor,
        "api": api,
        "src_endpoint": src,
        "metadata": {
            "version": OCSF_VERSION,
            "product": PRODUCT,
            "uid": entry.hash,
            "sequence": entry.seq,
            "log_name": origin,
            "logged_time": ms,
            **({"correlation_uid": f["call"]} if f["call"] is not None else {}),
        },
        "unmapped": {
            "charter": {
                "seq": entry.seq,
                "entry_hash": entry.hash,
                "prev": f["prev"],
                "kid": f["kid"],
                "charter": f["charter"],
                "phase": f["phase"],
                "args_hash": f["args_hash"],
                "result_hash": f["result_hash"],
                "origin": origin,
            }
        },
    }
    if f["reason"] is not None:
        out["status_detail"] = f["reason"]
    return out


def events(tx: Tx, origin: str, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
    """Each entry from ``start`` (to ``stop``) as one OCSF event, JSON bytes, in seq order."""
    end = tx.queries.size() if stop is None else stop
    for body in tx.ledger.iter_bodies(start, end):
        yield orjson.dumps(event(Entry.from_body(body), origin))


async def export(home: Home, out: Path | IO[bytes], start: int = 0) -> int:
    """Write the ledger from seq ``start`` as OCSF JSON Lines to ``out`` (a path, created new,
    or a binary stream), from one consistent read; return the number of events."""

    def work(tx: Tx) -> int:
        if isinstance(out, Path):
            with open(out, "xb") as fh:
                return _write(tx, fh)
        return _write(tx, out)

    def _write(tx: Tx, fh: IO[bytes]) -> int:
        n = 0
        for line in events(tx, home.origin, start):
            fh.write(line + b"\n")
            n += 1
        return n

    return await home.read(work)
