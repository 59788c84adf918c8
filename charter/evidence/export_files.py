"""An export's convenience files, checked against its verified entries (AUDIT-FORMAT.md §6).

``charters/<hash>.json`` and ``keys.json`` repeat what the ledger holds (every charter is in
full inside the owner-signed entry that registered it; the owner and log keys are in
``ledger.json``), so a reader may trust them without opening the ledger: a verifier checks
they say nothing the ledger contradicts. Run only after every entry has verified, so each
registration read here is one the owner really signed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import orjson

from charter.errors import LedgerIntegrityError
from charter.evidence.entries import LedgerIdentity
from charter.evidence.jwk import public_jwk, public_key_from_jwk, thumbprint

#: Owner actions whose ``args.charter`` registers a charter (AUDIT-FORMAT.md §5).
CHARTER_ACTIONS = frozenset({"agent.register", "agent.update", "agent.reinstate"})
CHARTER_DIR = "charters"
#: The agent-signed outcome that registers a sub-agent's delegation charter (§12).
_DELEGATED = ("agent.delegate", "outcome", "ok")
_CHARTER_NAME = re.compile(r"([0-9a-f]{64})\.json")


def _tampered(name: str, why: str) -> NoReturn:
    raise LedgerIntegrityError(None, f"{name} contradicts the ledger (tampered): {why}")


def registered_charters(bodies: Iterable[bytes]) -> dict[str, dict[str, Any]]:
    """Every charter the entries register, by hash. The entries must have verified."""
    found: dict[str, dict[str, Any]] = {}
    for body in bodies:
        if b'"charter_hash"' not in body:  # cheap: most entries register nothing
            continue
        entry = orjson.loads(body)
        if entry.get("action") in CHARTER_ACTIONS:
            found[str(entry["args"]["charter_hash"])] = entry["args"]["charter"]
        elif (entry.get("action"), entry.get("phase"), entry.get("outcome")) == _DELEGATED:
            details = entry["args"]["details"]  # a sub-agent's charter (AUDIT-FORMAT §12)
            found[str(details["charter_hash"])] = details["charter"]
    return found


def _lines(path: Path) -> Iterable[bytes]:
    with open(path, "rb") as fh:
        for line in fh:
            yield line.rstrip(b"\n")


def check_export_files(folder: Path, identity: LedgerIdentity) -> None:
    """Check ``charters/`` and ``keys.json`` against the (verified) ``entries.jsonl``.

    Each may be absent; if present, every ``charters/<hash>.json`` holds the bytes of a
    charter hashing to its name that the ledger registers, and every key of ``keys.json``
    is the ledger's owner key, its log key or a registered agent's key under its name.

    Raises:
        LedgerIntegrityError: a file contradicts the ledger; the reason names the file.
    """
    charters = registered_charters(_lines(folder / "entries.jsonl"))
    directory = folder / CHARTER_DIR
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            _check_charter(path, charters)
    keys = folder / "keys.json"
    if keys.exists():
        _check_keys(keys, identity, charters)


def _check_charter(path: Path, charters: dict[str, dict[str, Any]]) -> None:
    name = f"{CHARTER_DIR}/{path.name}"
    match = _CHARTER_NAME.fullmatch(path.name)
    if match is None or not path.is_file():
        _tampered(name, "not a charter file (charters/<sha-256 hex>.json)")
    data = path.read_bytes()
    text = data[:-1] if data.endswith(b"\n") else data
    if hashlib.sha256(text).hexdigest() != match.group(1):
        _tampered(name, "its bytes do not hash to its name (edited)")
    if match.group(1) not in charters:
        _tampered(name, "no entry registers this charter")


def _check_keys(path: Path, identity: LedgerIdentity, charters: dict[str, dict[str, Any]]) -> None:
    name = path.name
    try:
        listed = json.loads(path.read_text(encoding="utf-8"))["keys"]
        keys = [(str(k["use"]), public_key_from_jwk(k), k["kid"]) for k in listed]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _tampered(name, f"not a readable key set ({type(exc).__name__})")
    agents = {f"agent:{c['agent']['name']}": c["agent"]["key"]["x"] for c in charters.values()}
    uses = [use for use, _, _ in keys]
    for use in ("owner", "log"):
        if uses.count(use) != 1:
            _tampered(name, f"it must list the {use} key exactly once")
    for use, key, kid in keys:
        if kid != thumbprint(key):
            _tampered(name, f"the {use} key's kid is not its thumbprint")
        if use == "owner":
            expected = public_jwk(identity.owner_key)["x"]
        elif use == "log":
            expected = public_jwk(identity.log_key)["x"]
        elif use in agents:
            expected = agents[use]
        else:
            _tampered(name, f"{use!r} is no key of this ledger")
        if public_jwk(key)["x"] != expected:
            _tampered(name, f"the {use} key is not the ledger's")


__all__ = ["CHARTER_ACTIONS", "check_export_files", "registered_charters"]
