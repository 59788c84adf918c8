"""AUDIT-FORMAT.md is true: an independent verifier written from the document alone (using
`rfc8785` for JCS and PyNaCl, none of Charter's code) checks the entries (§7) and the export's
signed checkpoints against the Merkle tree of the entries (§8.1, §8.2, §8.5); it accepts the
example export and fresh ones, and rejects tampering where Charter does; every hash quoted in
the worked example (§9) matches the example. The approval rules (§7 step 9) are left out here:
tests/tools/test_approvals.py checks Charter's verifier on them."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import importlib.util
import json
import re
import shutil
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing
import pytest
import rfc8785
from mcp import Client
from nacl.signing import SigningKey

from charter.errors import LedgerIntegrityError
from charter.evidence.c2sp import Checkpoint, Signer, sign_note
from charter.evidence.charters import charter_hash, make_charter
from charter.home import Home
from charter.storage.tlog import log_signer
from charter.testing import agent_draft, raw_tx, server_for
from charter.tools import audit, identity, lockdown

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


#: §5: the owner events only the owner key may sign.
OWNER_ONLY = {
    "ledger.init",
    "agent.register",
    "agent.update",
    "agent.reinstate",
    "agent.revoke",
    "owner.lockdown",
    "owner.lockdown.lift",
    "approval.approve",
    "approval.deny",
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


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(leaves: list[bytes]) -> bytes:
    """§8.1: the RFC 9162 Merkle Tree Hash, over leaf hashes ``SHA-256(0x00 || B)``."""
    if not leaves:
        return sha(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)  # the largest power of two below n
    return sha(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def vkey_of(origin: str, log_key: dict[str, str]) -> tuple[str, bytes]:
    """§8.2: the log's C2SP verifier key and its 4-byte key ID."""
    key = b"\x01" + b64u(log_key["x"])
    key_id = sha(origin.encode() + b"\n" + key)[:4]
    return f"{origin}+{key_id.hex()}+{base64.b64encode(key).decode()}", key_id


def open_checkpoint(note: str, origin: str, log_key: dict[str, str]) -> tuple[int, bytes]:
    """§8.2: a signed note by the log key (name = origin); returns (size, root)."""
    _, key_id = vkey_of(origin, log_key)
    text, blank, signatures = note.partition("\n\n")
    if not blank or not signatures.endswith("\n"):
        raise Bad("note layout")
    good = 0
    for line in signatures[:-1].split("\n"):
        name, _, payload = line.removeprefix("\u2014 ").rpartition(" ")
        try:
            blob = base64.b64decode(payload, validate=True)
        except binascii.Error:
            raise Bad("signature line") from None
        if not line.startswith("\u2014 "):
            raise Bad("signature line")
        if (name, blob[:4]) != (origin, key_id):
            continue  # a signature by a key we do not know is ignored
        try:
            nacl.signing.VerifyKey(b64u(log_key["x"])).verify((text + "\n").encode(), blob[4:])
        except nacl.exceptions.BadSignatureError:
            raise Bad("checkpoint signature") from None
        good += 1
    lines = text.split("\n")
    if (
        not good
        or len(lines) != 3
        or lines[0] != origin
        or not re.fullmatch(r"0|[1-9]\d*", lines[1])
    ):
        raise Bad("checkpoint")
    root = base64.b64decode(lines[2], validate=True)
    if len(root) != 32 or base64.b64encode(root).decode() != lines[2]:
        raise Bad("checkpoint root")
    return int(lines[1]), root


def independent_checkpoints(folder: Path, m: dict[str, Any], bodies: list[bytes]) -> None:
    """§8.5 steps 1-2: every checkpoint of the export matches the tree of its entries, and
    one covers them all."""
    leaves = [sha(b"\x00" + body) for body in bodies]
    directory = folder / "checkpoints"
    if not directory.is_dir():
        raise Bad("no checkpoints")
    sizes = set()
    for path in directory.iterdir():
        if not re.fullmatch(r"(0|[1-9]\d*)\.note", path.name):
            raise Bad(f"checkpoints/{path.name}")
        size, root = open_checkpoint(path.read_text(encoding="utf-8"), m["origin"], m["log_key"])
        if size != int(path.stem) or size > len(leaves) or root != mth(leaves[:size]):
            raise Bad(f"checkpoint {path.stem}")
        sizes.add(size)
    if m["size"] not in sizes:
        raise Bad("no checkpoint of the whole export")
    vkey = folder / "log.vkey"
    if vkey.exists() and vkey.read_text().strip() != vkey_of(m["origin"], m["log_key"])[0]:
        raise Bad("log.vkey")


def apply_owner_event(
    seq: int,
    e: dict[str, Any],
    m: dict[str, Any],
    agents: dict[str, dict[str, Any]],
    by_id: dict[str, dict[str, Any]],
    locked: bool,
) -> bool:
    """§7 step 8 (approvals left out); returns whether a lockdown is in effect."""
    action, args = e["action"], e["args"]
    if action == "ledger.init":
        if [args["origin"], args["owner_key"], args["log_key"]] != [
            m["origin"],
            m["owner_key"],
            m["log_key"],
        ]:
            raise Bad(seq)
    elif action in ("agent.register", "agent.update", "agent.reinstate"):
        c = args["charter"]
        body = {k: v for k, v in c.items() if k != "sig"}
        h = hashlib.sha256(rfc8785.dumps(c)).hexdigest()
        if locked or c["owner"] != {"id": m["owner"], "key": m["owner_key"]}:
            raise Bad(seq)
        if h != args["charter_hash"] or (c["v"], c["type"]) != (1, "charter"):
            raise Bad(seq)
        if not ed_ok(m["owner_key"], b"charter.charter.v1\x00" + rfc8785.dumps(body), c["sig"]):
            raise Bad(seq)
        kid, old = kid_of(c["agent"]["key"]), by_id.get(c["agent"]["id"])
        if action == "agent.register" and (old is not None or kid in agents):
            raise Bad(seq)
        if action == "agent.update" and (old is None or old["revoked"]):
            raise Bad(seq)
        if action == "agent.reinstate" and (old is None or not old["by_lockdown"]):
            raise Bad(seq)
        if old is not None and kid_of(old["charter"]["agent"]["key"]) != kid:
            raise Bad(seq)
        record = {"charter": c, "hash": h, "revoked": False, "by_lockdown": False}
        agents[kid] = by_id[c["agent"]["id"]] = record
    elif action == "agent.revoke":
        if args["agent_id"] not in by_id:
            raise Bad(seq)
        by_id[args["agent_id"]] |= {"revoked": True, "by_lockdown": False}
    elif action == "owner.lockdown":
        for record in by_id.values():
            if not record["revoked"]:
                record |= {"revoked": True, "by_lockdown": True}
        return True
    elif action == "owner.lockdown.lift":
        if not locked:
            raise Bad(seq)
        return False
    return locked


def independent_verify(folder: Path) -> int:
    """AUDIT-FORMAT.md §7 step by step, then §8.5. Returns the size, raises Bad(seq)."""
    m = json.loads((folder / "ledger.json").read_bytes())
    genesis = {k: m[k] for k in ("log_key", "origin", "owner", "owner_key")}
    prev = hashlib.sha256(b"charter.ledger.genesis.v1\x00" + rfc8785.dumps(genesis)).hexdigest()
    if prev != m["genesis"]:
        raise Bad("genesis")
    owner_kid, log_kid = kid_of(m["owner_key"]), kid_of(m["log_key"])
    agents: dict[str, dict[str, Any]] = {}  # kid -> {charter, hash, revoked, by_lockdown}
    by_id: dict[str, dict[str, Any]] = {}
    last_ts, seq, locked = "", 0, False
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
        if e["kid"] != owner_kid and e["action"] in OWNER_ONLY:
            raise Bad(seq)
        unsigned = {k: v for k, v in e.items() if k != "sig"}
        if not ed_ok(key, b"charter.ledger.entry.v1\x00" + rfc8785.dumps(unsigned), e["sig"]):
            raise Bad(seq)
        if e["kid"] == owner_kid:
            locked = apply_owner_event(seq, e, m, agents, by_id, locked)
        prev, last_ts = hashlib.sha256(line).hexdigest(), e["ts"]
    size = seq + 1
    if size != m["size"] or prev != m["head"]:
        raise Bad("size/head")
    independent_checkpoints(folder, m, (folder / "entries.jsonl").read_bytes().splitlines())
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
    note = (EXAMPLE / "checkpoints" / f"{manifest['size']}.note").read_text()
    assert note in section
    size, root = open_checkpoint(note, manifest["origin"], manifest["log_key"])
    assert (size, root) == (3, mth([sha(b"\x00" + line) for line in lines]))
    known.add(root.hex())
    assert quoted <= known, quoted - known


async def _live_export(home: Home, out: Path) -> Path:
    async def calls() -> None:
        async with Client(await server_for(home, "alpha")) as client:
            await client.call_tool("identity_whoami", {})
            await client.call_tool("audit_query", {"limit": 1})
        async with Client(await server_for(home, "beta")) as client:
            await client.call_tool("audit_query", {})  # denied: no scope

    await calls()
    await audit.export(home, out)
    return out


async def test_fresh_export_verifies_with_the_independent_verifier(
    home: Home, tmp_path: Path
) -> None:
    out = await _live_export(home, tmp_path / "x")
    assert independent_verify(out) == raw_tx(home).ledger.head()[0]


@pytest.mark.parametrize("tamper", ["edit", "delete", "swap", "resign_foreign"])
async def test_independent_and_charter_verifiers_agree_on_tampering(
    home: Home, tmp_path: Path, tamper: str
) -> None:
    out = await _live_export(home, tmp_path / "x")
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
    with pytest.raises(LedgerIntegrityError) as ours:
        audit.verify_export(out)
    assert independent.value.args[0] == 3
    assert ours.value.seq == 3


def _resign(home: Home, size: int, root: bytes) -> str:
    """A checkpoint validly signed by the home's own log key (what its keeper could sign)."""
    signer = log_signer(home.origin, home.log_key)
    return sign_note(Checkpoint(home.origin, size, root).to_text(), [signer])


@pytest.mark.parametrize(
    "tamper",
    ["no_folder", "no_full", "flipped_bit", "foreign_key", "other_root", "beyond", "misfiled"],
)
async def test_independent_and_charter_verifiers_agree_on_checkpoints(
    home: Home, tmp_path: Path, tamper: str
) -> None:
    """§8.5: an export's checkpoints must be the log's, match the entries, and cover them."""
    out = await _live_export(home, tmp_path / "x")
    size = raw_tx(home).ledger.head()[0]
    notes = out / "checkpoints"
    full = notes / f"{size}.note"
    independent_verify(out)  # intact: both accept
    audit.verify_export(out)
    if tamper == "no_folder":
        shutil.rmtree(notes)
    elif tamper == "no_full":
        full.unlink()
    elif tamper == "flipped_bit":
        text, signature = full.read_text().split("\n\n")
        prefix, payload = signature.rstrip("\n").rsplit(" ", 1)
        raw = bytearray(base64.b64decode(payload))
        raw[20] ^= 1
        full.write_text(f"{text}\n\n{prefix} {base64.b64encode(raw).decode()}\n")
    elif tamper == "foreign_key":
        text = full.read_text().split("\n\n")[0] + "\n"
        full.write_text(sign_note(text, [Signer(home.origin, SigningKey.generate())]))
    elif tamper == "other_root":
        full.write_text(_resign(home, size, sha(b"another history")))
    elif tamper == "beyond":
        (notes / f"{size + 1}.note").write_text(_resign(home, size + 1, sha(b"more")))
    else:
        (notes / f"{size - 1}.note").write_text(full.read_text())
    with pytest.raises(Bad) as independent:
        independent_verify(out)
    with pytest.raises(LedgerIntegrityError) as ours:
        audit.verify_export(out)
    assert "checkpoint" in str(independent.value) and "checkpoint" in ours.value.reason


def test_the_example_generator_writes_exports_both_verifiers_accept(tmp_path: Path) -> None:
    """docs/make_examples.py, which regenerates the examples this document quotes, still works."""
    spec = importlib.util.spec_from_file_location("make_examples", ROOT / "docs/make_examples.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    out = tmp_path / "x"
    generator.make_example(out, ["identity_whoami", "audit_checkpoint"])
    assert independent_verify(out) == 4
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["3.note", "4.note"]
    audit.verify_export(out)


async def test_lockdown_lift_and_reinstatement_verify_independently(
    home: Home, tmp_path: Path
) -> None:
    await lockdown.lockdown(home, reason="laptop stolen")
    await lockdown.lift(home)
    await lockdown.reinstate_agent(home, "alpha")

    async def calls() -> None:
        async with Client(await server_for(home, "alpha")) as client:
            assert not (await client.call_tool("identity_whoami", {})).is_error

    await calls()
    await audit.export(home, tmp_path / "x")
    assert independent_verify(tmp_path / "x") == raw_tx(home).ledger.head()[0]
    audit.verify_export(tmp_path / "x")


@pytest.mark.parametrize(
    "case", ["agent_signs_lockdown", "lift_without_lockdown", "reinstate_revoked"]
)
async def test_independent_and_charter_verifiers_agree_on_owner_events(
    home: Home, tmp_path: Path, case: str
) -> None:
    """§7 steps 6 and 8: owner-only actions, lift after a lockdown, reinstate after a lockdown."""
    if case == "agent_signs_lockdown":
        alpha = await identity.load_agent(home, "alpha")
        draft = agent_draft(
            alpha,
            action="owner.lockdown",
            phase="event",
        )
        bad = raw_tx(home).ledger.append_one(draft).seq
    elif case == "lift_without_lockdown":
        bad = (await home.record_owner_event("owner.lockdown.lift", {"lockdown": 1})).seq
    else:
        beta = await identity.load_agent(home, "beta")
        await identity.revoke_agent(home, "beta")  # final: only a lockdown's revocation is undone
        now = home.clock.now()
        charter = make_charter(
            owner_key=home.owner_key(),
            owner_id=home.owner_id,
            agent_id=beta.agent_id,
            agent_name="beta",
            agent_public_key=beta.charter.agent_key,
            scopes=[],
            audiences=[],
            not_before=now,
            not_after=now + dt.timedelta(days=1),
        )
        args = {
            "agent_id": beta.agent_id,
            "charter": charter,
            "charter_hash": charter_hash(charter),
        }
        bad = (await home.record_owner_event("agent.reinstate", args)).seq
    await audit.export(home, tmp_path / "x")
    with pytest.raises(Bad) as independent:
        independent_verify(tmp_path / "x")
    with pytest.raises(LedgerIntegrityError) as ours:
        audit.verify_export(tmp_path / "x")
    assert independent.value.args[0] == ours.value.seq == bad
