"""Two real witnesses (``charter witness serve`` on 127.0.0.1) cosign a home's checkpoints;
a copy of the home that grows differently gets no cosignature and fails the 2-of-2 policy."""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner, Result
from mcp import Client
from witnesses import WitnessProcess, make_witness, serving

from charter.cli import cli
from charter.config import Settings
from charter.evidence.c2sp import CosignatureVerifier, open_note, parse_policy, verify_policy
from charter.home import Home
from charter.testing import server_for
from charter.tools import identity, witnesses


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args], env={"CHARTER_HOME": str(home)})


def ok(home: Path, *args: str) -> str:
    result = run(home, *args)
    assert result.exit_code == 0, result.output
    return result.output


def grow(home: Path, *names: str) -> None:
    for name in names:
        ok(home, "agent", "add", name)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    ok(path, "init", "--owner", "alice@example.com")
    grow(path, "bot")
    return path


@pytest.fixture
def pair(home: Path, tmp_path: Path) -> Iterator[tuple[WitnessProcess, WitnessProcess]]:
    log_vkey = ok(home, "keys", "log").strip()
    w1 = make_witness(tmp_path / "w1", "witness.example/w1", log_vkey)
    w2 = make_witness(tmp_path / "w2", "witness.example/w2", log_vkey)
    with serving(w1, w2):
        yield w1, w2


def policy(home: Path, tmp_path: Path, *ws: WitnessProcess) -> Path:
    lines = [f"log {ok(home, 'keys', 'log').strip()}"]
    lines += [f"witness w{i} {w.vkey}" for i, w in enumerate(ws, 1)]
    lines += [f"group all-of-them all {' '.join(f'w{i}' for i in range(1, len(ws) + 1))}"]
    lines += ["quorum all-of-them"]
    path = tmp_path / "policy.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_two_witnesses_cosign_and_a_2_of_2_policy_passes(
    home: Path, tmp_path: Path, pair: tuple[WitnessProcess, WitnessProcess]
) -> None:
    w1, w2 = pair
    for w in pair:
        assert "added" in ok(home, "witness", "add", w.url, w.vkey)
    note = ok(home, "audit", "checkpoint", "--out", str(tmp_path / "kept.note"))
    _, verified = open_note(note, [CosignatureVerifier.from_vkey(w.vkey) for w in pair])
    assert [s.name for s in verified] == ["witness.example/w1", "witness.example/w2"]
    rules = policy(home, tmp_path, w1, w2)
    verify_policy(note, parse_policy(rules.read_text()))
    out = ok(
        home, "audit", "verify", "--checkpoint", str(tmp_path / "kept.note"), "--policy", str(rules)
    )
    assert "witnessed by w1, w2" in out

    # The log grows: the next checkpoint goes with a consistency proof from the last one.
    grow(home, "b2", "b3", "b4")
    newer = ok(home, "audit", "checkpoint")
    verify_policy(newer, parse_policy(rules.read_text()))
    size = int(newer.splitlines()[1])
    assert size == int(note.splitlines()[1]) + 3
    assert all(w["size"] == size for w in _listed(home))
    ok(home, "audit", "verify", "--checkpoint", str(tmp_path / "kept.note"), "--policy", str(rules))

    # Exports and the tool carry the cosignatures too.
    ok(home, "audit", "export", str(tmp_path / "export"))
    ok(home, "audit", "verify", "--export", str(tmp_path / "export"), "--policy", str(rules))
    exported = (tmp_path / "export" / "checkpoints" / f"{size}.note").read_text()
    verify_policy(exported, parse_policy(rules.read_text()))


def _listed(home: Path) -> list[dict[str, object]]:
    import json

    return list(json.loads(ok(home, "witness", "list", "--json")))


def test_a_copy_that_grows_differently_gets_no_cosignature_and_fails_the_policy(
    home: Path, tmp_path: Path, pair: tuple[WitnessProcess, WitnessProcess]
) -> None:
    for w in pair:
        ok(home, "witness", "add", w.url, w.vkey)
    ok(home, "audit", "checkpoint")
    copy = tmp_path / "copy"
    shutil.copytree(home, copy)  # same origin, same log key: a split view
    grow(home, "honest")
    grow(copy, "forged", "more")
    honest = ok(home, "audit", "checkpoint")
    result = run(copy, "audit", "checkpoint", "--out", str(tmp_path / "forged.note"))
    assert result.exit_code == 0
    forged = (tmp_path / "forged.note").read_text()
    assert "another history" in result.output  # the warning on stderr (mixed by the runner)
    rules = policy(home, tmp_path, *pair)
    verify_policy(honest, parse_policy(rules.read_text()))
    assert forged.count("\n— ") == 1  # the log's own signature only
    bad = run(
        copy,
        "audit",
        "verify",
        "--checkpoint",
        str(tmp_path / "forged.note"),
        "--policy",
        str(rules),
    )
    assert bad.exit_code != 0 and "quorum" in bad.output
    lagging = run(copy, "witness", "submit")
    assert lagging.exit_code == 1 and "has cosigned" in lagging.output
    # Both keep growing: the copy is never cosigned, the original always is.
    grow(home, "x")
    grow(copy, "y")
    later = run(copy, "audit", "checkpoint")
    assert later.stdout.count("\n— ") == 1 and "another history" in later.output
    verify_policy(ok(home, "audit", "checkpoint"), parse_policy(rules.read_text()))


def test_a_409_is_retried_from_the_size_the_witness_knows(
    home: Path, tmp_path: Path, pair: tuple[WitnessProcess, WitnessProcess]
) -> None:
    w1, _ = pair
    ok(home, "witness", "add", w1.url, w1.vkey)
    copy = tmp_path / "copy"
    shutil.copytree(home, copy)  # a backup: its record of w1 says 0
    known = int(ok(home, "audit", "checkpoint").splitlines()[1])  # w1 now knows this size
    grow(copy, "c1")  # the same history, one longer
    note = ok(copy, "audit", "checkpoint")
    _, verified = open_note(note, [CosignatureVerifier.from_vkey(w1.vkey)])
    assert verified and verified[0].name == "witness.example/w1"
    assert int(note.splitlines()[1]) > known


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A TCP port that accepts connections and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


async def test_an_unreachable_witness_never_blocks_a_tool_call(
    tmp_path: Path, black_hole: str
) -> None:
    from charter.testing import make_home

    h = await make_home(tmp_path / "h")
    await identity.add_agent(
        h, "alpha", scopes=["audit:read"], audiences=["https://api.example.com"]
    )
    vkey = make_witness(tmp_path / "w", "witness.example/w9").vkey
    await witnesses.add_witness(h, black_hole, vkey)
    try:
        started = time.monotonic()
        async with Client(await server_for(h, "alpha")) as client:
            for _ in range(3):
                result = await client.call_tool("audit_checkpoint", {})
                assert not result.is_error
        assert time.monotonic() - started < witnesses.TIMEOUT  # nobody waited for the witness
        lines = await witnesses.lagging(h)
        assert len(lines) == 1 and "witness.example/w9" in lines[0]
        await anyio.sleep(0)
    finally:
        await h.close()


async def test_doctor_line_reports_a_lagging_witness(home: Path, tmp_path: Path) -> None:
    async with await Home.open(Settings(home=home)) as h:
        assert await witnesses.lagging(h) == []
        vkey = make_witness(tmp_path / "w", "witness.example/w3").vkey
        await witnesses.add_witness(h, "http://127.0.0.1:9", vkey)  # discard port: refused
        await witnesses.checkpoint_witnessed(h, timeout=2)
        [line] = await witnesses.lagging(h)
        assert "witness.example/w3" in line and "unreachable" in line
    doctor = run(home, "doctor", "--json")
    checks = [c for c in json.loads(doctor.output)["checks"] if c["name"] == "witnesses"]
    assert [c["status"] for c in checks] == ["warn"] and "witness.example/w3" in checks[0]["detail"]


def test_bad_witness_configuration_is_refused(home: Path, tmp_path: Path) -> None:
    vkey = make_witness(tmp_path / "w", "witness.example/w4").vkey
    log_vkey = ok(home, "keys", "log").strip()
    for url, key, message in [
        ("ftp://127.0.0.1/", vkey, "http"),
        ("http://user:pw@127.0.0.1/", vkey, "credentials"),
        ("http://127.0.0.1:1", log_vkey, "type 0x04"),
        ("http://127.0.0.1:1", "nonsense", "vkey"),
    ]:
        result = run(home, "witness", "add", url, key)
        assert result.exit_code != 0 and message in result.output
        assert "Traceback" not in result.output
    ok(home, "witness", "add", "http://127.0.0.1:1", vkey)
    again = run(home, "witness", "add", "http://127.0.0.1:2", vkey)
    assert again.exit_code != 0 and "configured already" in again.output
    ok(home, "audit", "verify")  # the witness.add entry verifies


def test_a_removed_witness_is_no_longer_asked_and_its_cosignatures_stay(
    home: Path, tmp_path: Path, pair: tuple[WitnessProcess, WitnessProcess]
) -> None:
    for w in pair:
        ok(home, "witness", "add", w.url, w.vkey)
    first = ok(home, "audit", "checkpoint")
    assert first.count("— witness.example/") == 2
    removed = ok(home, "witness", "remove", "witness.example/w2")
    assert "removed" in removed
    assert [w["name"] for w in _listed(home)] == ["witness.example/w1"]
    grow(home, "after-removal")
    second = ok(home, "audit", "checkpoint")
    _, verified = open_note(second, [CosignatureVerifier.from_vkey(w.vkey) for w in pair])
    assert [s.name for s in verified] == ["witness.example/w1"]  # w2 was not asked
    size = int(first.splitlines()[1])
    kept = tmp_path / "kept.note"
    kept.write_text(first)
    ok(home, "audit", "verify", "--checkpoint", str(kept))  # the earlier cosignatures still check
    again = run(home, "witness", "remove", "witness.example/w2")
    assert again.exit_code != 0 and "no witness named" in again.output
    assert "Traceback" not in again.output
    verified_out = ok(home, "audit", "verify")
    assert "OK" in verified_out and size > 0
