"""AUDIT-FORMAT.md is true: an independent verifier written from the document alone (using
`rfc8785` for JCS and PyNaCl, none of Charter's code) accepts the example export and a fresh
one, and rejects tampering; every hash quoted in the worked example matches the example."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import anyio
import nacl.exceptions
import nacl.signing
import pytest
import rfc8785
from mcp import Client

from charter.home import Home
from charter.testing import server_for
from charter.tools import audit

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "example-export"
FIELDS = {
    "v",
    "seq",
    "ts",
    "prev",
    "actor",
    "owner",
    "charter",
    "session",
    "call",
    "phase",
    "action",
    "args",
    "args_hash",
    "outcome",
    "reason",
    "result_hash",
    "kid",
    "sig",
}


class Bad(Exception):
    pass


def b64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def kid_of(jwk: dict[str, str]) -> str:
    members = rfc8785.dumps({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]})
    return base64.urlsafe_b64encode(hashlib.sha256(members).digest()).rstrip(b"=").decode()


def ed_ok(jwk: dict[str, str], message: bytes, sig: str) -> bool:
    try:
        nacl.signing.VerifyKey(b64u(jwk["x"])).verify(message, b64u(sig))
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def independent_verify(folder: Path) -> int:
    """AUDIT-FORMAT.md §7, step by step. Returns the size, raises Bad(seq)."""
    m = json.loads((folder / "ledger.json").read_bytes())
    genesis = {k: m[k] for k in ("log_key", "origin", "owner", "owner_key")}
    prev = hashlib.sha256(b"charter.ledger.genesis.v1\x00" + rfc8785.dumps(genesis)).hexdigest()
    if prev != m["genesis"]:
        raise Bad("genesis")
    owner_kid, log_kid = kid_of(m["owner_key"]), kid_of(m["log_key"])
    agents: dict[str, dict[str, Any]] = {}  # kid -> {charter, hash, revoked}
    by_id: dict[str, dict[str, Any]] = {}
    last_ts, seq = "", 0
    for seq, line in enumerate((folder / "entries.jsonl").read_bytes().splitlines()):
        e = json.loads(line)
        if set(e) != FIELDS or rfc8785.dumps(e) != line or e["v"] != 1:
            raise Bad(seq)
        if e["seq"] != seq or e["prev"] != prev or e["ts"] < last_ts or e["owner"] != m["owner"]:
            raise Bad(seq)
        if (seq == 0) != (e["action"] == "ledger.init"):
            raise Bad(seq)
        if e["kid"] == owner_kid:
            key = m["owner_key"]
            if e["actor"] != m["owner"] or e["charter"] is not None:
                raise Bad(seq)
        elif e["kid"] == log_kid:
            key = m["log_key"]
            if e["outcome"] != "denied" and not e["action"].startswith("server."):
                raise Bad(seq)
        elif e["kid"] in agents:
            a = agents[e["kid"]]
            c = a["charter"]
            if a["revoked"] or e["actor"] != c["agent"]["id"] or e["charter"] != a["hash"]:
                raise Bad(seq)
            if not c["not_before"] <= e["ts"] < c["not_after"]:
                raise Bad(seq)
            key = c["agent"]["key"]
        else:
            raise Bad(seq)
        unsigned = {k: v for k, v in e.items() if k != "sig"}
        if not ed_ok(key, b"charter.ledger.entry.v1\x00" + rfc8785.dumps(unsigned), e["sig"]):
            raise Bad(seq)
        if e["kid"] == owner_kid and e["action"] in ("agent.register", "agent.update"):
            c = e["args"]["charter"]
            body = {k: v for k, v in c.items() if k != "sig"}
            h = hashlib.sha256(rfc8785.dumps(c)).hexdigest()
            if c["owner"]["key"] != m["owner_key"] or h != e["args"]["charter_hash"]:
                raise Bad(seq)
            if not ed_ok(m["owner_key"], b"charter.charter.v1\x00" + rfc8785.dumps(body), c["sig"]):
                raise Bad(seq)
            record = {"charter": c, "hash": h, "revoked": False}
            agents[kid_of(c["agent"]["key"])] = record
            by_id[c["agent"]["id"]] = record
        elif e["kid"] == owner_kid and e["action"] == "agent.revoke":
            by_id[e["args"]["agent_id"]]["revoked"] = True
        elif e["kid"] == owner_kid and e["action"] == "owner.lockdown":
            for record in by_id.values():
                record["revoked"] = True
        prev, last_ts = hashlib.sha256(line).hexdigest(), e["ts"]
    size = seq + 1
    if size != m["size"] or prev != m["head"]:
        raise Bad("size/head")
    return size


def test_example_export_verifies_with_the_independent_verifier() -> None:
    assert independent_verify(EXAMPLE) == json.loads((EXAMPLE / "ledger.json").read_text())["size"]
    audit.verify_export(EXAMPLE)


def test_worked_example_values_match_the_example() -> None:
    doc = (ROOT / "AUDIT-FORMAT.md").read_text()
    section = doc[doc.index("## 9. Worked example") : doc.index("## 10. ")]
    lines = (EXAMPLE / "entries.jsonl").read_bytes().splitlines()
    manifest = json.loads((EXAMPLE / "ledger.json").read_text())
    hashes = [hashlib.sha256(line).hexdigest() for line in lines]
    for h in [*hashes, manifest["genesis"], manifest["head"]]:
        assert h in section
    assert lines[2].decode() in section
    quoted = set(re.findall(r"`([0-9a-f]{64})`", section))
    e2 = json.loads(lines[2])
    unsigned = {k: v for k, v in e2.items() if k != "sig"}
    signing_input = b"charter.ledger.entry.v1\x00" + rfc8785.dumps(unsigned)
    assert f"{len(signing_input)} bytes" in section
    known = {
        *hashes,
        manifest["genesis"],
        e2["charter"],
        e2["args_hash"],
        hashlib.sha256(signing_input).hexdigest(),
    }
    assert quoted <= known, quoted - known


def _live_export(home: Home, out: Path) -> Path:
    async def calls() -> None:
        async with Client(server_for(home, "alpha")) as client:
            await client.call_tool("identity_whoami", {})
            await client.call_tool("audit_query", {"limit": 1})
        async with Client(server_for(home, "beta")) as client:
            await client.call_tool("audit_query", {})  # denied: no scope

    anyio.run(calls)
    audit.export(home, out)
    return out


def test_fresh_export_verifies_with_the_independent_verifier(home: Home, tmp_path: Path) -> None:
    out = _live_export(home, tmp_path / "x")
    assert independent_verify(out) == home.ledger.head()[0]


@pytest.mark.parametrize("tamper", ["edit", "delete", "swap", "resign_foreign"])
def test_independent_and_charter_verifiers_agree_on_tampering(
    home: Home, tmp_path: Path, tamper: str
) -> None:
    out = _live_export(home, tmp_path / "x")
    path = out / "entries.jsonl"
    lines = path.read_bytes().splitlines()
    if tamper == "edit":
        lines[3] = lines[3].replace(b'"ok"', b'"error"', 1)
    elif tamper == "delete":
        del lines[3]
    elif tamper == "swap":
        lines[3], lines[4] = lines[4], lines[3]
    else:
        e = json.loads(lines[3])
        foreign = nacl.signing.SigningKey.generate()
        jwk = {
            "crv": "Ed25519",
            "kty": "OKP",
            "x": base64.urlsafe_b64encode(bytes(foreign.verify_key)).rstrip(b"=").decode(),
        }
        e["kid"] = kid_of(jwk)
        unsigned = {k: v for k, v in e.items() if k != "sig"}
        sig = foreign.sign(b"charter.ledger.entry.v1\x00" + rfc8785.dumps(unsigned)).signature
        e["sig"] = base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
        lines[3] = rfc8785.dumps(e)
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    with pytest.raises(Bad) as independent:
        independent_verify(out)
    from charter.errors import LedgerIntegrityError

    with pytest.raises(LedgerIntegrityError) as ours:
        audit.verify_export(out)
    assert independent.value.args[0] == 3
    assert ours.value.seq == 3
