"""``charter audit checkpoint|prove|consistency``, ``charter keys log`` and the transparency
options of ``charter audit verify``, through click's runner against real homes."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from charter.cli import cli
from charter.config import Settings
from charter.evidence import merkle
from charter.evidence.c2sp import (
    Checkpoint,
    Verifier,
    open_checkpoint,
    sign_note,
    verify_tlog_proof,
)
from charter.home import Home
from charter.storage.tlog import log_signer
from charter.testing import raw_tx


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args], env={"CHARTER_HOME": str(home)})


def ok(home: Path, *args: str) -> str:
    result = run(home, *args)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    ok(path, "init", "--owner", "alice@example.com")
    ok(path, "agent", "add", "bot", "--scope", "audit:read")
    return path


async def body(home: Path, seq: int) -> bytes:
    async with await Home.open(Settings(home=home)) as h:
        entry = raw_tx(h).ledger.get(seq)
    assert entry is not None
    return entry.body


def test_keys_log_prints_the_vkey_that_opens_checkpoints(home: Path, tmp_path: Path) -> None:
    vkey = ok(home, "keys", "log").strip()
    verifier = Verifier.from_vkey(vkey)
    note = ok(home, "audit", "checkpoint", "--out", str(tmp_path / "kept.note"))
    assert (tmp_path / "kept.note").read_text() == note
    checkpoint, _ = open_checkpoint(note, [verifier])
    assert checkpoint.origin == verifier.name and checkpoint.size == 2
    as_json = json.loads(ok(home, "audit", "checkpoint", "--json"))
    assert as_json["note"] == note and as_json["log_vkey"] == vkey


async def test_prove_prints_a_tlog_proof(home: Path, tmp_path: Path) -> None:
    ok(home, "agent", "add", "bot2")
    ok(home, "audit", "checkpoint")
    proof = ok(home, "audit", "prove", "1", "--out", str(tmp_path / "1.tlog-proof"))
    verifier = Verifier.from_vkey(ok(home, "keys", "log").strip())
    assert verify_tlog_proof(proof, await body(home, 1), [verifier]).size == 3
    older = json.loads(ok(home, "audit", "prove", "0", "--tree-size", "3", "--json"))
    assert older["tree_size"] == 3 and older["entry"].encode() == await body(home, 0)
    missing = run(home, "audit", "prove", "0", "--tree-size", "2")
    assert missing.exit_code == 3 and "no checkpoint of size 2" in missing.output
    absent = run(home, "audit", "prove", "99")
    assert absent.exit_code == 3 and "no entry 99" in absent.output


def test_consistency_prints_rfc9162_proof_lines(home: Path) -> None:
    for name in ("b", "c", "d", "e"):
        ok(home, "agent", "add", name)
    lines = ok(home, "audit", "consistency", "3", "6").split()
    out = json.loads(ok(home, "audit", "consistency", "3", "6", "--json"))
    assert lines == out["proof"]
    merkle.verify_consistency(
        3, 6,
        base64.b64decode(out["old_root"]), base64.b64decode(out["new_root"]),
        [base64.b64decode(line) for line in lines],
    )  # fmt: skip
    backwards = run(home, "audit", "consistency", "6", "3")
    assert (
        backwards.exit_code == 2 and "OLD_SIZE must be between 0 and NEW_SIZE" in backwards.output
    )
    beyond = run(home, "audit", "consistency", "3", "60")
    assert beyond.exit_code == 2 and "out of range" in beyond.output


async def test_verify_against_a_kept_checkpoint_detects_truncation(
    home: Path, tmp_path: Path
) -> None:
    kept = tmp_path / "kept.note"
    ok(home, "audit", "checkpoint", "--out", str(kept))
    ok(home, "agent", "add", "later")
    out = tmp_path / "export"
    ok(home, "audit", "export", str(out))
    report = ok(home, "audit", "verify", "--export", str(out), "--checkpoint", str(kept))
    assert "extends the checkpoint you kept (2 entries)" in report
    # The keeper, who holds the home's keys, cuts the export back to its first entry: entries,
    # manifest, and checkpoints replaced by one of that entry signed with the log key.
    lines = (out / "entries.jsonl").read_bytes().splitlines(keepends=True)
    (out / "entries.jsonl").write_bytes(lines[0])
    manifest = json.loads((out / "ledger.json").read_text())
    head = hashlib.sha256(lines[0].rstrip(b"\n")).hexdigest()
    (out / "ledger.json").write_text(json.dumps(manifest | {"size": 1, "head": head}))
    for note in (out / "checkpoints").iterdir():
        note.unlink()
    async with await Home.open(Settings(home=home)) as h:
        lie = Checkpoint(h.origin, 1, merkle.leaf_hash(lines[0].rstrip(b"\n")))
        signed = sign_note(lie.to_text(), [log_signer(h.origin, h.log_key)])
    (out / "checkpoints" / "1.note").write_text(signed)
    # A consistent cut also drops what the first entry does not register: the agents' charters
    # and keys (left in place, they contradict the cut ledger and give it away).
    for charter in (out / "charters").iterdir():
        charter.unlink()
    keys = json.loads((out / "keys.json").read_text())["keys"]
    kept_keys = [k for k in keys if k["use"] in ("owner", "log")]
    (out / "keys.json").write_text(json.dumps({"keys": kept_keys}))
    alone = run(home, "audit", "verify", "--export", str(out))
    assert alone.exit_code == 0, alone.output  # consistent on its own: only the kept one tells
    cut = run(home, "audit", "verify", "--export", str(out), "--checkpoint", str(kept), "--json")
    assert cut.exit_code == 7
    assert "truncated: the checkpoint you kept covers 2 entries" in cut.output


def test_verify_resumes_with_a_state_file(home: Path, tmp_path: Path) -> None:
    state = tmp_path / "audit.state"
    ok(home, "audit", "checkpoint")
    first = ok(home, "audit", "verify", "--state", str(state))
    assert "audit state now at 2 entries" in first and "resumed" not in first
    ok(home, "agent", "add", "later")
    ok(home, "audit", "checkpoint")
    second = json.loads(ok(home, "audit", "verify", "--state", str(state), "--json"))
    assert (second["resumed_from"], second["state_size"], second["size"]) == (2, 3, 3)


def test_verify_with_a_policy(home: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy"
    policy.write_text(f"log {ok(home, 'keys', 'log').strip()}\nquorum none\n")
    ok(home, "audit", "checkpoint")
    assert "signed checkpoint(s) match" in ok(home, "audit", "verify", "--policy", str(policy))
    policy.write_text("quorum none\n")
    bad = run(home, "audit", "verify", "--policy", str(policy))
    assert bad.exit_code == 2 and "policy policy: policy lists no log" in bad.output


def test_verify_output_starts_with_the_result_when_not_a_terminal(home: Path) -> None:
    """No progress bar off a terminal: rich's transient bar used to leave a blank first line."""
    out = ok(home, "audit", "verify")
    assert out.startswith("OK: 2 entries verified"), repr(out)
