"""The witness: its folder, key and state, and the ``add-checkpoint`` decision.

A witness folder holds ``keys/log.key`` (the witness key, created and used only through the
signer seam, :mod:`charter.keys`; the ``log`` reference of a witness folder is its cosigning
key) and ``witness.db`` (:mod:`charter.storage.witness`).

:meth:`Witness.add_checkpoint` follows c2sp.org/tlog-witness: 404 unknown origin, 403 no valid
log signature, 400 old size above the checkpoint's or a malformed body, 409 with the size it
knows when the old size is stale (or the same size comes with another root), 422 when the
consistency proof fails, 200 with the cosignature line. The check against the stored state
and the write of the new state are one transaction, and the cosignature is made only after
it commits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from charter.config import HomeLayout
from charter.errors import ConfigError, InvalidInput
from charter.evidence import merkle
from charter.evidence.c2sp import (
    SIZE_CONTENT_TYPE,
    AddCheckpoint,
    CosignatureVerifier,
    KeyCosigner,
    NoteError,
    Verifier,
    open_checkpoint,
    parse_vkey,
    size_body,
    split_note,
)
from charter.keys import LOG, FileSigner, KeyHandle
from charter.storage.witness import LogState, WitnessStateRepo, open_state

log = logging.getLogger(__name__)

STATE_FILE = "witness.db"


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, body, content type."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


class _Refused(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def _text(status: int, message: str) -> Answer:
    return Answer(status, (message + "\n").encode())


class Witness:
    """An open witness folder.

    Args:
        folder: The witness folder (made by :meth:`init`).
        clock: Seconds since the epoch, for cosignature timestamps.

    Raises:
        ConfigError: the folder is not an initialised witness.
    """

    def __init__(self, folder: Path, clock: Callable[[], float] = time.time) -> None:
        if not (folder / STATE_FILE).exists():
            raise ConfigError(f"{folder} is not a witness folder: run charter witness init")
        self.folder = folder
        self.conn = open_state(folder / STATE_FILE)
        self.repo = WitnessStateRepo(self.conn)
        name = self.repo.name()
        if name is None:
            raise ConfigError(f"{folder} has no witness name: run charter witness init")
        self.cosigner = KeyCosigner(name, KeyHandle.of(FileSigner(HomeLayout(folder)), LOG), clock)
        # One submission at a time through this connection; other processes on the same file
        # are serialised by the database's write lock.
        self._lock = threading.Lock()

    @classmethod
    def init(cls, folder: Path, name: str) -> Witness:
        """Make a witness folder: a new key (through the signer seam) and an empty state.

        Raises:
            ConfigError: the folder is already a witness, or the name is not a valid key name.
        """
        try:
            KeyCosigner(name, _NoKey())
        except NoteError as exc:
            raise ConfigError(f"witness name: {exc.reason}") from exc
        if (folder / STATE_FILE).exists():
            raise ConfigError(f"{folder} is already a witness folder")
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        layout = HomeLayout(folder)
        layout.keys.mkdir(exist_ok=True, mode=0o700)
        FileSigner(layout).create(LOG)
        conn = open_state(folder / STATE_FILE)
        try:
            WitnessStateRepo(conn).set_name(name)
        finally:
            conn.close()
        return cls(folder)

    def close(self) -> None:
        """Close the state file."""
        self.conn.close()

    def __enter__(self) -> Witness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def verifier(self) -> CosignatureVerifier:
        """The witness's cosignature verifier; its ``vkey`` is what logs and policies list."""
        return self.cosigner.verifier()

    def add_log(self, vkey: str) -> str:
        """Witness the log whose checkpoints ``vkey`` (an Ed25519 note key named after the
        log's origin) signs. Returns the origin.

        Raises:
            InvalidInput: the vkey is malformed or not an Ed25519 note key.
        """
        try:
            verifier = parse_vkey(vkey.strip())
        except NoteError as exc:
            raise InvalidInput(f"log vkey: {exc.reason}") from exc
        if not isinstance(verifier, Verifier):
            raise InvalidInput("log vkey: a log signs with an Ed25519 (type 0x01) note key")
        self.repo.add_log(verifier.name, verifier.vkey)
        return verifier.name

    def add_checkpoint(self, body: bytes) -> Answer:
        """Handle one ``add-checkpoint`` request body; see the module docstring."""
        try:
            with self._lock:
                return self._add(body)
        except _Refused as refused:
            return refused.answer

    def _add(self, body: bytes) -> Answer:
        try:
            request = AddCheckpoint.parse(body)
            keys = self._log_keys(request.note)
        except NoteError as exc:
            return _text(400, f"bad request: {exc.reason}")
        if not keys:
            return _text(404, "unknown log")
        try:
            checkpoint, _ = open_checkpoint(request.note, keys)
        except NoteError:
            return _text(403, "no valid signature by a key this witness trusts for the log")
        if request.old_size > checkpoint.size:
            return _text(400, "old size is larger than the checkpoint's")
        new = LogState(checkpoint.origin, checkpoint.size, checkpoint.root_hash, request.note)

        def check(stored: LogState | None) -> None:
            known = 0 if stored is None else stored.size
            if request.old_size != known:
                raise _Refused(Answer(409, size_body(known), SIZE_CONTENT_TYPE))
            if stored is None:
                if request.proof:
                    raise _Refused(_text(422, "the proof must be empty from size 0"))
                return
            if stored.size == new.size and stored.root != new.root:
                log.warning("log %s signed two roots of size %d", new.origin, new.size)
                raise _Refused(Answer(409, size_body(known), SIZE_CONTENT_TYPE))
            try:
                merkle.verify_consistency(
                    stored.size, new.size, stored.root, new.root, request.proof
                )
            except merkle.ProofError as exc:
                log.warning("log %s: inconsistent checkpoint %d: %s", new.origin, new.size, exc)
                raise _Refused(_text(422, "the consistency proof does not verify")) from exc

        self.repo.advance(new.origin, check, new)
        text, _ = split_note(request.note)
        return Answer(200, self.cosigner.line(text).encode())

    def _log_keys(self, note: str) -> list[Verifier]:
        origin = note.split("\n", 1)[0]
        keys = []
        for vkey in self.repo.log_keys(origin):
            verifier = parse_vkey(vkey)
            if isinstance(verifier, Verifier):
                keys.append(verifier)
        return keys


class _NoKey:
    """Stands in for a key while a name is checked."""

    public_key = bytes(32)
    kid = ""

    def sign(self, message: bytes) -> bytes:  # pragma: no cover - never called
        raise NotImplementedError
