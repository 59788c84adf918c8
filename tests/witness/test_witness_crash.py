"""kill -9 of a witness mid-submission never makes it cosign two roots of one size.

Two copies of one log (same origin and key) grow differently and race to a real witness
process over HTTP; the witness is killed with SIGKILL at random moments and restarted on the
same folder. Every cosignature it ever returned is collected: per tree size, all of them must
be for one root, and the state it restarts with must be the newest one it cosigned or later.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from witnesses import MemoryLog, make_witness

from charter.evidence.c2sp import CosignatureVerifier, open_note, parse_size_body
from charter.storage.witness import WitnessStateRepo, open_state


def post(url: str, body: bytes) -> tuple[int, bytes]:
    """(status, body) of one submission; (0, b"") when the witness died before answering
    whole (the kill may cut the status line or the body: IncompleteRead, reset...)."""
    request = urllib.request.Request(url + "/add-checkpoint", data=body, method="POST")
    try:
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return int(answer.status), answer.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()
    except (OSError, http.client.HTTPException):
        return 0, b""


def test_kill_9_never_makes_a_witness_cosign_two_roots_of_one_size(tmp_path: Path) -> None:
    rng = random.Random(22)
    honest = MemoryLog()
    honest.grow(3, "base")
    fork = honest.fork()
    honest.grow(40, "honest")
    fork.grow(40, "fork")
    witness = make_witness(tmp_path / "w", "witness.example/crash", honest.vkey)
    verifier = CosignatureVerifier.from_vkey(witness.vkey)
    cosigned: dict[int, set[bytes]] = {}
    lock = threading.Lock()
    stop = threading.Event()

    errors: list[BaseException] = []

    def submitter(log: MemoryLog) -> None:
        try:
            submit(log)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    def submit(log: MemoryLog) -> None:
        old, size = 0, 4
        while not stop.is_set() and size <= len(log.leaves):
            status, body = post(witness.url, log.request(old, size))
            if status == 200:
                open_note(log.note(size) + body.decode(), [verifier])  # a valid cosignature
                with lock:
                    cosigned.setdefault(size, set()).add(log.root(size))
                old, size = size, size + rng.randint(1, 3)
            elif status == 409:
                known = parse_size_body(body)
                if known > size:
                    size = known  # the other copy is ahead: try to catch up at its size
                old = min(known, size)
            elif status == 422:
                size += 1  # refused: another history; keep pushing
            else:
                time.sleep(0.02)  # killed or restarting

    kills = 0
    witness.start()
    threads = [threading.Thread(target=submitter, args=(log,)) for log in (honest, fork)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(t.is_alive() for t in threads):
            time.sleep(rng.uniform(0.05, 0.4))
            witness.kill9()
            kills += 1
            witness.start()
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        witness.stop()
    assert errors == []
    assert kills >= 3 and cosigned
    two_roots = {size: roots for size, roots in cosigned.items() if len(roots) > 1}
    assert two_roots == {}
    conn = open_state(tmp_path / "w" / "witness.db")
    state = WitnessStateRepo(conn).latest(honest.origin)
    conn.close()
    assert state is not None and state.size >= max(cosigned)
    assert state.root in cosigned.get(state.size, {state.root})
