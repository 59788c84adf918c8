"""Auditing against checkpoints, end to end on real homes and exports: truncation and fork
detection with a kept checkpoint, checkpoint signatures (unknown keys ignored, bad ones
rejected), witness policies, resumable verification, and tlog-proof mutations."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from charter.config import Settings
from charter.errors import ConfigError, LedgerIntegrityError
from charter.evidence import merkle
from charter.evidence.auditor import STATE_FORMAT, Trust, load_state
from charter.evidence.c2sp import (
    Checkpoint,
    CosignatureSigner,
    NoteError,
    Signer,
    TlogProof,
    append_signatures,
    parse_policy,
    sign_note,
    verify_tlog_proof,
)
from charter.evidence.jwk import thumbprint
from charter.evidence.verifier import verify_entries
from charter.home import Home
from charter.storage import tlog as store
from charter.storage.db import transaction
from charter.testing import FrozenClock, make_home, raw_db, raw_tx
from charter.tools import audit, identity
from charter.tools import tlog as tools_tlog


async def grow(home: Home, n: int, tag: str = "event") -> None:
    for i in range(n):
        await home.record_owner_event(f"test.{tag}", {"i": i})


async def export_to(home: Home, folder: Path) -> Path:
    await audit.export(home, folder)
    return folder


async def kept(home: Home) -> str:
    """What an auditor keeps: a checkpoint of the ledger as it is now."""
    return (await tools_tlog.checkpoint(home)).note


def cut_export(folder: Path, size: int) -> None:
    """Truncate an export consistently, as its keeper could: entries, manifest, checkpoints."""
    lines = (folder / "entries.jsonl").read_bytes().splitlines(keepends=True)[:size]
    (folder / "entries.jsonl").write_bytes(b"".join(lines))
    manifest = json.loads((folder / "ledger.json").read_text())
    manifest |= {"size": size, "head": hashlib.sha256(lines[-1].rstrip(b"\n")).hexdigest()}
    (folder / "ledger.json").write_text(json.dumps(manifest))
    for note in (folder / "checkpoints").iterdir():
        if int(note.stem) > size:
            note.unlink()
    assert (folder / "checkpoints" / f"{size}.note").exists()


@pytest.fixture
async def forks(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[tuple[Home, Home]]:
    """Two copies of one home (same origin, same keys) whose histories then diverge."""
    original = await make_home(tmp_path / "a", clock=clock)
    await grow(original, 10)
    await tools_tlog.checkpoint(original)
    await original.close()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    a = await Home.open(Settings(home=tmp_path / "a"), clock=clock)
    b = await Home.open(Settings(home=tmp_path / "b"), clock=clock)
    await grow(a, 5, "a")
    await grow(b, 7, "b")
    yield a, b
    await a.close()
    await b.close()


# -- exports and their checkpoints --------------------------------------------------------------


async def test_an_export_carries_its_checkpoints_and_verifies_against_them(
    home: Home, tmp_path: Path
) -> None:
    await grow(home, 4)
    first = await tools_tlog.checkpoint(home)
    await grow(home, 3)
    folder = await export_to(home, tmp_path / "x")
    size = raw_tx(home).ledger.head()[0]
    assert sorted((p.name for p in (folder / "checkpoints").iterdir()), key=len) == [
        f"{first.size}.note",
        f"{size}.note",
    ]
    assert (folder / "log.vkey").read_text() == tools_tlog.log_verifier(home).vkey + "\n"
    report = audit.verify_export(folder)
    assert (report.size, report.checkpoint_size, report.checkpoints) == (size, size, 2)
    assert report.kept_size is None and report.resumed_from == 0


async def test_an_export_holds_exactly_what_its_checkpoint_covers(
    home: Home, tmp_path: Path
) -> None:
    folder = await export_to(home, tmp_path / "x")
    manifest = json.loads((folder / "ledger.json").read_text())
    note = (folder / "checkpoints" / f"{manifest['size']}.note").read_text()
    assert Checkpoint.parse(note.split("\n\n")[0] + "\n").size == manifest["size"]


async def test_a_truncated_export_passes_alone_but_fails_against_a_kept_checkpoint(
    home: Home, tmp_path: Path
) -> None:
    await grow(home, 3)
    old = (await tools_tlog.checkpoint(home)).size  # a checkpoint the truncation can fall back to
    await grow(home, 4)
    note = await kept(home)  # the auditor keeps this one
    await grow(home, 2)
    folder = await export_to(home, tmp_path / "x")
    cut_export(folder, old)
    # A hash chain and the export's own (older, genuine) checkpoint cannot tell.
    assert audit.verify_export(folder).size == old
    with pytest.raises(
        LedgerIntegrityError, match="truncated: the checkpoint you kept covers"
    ) as e:
        audit.verify_export(folder, trust=Trust(kept=note))
    assert e.value.seq == old


@pytest.mark.sqlite_only("forks a home by copying its database file")
async def test_a_forked_history_fails_against_a_checkpoint_kept_from_the_other_fork(
    forks: tuple[Home, Home], tmp_path: Path
) -> None:
    a, b = forks
    assert a.origin == b.origin and a.log_key.public_key == b.log_key.public_key
    seen_by_a = await kept(a)
    folder = await export_to(b, tmp_path / "b-export")
    assert audit.verify_export(folder).size == raw_tx(b).ledger.head()[0]  # valid on its own
    with pytest.raises(LedgerIntegrityError, match="fork: the first 16 entries"):
        audit.verify_export(folder, trust=Trust(kept=seen_by_a))
    with pytest.raises(LedgerIntegrityError, match="fork"):
        await audit.verify_home(b, trust=Trust(kept=seen_by_a))
    # And no consistency proof the other fork can produce bridges the two checkpoints.
    cp_a = raw_tx(a).checkpoints.latest()
    cp_b = raw_tx(b).checkpoints.latest()
    assert cp_a is not None and cp_b is not None and cp_a.size < cp_b.size
    proof = store.TreeStore(raw_db(b)).consistency_proof(cp_a.size, cp_b.size)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(cp_a.size, cp_b.size, cp_a.root, cp_b.root, proof)


@pytest.mark.sqlite_only("forks a home by copying its database file")
async def test_a_kept_checkpoint_of_the_same_fork_is_extended(forks: tuple[Home, Home]) -> None:
    a, _ = forks
    note = await kept(a)
    await grow(a, 3)
    report = await audit.verify_home(a, trust=Trust(kept=note))
    assert report.kept_size == 16 and report.size == 19


def _rewrite_note(folder: Path, size: int, note: str) -> None:
    (folder / "checkpoints" / f"{size}.note").write_text(note)


def _note(folder: Path, size: int) -> str:
    return (folder / "checkpoints" / f"{size}.note").read_text()


async def test_a_signature_by_an_unknown_key_is_ignored(home: Home, tmp_path: Path) -> None:
    folder = await export_to(home, tmp_path / "x")
    size = raw_tx(home).ledger.head()[0]
    stranger = Signer("stranger.example/log", SigningKey(b"\x01" * 32))
    _rewrite_note(folder, size, append_signatures(_note(folder, size), [stranger]))
    assert audit.verify_export(folder).checkpoint_size == size


async def test_a_checkpoint_signed_only_by_an_unknown_key_is_rejected(
    home: Home, tmp_path: Path
) -> None:
    folder = await export_to(home, tmp_path / "x")
    size = raw_tx(home).ledger.head()[0]
    text = _note(folder, size).split("\n\n")[0] + "\n"
    impostor = Signer(home.origin, SigningKey(b"\x02" * 32))  # right name, another key
    _rewrite_note(folder, size, sign_note(text, [impostor]))
    with pytest.raises(LedgerIntegrityError, match="no valid signature by a known key"):
        audit.verify_export(folder)
    with pytest.raises(
        LedgerIntegrityError, match="the checkpoint you kept: note has no valid signature"
    ):
        await audit.verify_home(home, trust=Trust(kept=sign_note(text, [impostor])))


async def test_a_bad_signature_by_the_log_key_is_rejected(home: Home, tmp_path: Path) -> None:
    folder = await export_to(home, tmp_path / "x")
    size = raw_tx(home).ledger.head()[0]
    text, sig = _note(folder, size).split("\n\n")
    prefix, encoded = sig.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[10] ^= 1  # one bit of the Ed25519 signature (the key ID is left intact)
    bad = f"{text}\n\n{prefix} {base64.b64encode(bytes(raw)).decode()}\n"
    _rewrite_note(folder, size, bad)
    with pytest.raises(LedgerIntegrityError, match="invalid signature by"):
        audit.verify_export(folder)


async def test_a_validly_signed_checkpoint_with_another_root_is_rejected(
    home: Home, tmp_path: Path
) -> None:
    folder = await export_to(home, tmp_path / "x")
    size = raw_tx(home).ledger.head()[0]
    lie = Checkpoint(home.origin, size, hashlib.sha256(b"another history").digest())
    signer = store.log_signer(home.origin, home.log_key)
    _rewrite_note(folder, size, sign_note(lie.to_text(), [signer]))
    with pytest.raises(LedgerIntegrityError, match=f"checkpoint {size} does not match"):
        audit.verify_export(folder)


async def test_a_checkpoint_of_another_log_is_rejected(home: Home, tmp_path: Path) -> None:
    other = await make_home(tmp_path / "other")
    try:
        with pytest.raises(LedgerIntegrityError, match="the checkpoint you kept"):
            await audit.verify_home(home, trust=Trust(kept=await kept(other)))
    finally:
        await other.close()


async def test_a_checkpoint_filed_under_the_wrong_size_is_rejected(
    home: Home, tmp_path: Path
) -> None:
    await grow(home, 2)
    first = await tools_tlog.checkpoint(home)
    await grow(home, 1)
    folder = await export_to(home, tmp_path / "x")
    (folder / "checkpoints" / f"{first.size}.note").write_text(_note(folder, first.size + 1))
    with pytest.raises(LedgerIntegrityError, match="filed under the wrong size"):
        audit.verify_export(folder)


async def test_an_export_must_have_a_checkpoint_of_all_its_entries(
    home: Home, tmp_path: Path
) -> None:
    await grow(home, 2)
    await tools_tlog.checkpoint(home)
    await grow(home, 1)
    folder = await export_to(home, tmp_path / "x")
    (folder / "checkpoints" / f"{raw_tx(home).ledger.head()[0]}.note").unlink()
    with pytest.raises(LedgerIntegrityError, match="no signed checkpoint of all its"):
        audit.verify_export(folder)


@pytest.mark.parametrize("emptied", [False, True])
async def test_an_export_without_checkpoints_is_refused(
    home: Home, tmp_path: Path, emptied: bool
) -> None:
    folder = await export_to(home, tmp_path / "x")
    note = await kept(home)
    shutil.rmtree(folder / "checkpoints")
    if emptied:
        (folder / "checkpoints").mkdir()
    what = "no signed checkpoint of all its" if emptied else "no checkpoints/ folder"
    with pytest.raises(LedgerIntegrityError, match=what):
        audit.verify_export(folder)
    with pytest.raises(LedgerIntegrityError, match=what):  # a kept checkpoint does not excuse it
        audit.verify_export(folder, trust=Trust(kept=note))


# -- the home -----------------------------------------------------------------------------------


async def test_verifying_a_home_checks_its_checkpoints_and_stored_tree(home: Home) -> None:
    await grow(home, 5)
    await tools_tlog.checkpoint(home)
    await grow(home, 2)
    report = await audit.verify_home(home)
    assert report.checkpoints == 1 and report.checkpoint_size == 8
    raw_db(home).execute("DROP TRIGGER merkle_nodes_no_update")
    with transaction(raw_db(home)):
        raw_db(home).execute(
            "UPDATE merkle_nodes SET hash = ? WHERE level = 0 AND idx = 9", (b"\0" * 32,)
        )
    with pytest.raises(LedgerIntegrityError, match="the stored Merkle tree does not match"):
        await audit.verify_home(home)


async def test_a_home_whose_tail_was_deleted_is_caught_by_its_own_checkpoint(home: Home) -> None:
    await grow(home, 5)
    await tools_tlog.checkpoint(home)
    for trigger in ("ledger_no_delete", "merkle_nodes_no_delete"):
        raw_db(home).execute(f"DROP TRIGGER {trigger}")
    with transaction(raw_db(home)):
        raw_db(home).execute("DELETE FROM ledger WHERE seq >= 6")
        raw_db(home).execute("DELETE FROM merkle_nodes")
    with pytest.raises(LedgerIntegrityError, match="checkpoint 8 covers 8 entries, but only 6"):
        await audit.verify_home(home)


@pytest.mark.sqlite_only("tampers in SQLite SQL (bit shifts on BIGINT)")
async def test_an_entry_error_wins_over_a_tree_error(home: Home) -> None:
    await grow(home, 5)
    await tools_tlog.checkpoint(home)
    raw_db(home).execute("DROP TRIGGER ledger_no_update")
    with transaction(raw_db(home)):
        raw_db(home).execute("UPDATE ledger SET body = CAST('{}' AS BLOB) WHERE seq = 4")
    with pytest.raises(LedgerIntegrityError) as e:
        await audit.verify_home(home)
    assert e.value.seq == 4


# -- witnesses and policies ---------------------------------------------------------------------


@pytest.fixture
def witnesses() -> list[CosignatureSigner]:
    return [
        CosignatureSigner(f"witness.example/w{i}", SigningKey(bytes([i + 7]) * 32), lambda: 1.7e9)
        for i in range(3)
    ]


def policy_text(home: Home, witnesses: list[CosignatureSigner], quorum: str) -> str:
    lines = [f"log {tools_tlog.log_verifier(home).vkey}"]
    lines += [f"witness w{i} {w.verifier().vkey}" for i, w in enumerate(witnesses)]
    lines += ["group two 2 w0 w1 w2", f"quorum {quorum}"]
    return "\n".join(lines) + "\n"


async def test_a_witnessed_kept_checkpoint_meets_the_quorum(
    home: Home, witnesses: list[CosignatureSigner], tmp_path: Path
) -> None:
    note = append_signatures(await kept(home), witnesses[1:])
    await grow(home, 2)
    folder = await export_to(home, tmp_path / "x")
    policy = parse_policy(policy_text(home, witnesses, "two"))
    report = audit.verify_export(folder, trust=Trust(kept=note, policy=policy))
    assert report.witnesses == ("w1", "w2")
    one = append_signatures(await kept(home), witnesses[:1])
    with pytest.raises(LedgerIntegrityError, match="quorum 'two' is not satisfied"):
        await audit.verify_home(home, trust=Trust(kept=one, policy=policy))


async def test_without_a_kept_checkpoint_the_policy_applies_to_the_newest_one(
    home: Home, witnesses: list[CosignatureSigner], tmp_path: Path
) -> None:
    folder = await export_to(home, tmp_path / "x")
    policy = parse_policy(policy_text(home, witnesses, "two"))
    with pytest.raises(LedgerIntegrityError, match="does not satisfy the policy"):
        audit.verify_export(folder, trust=Trust(policy=policy))
    size = raw_tx(home).ledger.head()[0]
    _rewrite_note(folder, size, append_signatures(_note(folder, size), witnesses[:2]))
    assert audit.verify_export(folder, trust=Trust(policy=policy)).witnesses == ("w0", "w1")
    assert audit.verify_export(folder).witnesses == ()  # unknown cosigners are ignored


async def test_a_bad_cosignature_by_a_policy_witness_is_rejected(
    home: Home, witnesses: list[CosignatureSigner]
) -> None:
    note = append_signatures(await kept(home), witnesses)
    last = note.rstrip("\n").rsplit("\n", 1)[1]
    name, encoded = last.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[-1] ^= 1
    bad = note.replace(last, f"{name} {base64.b64encode(bytes(raw)).decode()}")
    policy = parse_policy(policy_text(home, witnesses, "w0"))
    with pytest.raises(LedgerIntegrityError, match=r"invalid signature by 'witness\.example/w2'"):
        await audit.verify_home(home, trust=Trust(kept=bad, policy=policy))


async def test_a_policy_for_another_log_key_is_refused(
    home: Home, witnesses: list[CosignatureSigner]
) -> None:
    foreign = Signer(home.origin, SigningKey(b"\x03" * 32)).verifier().vkey
    policy = parse_policy(f"log {foreign}\nquorum none\n")
    with pytest.raises(LedgerIntegrityError, match="not the one the policy trusts"):
        await audit.verify_home(home, trust=Trust(policy=policy))


# -- resuming -----------------------------------------------------------------------------------


async def test_verification_resumes_from_the_last_verified_checkpoint(
    home: Home, tmp_path: Path
) -> None:
    state = tmp_path / "alice.state"
    await identity.revoke_agent(home, "beta", reason="test")
    await grow(home, 6)
    first = audit.verify_export(await export_to(home, tmp_path / "x1"), trust=Trust(state=state))
    assert (first.resumed_from, first.state_size) == (0, first.size)
    assert json.loads(state.read_text())["format"] == STATE_FORMAT
    await grow(home, 4)
    second_folder = await export_to(home, tmp_path / "x2")
    # The state vouches for the prefix: it is not re-read (here it is even damaged), and the
    # new signed checkpoint, recomputed from the state's tree edge and the new entries only,
    # shows the new history extends the one verified before.
    lines = (second_folder / "entries.jsonl").read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"seq":2', b'"seq":9')
    (second_folder / "entries.jsonl").write_bytes(b"".join(lines))
    second = audit.verify_export(second_folder, trust=Trust(state=state))
    assert (second.resumed_from, second.size, second.state_size) == (
        first.size,
        first.size + 4,
        first.size + 4,
    )
    with pytest.raises(LedgerIntegrityError, match="expected seq 2"):
        audit.verify_export(second_folder)  # a full run reads the prefix and sees the damage


async def test_a_resumed_state_matches_a_full_verification(home: Home, tmp_path: Path) -> None:
    await identity.revoke_agent(home, "beta", reason="test")
    await grow(home, 3)
    state_path = tmp_path / "s"
    await audit.verify_home(home, trust=Trust(state=state_path))  # no checkpoint yet: nothing saved
    assert not state_path.exists()
    await tools_tlog.checkpoint(home)
    await audit.verify_home(home, trust=Trust(state=state_path))
    restored = load_state(state_path, home.identity).state
    _, full = verify_entries(home.identity, raw_tx(home).ledger.iter_bodies())
    assert restored == full
    # Each agent is one object in both indexes, as in the verifier (a revocation marks both).
    for agent in restored.agents_by_id.values():
        assert restored.agents_by_kid[thumbprint(agent.charter.agent_key)] is agent


@pytest.mark.sqlite_only("forks a home by copying its database file")
async def test_a_state_from_one_fork_exposes_the_other(
    forks: tuple[Home, Home], tmp_path: Path
) -> None:
    a, b = forks
    await tools_tlog.checkpoint(a)
    state = tmp_path / "state"
    await audit.verify_home(a, trust=Trust(state=state))
    with pytest.raises(LedgerIntegrityError, match="entry 16: prev does not match") as e:
        audit.verify_export(await export_to(b, tmp_path / "b-export"), trust=Trust(state=state))
    assert e.value.seq == 16  # b's entry 16 does not follow the entry 15 the state vouches for


async def test_a_state_beyond_the_ledger_is_truncation(home: Home, tmp_path: Path) -> None:
    await grow(home, 4)
    old = await export_to(home, tmp_path / "old")
    await grow(home, 1)
    await tools_tlog.checkpoint(home)
    state = tmp_path / "state"
    assert (await audit.verify_home(home, trust=Trust(state=state))).state_size == 8
    with pytest.raises(LedgerIntegrityError, match="truncated: 7 entries here, but your audit"):
        audit.verify_export(old, trust=Trust(state=state))


def _rename_a_charters_agent(doc: Any) -> Any:
    """Edit one charter the saved verifier state carries, as if to widen what it allows."""
    edited: list[Any] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if str(value.get("$obj", "")).endswith(":CharterView") and not edited:
                value["fields"]["agent_name"] = "mallory"
                edited.append(value)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(doc)
    assert edited, "the state holds no charter"
    return doc


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d | {"format": "other"}, "is not a charter-audit-state/v1 file"),
        (lambda d: d | {"origin": "x"}, "another ledger"),
        (lambda d: d | {"tree": list(reversed(d["tree"]))}, "inconsistent"),
        (lambda d: d | {"size": d["size"] + 1}, "inconsistent"),
        (
            lambda d: d | {"verifier": {"$obj": "os:system", "$id": 0, "fields": {}}},
            "unexpected type",
        ),
        (
            lambda d: d | {"checkpoint": d["checkpoint"].replace("\n\n", "\nx\n\n")},
            "cannot be used",
        ),
        (_rename_a_charters_agent, "cannot be used"),
    ],
)
async def test_a_damaged_state_file_is_refused(
    home: Home, tmp_path: Path, change: object, message: str
) -> None:
    await grow(home, 6)  # 9 entries: two hashes in the compact range
    await tools_tlog.checkpoint(home)
    state = tmp_path / "state"
    await audit.verify_home(home, trust=Trust(state=state))
    doc = json.loads(state.read_text())
    state.write_text(json.dumps(change(doc)))  # type: ignore[operator]
    with pytest.raises(ConfigError, match=message):
        await audit.verify_home(home, trust=Trust(state=state))


# -- offline inclusion proofs -------------------------------------------------------------------


def _mutations(text: str) -> Iterator[tuple[str, str]]:
    head, _, note = text.partition("\n\n")
    lines = head.split("\n")
    index = int(lines[1].removeprefix("index "))
    hashes = lines[2:]

    def rebuild(idx: int, hs: list[str]) -> str:
        return "\n".join([lines[0], f"index {idx}", *hs]) + "\n\n" + note

    yield "index + 1", rebuild(index + 1, hashes)
    yield "index - 1", rebuild(index - 1, hashes)
    yield "index ^ 2", rebuild(index ^ 2, hashes)
    yield "truncated", rebuild(index, hashes[:-1])
    yield "extended", rebuild(index, [*hashes, hashes[0]])
    yield "node inserted", rebuild(index, [hashes[0], *hashes])
    yield "garbage before", rebuild(index, [base64.b64encode(b"\x07" * 32).decode(), *hashes])
    yield "root appended", rebuild(index, [*hashes, note.split("\n")[2]])
    yield "empty proof", rebuild(index, [])
    for i, h in enumerate(hashes):
        raw = base64.b64decode(h)
        for bit in (0, 77, 255):
            flipped = bytearray(raw)
            flipped[bit // 8] ^= 1 << (bit % 8)
            yield (
                f"bit {bit} of node {i}",
                rebuild(
                    index,
                    [*hashes[:i], base64.b64encode(bytes(flipped)).decode(), *hashes[i + 1 :]],
                ),
            )
    size_line = note.split("\n")[1]
    for size in (int(size_line) * 2, int(size_line) // 2):
        yield f"size {size}", text.replace(f"\n{size_line}\n", f"\n{size}\n", 1)
    yield "garbage after", text + "garbage\n"
    yield "garbage in front", "garbage\n" + text


async def test_every_mutation_of_a_stored_proof_is_rejected(home: Home) -> None:
    await grow(home, 40)
    seq = 22
    proof = await tools_tlog.prove(home, seq)
    entry = raw_tx(home).ledger.get(seq)
    assert entry is not None
    verifier = tools_tlog.log_verifier(home)
    verify_tlog_proof(proof.tlog_proof, entry.body, [verifier])
    with pytest.raises(merkle.ProofError):
        verify_tlog_proof(proof.tlog_proof, entry.body.replace(b'"i":19', b'"i":18'), [verifier])
    other = raw_tx(home).ledger.get(seq + 1)
    assert other is not None
    with pytest.raises(merkle.ProofError):
        verify_tlog_proof(proof.tlog_proof, other.body, [verifier])
    count = 0
    for name, mutated in _mutations(proof.tlog_proof):
        count += 1
        try:
            verify_tlog_proof(mutated, entry.body, [verifier])
        except (merkle.ProofError, NoteError):
            continue
        pytest.fail(f"mutation accepted: {name}")
    assert count > 20


async def test_a_proof_against_an_older_checkpoint_still_verifies(home: Home) -> None:
    await grow(home, 5)
    older = await tools_tlog.checkpoint(home)
    await grow(home, 9)
    await tools_tlog.checkpoint(home)
    proof = await tools_tlog.prove(home, 4, older.size)
    parsed = TlogProof.parse(proof.tlog_proof)
    assert parsed.checkpoint == older.note and parsed.index == 4
    entry = raw_tx(home).ledger.get(4)
    assert entry is not None
    checkpoint = verify_tlog_proof(parsed, entry.body, [tools_tlog.log_verifier(home)])
    assert checkpoint.size == older.size


async def test_consistency_proofs_between_checkpoints_verify(home: Home) -> None:
    await grow(home, 11)
    for old, new in [(1, 14), (6, 8), (8, 14), (14, 14), (0, 9)]:
        out = await tools_tlog.consistency(home, old, new)
        merkle.verify_consistency(
            old, new,
            base64.b64decode(out.old_root), base64.b64decode(out.new_root),
            [base64.b64decode(p) for p in out.proof],
        )  # fmt: skip


@pytest.mark.parametrize("shift", [None, -3, 10**9])
async def test_resuming_an_export_without_a_usable_offset_counts_lines(
    home: Home, tmp_path: Path, shift: int | None
) -> None:
    state = tmp_path / "state"
    await grow(home, 3)
    first = audit.verify_export(await export_to(home, tmp_path / "x1"), trust=Trust(state=state))
    doc = json.loads(state.read_text())
    doc["offset"] = None if shift is None else doc["offset"] + shift
    state.write_text(json.dumps(doc))
    await grow(home, 2)
    second = audit.verify_export(await export_to(home, tmp_path / "x2"), trust=Trust(state=state))
    assert (second.resumed_from, second.size) == (first.size, first.size + 2)


# -- the export's convenience files (issue 27.7) ------------------------------------------------


def cli_verify(folder: Path) -> tuple[int, str]:
    from click.testing import CliRunner

    from charter.cli import cli

    result = CliRunner().invoke(cli, ["audit", "verify", "--export", str(folder)])
    return result.exit_code, result.output


@pytest.fixture
async def exported(home: Home, tmp_path: Path) -> Path:
    """An export of ``home`` after beta's charter was replaced (two charters for beta)."""
    await identity.update_agent(home, "beta", scopes=["audit:read"])
    folder = await export_to(home, tmp_path / "export")
    code, output = cli_verify(folder)
    assert code == 0, output
    assert len(list((folder / "charters").iterdir())) == 3
    return folder


def assert_tampered(folder: Path, name: str) -> None:
    code, output = cli_verify(folder)
    assert code == LedgerIntegrityError.exit_code, output
    assert name in output and "Traceback" not in output


def test_an_edited_charter_file_is_reported(exported: Path) -> None:
    path = sorted((exported / "charters").iterdir())[0]
    doc = json.loads(path.read_text())
    doc["scopes"] = ["secret:read:*"]
    path.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n")
    assert_tampered(exported, f"charters/{path.name} contradicts the ledger")


async def test_an_unregistered_charter_file_is_reported(
    exported: Path, tmp_path: Path, clock: FrozenClock
) -> None:
    """A genuine charter of another home, filed under its own hash: the ledger never
    registered it, so an auditor must not take it for this owner's."""
    async with await make_home(tmp_path / "other", clock=clock) as other:
        await identity.add_agent(other, "gamma", scopes=["secret:read:*"])
        elsewhere = await export_to(other, tmp_path / "other-export")
    [stray] = (elsewhere / "charters").iterdir()
    shutil.copy(stray, exported / "charters" / stray.name)
    assert_tampered(exported, f"charters/{stray.name} contradicts the ledger")
    (exported / "charters" / stray.name).unlink()
    (exported / "charters" / "notes.txt").write_text("hi\n")
    assert_tampered(exported, "charters/notes.txt")


def test_a_keys_file_that_disagrees_with_the_ledger_is_reported(exported: Path) -> None:
    original = (exported / "keys.json").read_text()
    doc = json.loads(original)
    agent = next(k for k in doc["keys"] if k["use"] == "agent:alpha")
    forged = SigningKey.generate().verify_key.encode()
    agent["x"] = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    agent["kid"] = thumbprint(forged)
    (exported / "keys.json").write_text(json.dumps(doc))
    assert_tampered(exported, "keys.json contradicts the ledger")
    owner = next(k for k in doc["keys"] if k["use"] == "owner")
    doc = json.loads(original)
    doc["keys"] = [k for k in doc["keys"] if k["use"] != "log"] + [owner | {"use": "log"}]
    (exported / "keys.json").write_text(json.dumps(doc))
    assert_tampered(exported, "keys.json contradicts the ledger")


def test_a_log_vkey_that_disagrees_with_the_ledger_is_reported(exported: Path) -> None:
    vkey = (exported / "log.vkey").read_text().strip()
    name, key_id, _ = vkey.split("+", 2)
    other = base64.b64encode(b"\x01" + SigningKey.generate().verify_key.encode()).decode()
    (exported / "log.vkey").write_text(f"{name}+{key_id}+{other}\n")
    assert_tampered(exported, "log.vkey")


def test_a_partial_last_line_is_reported_not_parsed(exported: Path) -> None:
    """The last entry intact but its newline cut: still reported (the file was cut)."""
    data = (exported / "entries.jsonl").read_bytes()
    size = data.count(b"\n")
    (exported / "entries.jsonl").write_bytes(data[:-1])
    assert_tampered(exported, f"entry {size - 1}: entries.jsonl ends with a partial line")
