"""Real witnesses for tests: ``charter witness serve`` in a child process on 127.0.0.1, and
an in-memory log (a Merkle tree and a note key) that can grow and fork."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nacl.signing import SigningKey

from charter.evidence import merkle
from charter.evidence.c2sp import AddCheckpoint, Checkpoint, Signer, sign_note

CHARTER = [sys.executable, "-m", "charter"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def charter(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [*CHARTER, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@dataclass
class WitnessProcess:
    """A witness folder served by a child process."""

    folder: Path
    vkey: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*CHARTER, "witness", "serve", "--port", str(self.port), "--home", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            assert self.proc.poll() is None, "the witness exited"
            time.sleep(0.05)
        raise AssertionError("the witness did not start")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None


def make_witness(folder: Path, name: str, *logs: str) -> WitnessProcess:
    vkey = charter("witness", "init", "--name", name, "--home", str(folder)).strip()
    for log_vkey in logs:
        charter("witness", "add-log", log_vkey, "--home", str(folder))
    return WitnessProcess(folder, vkey)


@contextlib.contextmanager
def serving(*witnesses: WitnessProcess) -> Iterator[None]:
    try:
        for w in witnesses:
            w.start()
        yield
    finally:
        for w in witnesses:
            w.stop()


class MemoryLog:
    """A log held in memory: leaves, a note key named after its origin; :meth:`fork` copies
    it so that the copy can grow differently (same origin and key: a split view)."""

    def __init__(self, origin: str = "example.org/log", seed: bytes = bytes(range(32))) -> None:
        self.origin = origin
        self.seed = seed
        self.signer = Signer(origin, SigningKey(seed))
        self.leaves: list[bytes] = []

    @property
    def vkey(self) -> str:
        return self.signer.verifier().vkey

    def fork(self) -> MemoryLog:
        other = MemoryLog(self.origin, self.seed)
        other.leaves = list(self.leaves)
        return other

    def grow(self, count: int, tag: str) -> None:
        for i in range(count):
            self.leaves.append(merkle.leaf_hash(f"{tag}-{len(self.leaves)}-{i}".encode()))

    def root(self, size: int | None = None) -> bytes:
        return merkle.root_from_leaves(self.leaves[: len(self.leaves) if size is None else size])

    def note(self, size: int | None = None) -> str:
        size = len(self.leaves) if size is None else size
        return sign_note(Checkpoint(self.origin, size, self.root(size)).to_text(), [self.signer])

    def proof(self, old: int, new: int) -> tuple[bytes, ...]:
        nodes: dict[tuple[int, int], bytes] = {}
        for i, leaf in enumerate(self.leaves[:new]):
            for level, index, value in merkle.append_nodes(i, leaf, lambda lv, ix: nodes[(lv, ix)]):
                nodes[(level, index)] = value
        if old == 0:
            return ()
        return tuple(merkle.consistency_proof(old, new, lambda lv, ix: nodes[(lv, ix)]))

    def request(self, old: int, new: int | None = None) -> bytes:
        new = len(self.leaves) if new is None else new
        return AddCheckpoint(old, self.proof(old, new), self.note(new)).to_body()
