"""The witness's add-checkpoint decision (c2sp.org/tlog-witness), in process on a real witness
folder, and the formats against the C2SP specs' own examples."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from nacl.signing import SigningKey, VerifyKey
from witnesses import MemoryLog

from charter.errors import ConfigError, InvalidInput
from charter.evidence.c2sp import (
    AddCheckpoint,
    CosignatureSigner,
    CosignatureVerifier,
    KeyCosigner,
    NoteError,
    cosignatures_from,
    open_note,
    parse_size_body,
    split_note,
)
from charter.keys import KeyPair
from charter.storage.witness import WitnessStateRepo, open_state
from charter.witness.core import Witness

# The request body example of c2sp.org/tlog-witness, verbatim.
SPEC_REQUEST = (
    "old 20852014\n"
    "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
    "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n"
    "5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n"
    "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n"
    "\n"
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/"
    "Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "— example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/"
    "V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n"
)


@pytest.fixture
def log() -> MemoryLog:
    log = MemoryLog()
    log.grow(5, "a")
    return log


@pytest.fixture
def witness(tmp_path: Path, log: MemoryLog) -> Witness:
    w = Witness.init(tmp_path / "w", "witness.example/w1")
    w.add_log(log.vkey)
    w.cosigner._clock = lambda: 1_700_000_000
    return w


def test_the_spec_request_example_parses_and_round_trips() -> None:
    request = AddCheckpoint.parse(SPEC_REQUEST.encode())
    assert request.old_size == 20852014 and len(request.proof) == 4
    assert request.note.startswith("example.com/behind-the-sofa\n20852163\n")
    assert request.to_body() == SPEC_REQUEST.encode()
    assert parse_size_body(b"20852014\n") == 20852014
    for bad in (b"", b"20852014", b"020\n", b"-1\n", b"1 \n"):
        with pytest.raises(NoteError):
            parse_size_body(bad)


@pytest.mark.parametrize(
    "body",
    [
        SPEC_REQUEST.replace("old 20852014", "old 020852014"),
        SPEC_REQUEST.replace("old 20852014\n", ""),
        SPEC_REQUEST.replace("PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=", "PlRN"),
        SPEC_REQUEST.replace("\n\nexample.com", "\nexample.com"),
        "old 1\n" + "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n" * 64 + SPEC_REQUEST[-300:],
    ],
)
def test_malformed_requests_are_refused(body: str) -> None:
    with pytest.raises(NoteError):
        AddCheckpoint.parse(body.encode())


def test_a_key_handle_cosigner_is_byte_identical_to_the_spec_signer() -> None:
    seed = bytes(range(32, 64))
    pair = KeyPair.from_seed(seed)
    text = "example.org/log\n5\n" + base64.b64encode(bytes(32)).decode() + "\n"
    ours = KeyCosigner("w.example/1", pair, lambda: 1_700_000_000)
    reference = CosignatureSigner("w.example/1", SigningKey(seed), lambda: 1_700_000_000)
    assert ours.key_id == reference.key_id
    assert ours.sign(text.encode()) == reference.sign(text.encode())


def _verify_by_the_spec_alone(line: str, text: str, vkey: str) -> int:
    """tlog-cosignature/v1, written from the spec: key ID = SHA-256(name || 0x0A || 0x04 ||
    key)[:4]; payload = u64 timestamp || Ed25519 over "cosignature/v1\\ntime <t>\\n" || text."""
    name, hex_id, encoded = vkey.split("+", 2)  # base64 may hold "+"; a name may not
    raw = base64.b64decode(encoded)
    assert raw[0] == 0x04
    assert hashlib.sha256(name.encode() + b"\n\x04" + raw[1:]).digest()[:4].hex() == hex_id
    assert line.startswith(f"— {name} ") and line.endswith("\n")
    blob = base64.b64decode(line.split(" ")[2])
    assert blob[:4].hex() == hex_id and len(blob) == 4 + 8 + 64
    timestamp = int.from_bytes(blob[4:12], "big")
    message = f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()
    VerifyKey(raw[1:]).verify(message, blob[12:])
    return timestamp


def test_first_checkpoint_is_cosigned_and_the_cosignature_verifies_by_the_spec(
    witness: Witness, log: MemoryLog
) -> None:
    answer = witness.add_checkpoint(log.request(0))
    assert answer.status == 200
    text, _ = split_note(log.note())
    line = answer.body.decode()
    assert _verify_by_the_spec_alone(line, text, witness.verifier.vkey) == 1_700_000_000
    assert cosignatures_from(line, log.note(), witness.verifier) == [line]
    _, verified = open_note(log.note() + line, [witness.verifier])
    assert [s.name for s in verified] == ["witness.example/w1"]


def test_status_codes(witness: Witness, log: MemoryLog, tmp_path: Path) -> None:
    other = MemoryLog("other.example/log")
    other.grow(2, "x")
    assert witness.add_checkpoint(other.request(0)).status == 404
    impostor = MemoryLog(log.origin, seed=bytes(32))  # same origin, another key
    impostor.leaves = list(log.leaves)
    assert witness.add_checkpoint(impostor.request(0)).status == 403
    assert witness.add_checkpoint(AddCheckpoint(6, (), log.note()).to_body()).status == 400
    assert witness.add_checkpoint(b"old 0\n").status == 400
    assert witness.add_checkpoint(log.request(0, 3)).status == 200
    stale = witness.add_checkpoint(log.request(0))
    assert (stale.status, stale.body, stale.content_type) == (409, b"3\n", "text/x.tlog.size")
    bad = AddCheckpoint(3, tuple(bytes(32) for _ in log.proof(3, 5)), log.note()).to_body()
    assert witness.add_checkpoint(bad).status == 422
    assert witness.add_checkpoint(log.request(3)).status == 200
    again = witness.add_checkpoint(log.request(5))  # same size, same root: cosigned again
    assert again.status == 200


def test_a_fork_is_never_cosigned_and_the_state_never_goes_back(
    witness: Witness, log: MemoryLog
) -> None:
    fork = log.fork()
    log.grow(3, "honest")
    fork.grow(3, "fork")
    assert witness.add_checkpoint(log.request(0, 5)).status == 200
    assert witness.add_checkpoint(log.request(5)).status == 200  # size 8
    assert witness.add_checkpoint(fork.request(8)).status == 409  # same size, other root
    assert witness.add_checkpoint(fork.request(5)).status == 409  # stale old size
    fork.grow(2, "more")
    assert witness.add_checkpoint(fork.request(8)).status == 422  # not an extension of 8
    assert witness.add_checkpoint(log.request(8, 8)).status == 200
    state = witness.repo.latest(log.origin)
    assert state is not None and (state.size, state.root) == (8, log.root())
    # Even the repository refuses to move the state back or to another root of one size.
    conn = open_state(witness.folder / "witness.db")
    with pytest.raises(Exception, match="never goes back"):
        conn.execute("UPDATE witness_state SET size = 5")
    with pytest.raises(Exception, match="never goes back"):
        conn.execute("UPDATE witness_state SET root = ?", (fork.root(8),))
    conn.close()


def test_init_add_log_and_reopen(tmp_path: Path, log: MemoryLog) -> None:
    folder = tmp_path / "w"
    w = Witness.init(folder, "witness.example/w2")
    vkey = w.verifier.vkey
    assert CosignatureVerifier.from_vkey(vkey).name == "witness.example/w2"
    assert w.add_log(log.vkey) == log.origin
    w.close()
    with pytest.raises(ConfigError, match="already a witness"):
        Witness.init(folder, "witness.example/w2")
    with pytest.raises(ConfigError, match="witness name"):
        Witness.init(tmp_path / "x", "bad name")
    with Witness(folder) as again:
        assert again.verifier.vkey == vkey
        assert WitnessStateRepo(again.conn).logs() == [(log.origin, log.vkey)]
        with pytest.raises(InvalidInput, match="Ed25519"):
            again.add_log(vkey)  # a cosignature key is not a log key
    with pytest.raises(ConfigError, match="not a witness folder"):
        Witness(tmp_path / "nothing")
    assert not next(iter((folder / "keys").glob("*.key"))).stat().st_mode & 0o077


def test_only_the_cli_imports_the_witness_package() -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "test_layout.py"
    spec = importlib.util.spec_from_file_location("layout_rules", path)
    assert spec is not None and spec.loader is not None
    layout = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layout)
    graph = layout.graph
    importers = sorted(
        name
        for name, targets in graph().items()
        if any(t.startswith("charter.witness") for t in targets)
        and not name.startswith(("charter.witness", "charter.cli"))
    )
    assert importers == []
