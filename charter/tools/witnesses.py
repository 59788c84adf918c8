"""The log side of witnessing: configure witnesses, submit checkpoints, store cosignatures.

``charter witness add URL VKEY`` configures a witness (an owner-signed ``witness.add``
entry). Each new checkpoint is submitted to every witness with c2sp.org/tlog-witness
``add-checkpoint``: ``old <size the witness last cosigned>``, the consistency proof from that
size, and the signed note. A 409 answer names the size the witness knows; the submission is
retried once from there (a size beyond ours, or a refused proof, means the witness has seen
another history: recorded, never retried blindly). A 200 answer's lines are verified with the
witness's vkey before they are stored; the stored lines are appended to the checkpoint
wherever it is handed out.

Submissions run with a timeout (:data:`TIMEOUT`) and, in a server, on a thread of their own
(:class:`Submitter`): an unreachable witness never blocks a tool call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import BaseModel

from charter.clock import rfc3339
from charter.errors import InvalidInput, NotFound
from charter.evidence.c2sp import (
    AddCheckpoint,
    CosignatureVerifier,
    NoteError,
    cosignatures_from,
    parse_size_body,
    parse_vkey,
)
from charter.home import Home
from charter.storage import tlog
from charter.storage.ports import Tx, WorkerStore
from charter.storage.witnesses import WitnessRow
from charter.tools.tlog import CheckpointOut, checkpoint

log = logging.getLogger(__name__)

#: Seconds a submission waits for one witness's answer.
TIMEOUT = 5.0
#: Requests per witness per checkpoint: the first, and one retry from a 409's size.
_ATTEMPTS = 2
_MAX_ANSWER = 16 * 1024


class WitnessOut(BaseModel):
    """A configured witness and how far it has cosigned."""

    name: str
    vkey: str
    url: str
    size: int
    last_ok: str | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class Submission:
    """What one witness answered for one checkpoint."""

    witness: str
    size: int
    ok: bool
    detail: str


def _out(row: WitnessRow) -> WitnessOut:
    return WitnessOut(
        name=row.name,
        vkey=row.vkey,
        url=row.url,
        size=row.size,
        last_ok=row.last_ok,
        last_error=row.last_error,
    )


async def add_witness(
    home: Home, url: str, vkey: str, *, passphrase: bytes | None = None
) -> WitnessOut:
    """Configure a witness: its submission URL and its cosignature vkey (type 0x04).

    Raises:
        InvalidInput: a malformed URL or vkey, or a witness of that name exists already.
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidInput("witness URL must be http:// or https:// with a host")
    if parsed.query or parsed.fragment or parsed.username or parsed.password:
        raise InvalidInput("witness URL must not carry a query, fragment or credentials")
    try:
        verifier = parse_vkey(vkey.strip())
    except NoteError as exc:
        raise InvalidInput(f"witness vkey: {exc.reason}") from exc
    if not isinstance(verifier, CosignatureVerifier):
        raise InvalidInput("witness vkey must be a tlog-cosignature/v1 (type 0x04) key")
    now = rfc3339(home.clock.now())
    clean = url.rstrip("/")
    event = home.owner_event(
        "witness.add",
        {"name": verifier.name, "vkey": verifier.vkey, "url": clean},
        passphrase=passphrase,
    )

    def work(tx: Tx) -> None:
        if not tx.witnesses.add(verifier.name, verifier.vkey, clean, now):
            raise InvalidInput(f"a witness named {verifier.name!r} is configured already")
        tx.ledger.append_one(event)

    await home.write(work)
    return next(w for w in await list_witnesses(home) if w.name == verifier.name)


async def remove_witness(home: Home, name: str, *, passphrase: bytes | None = None) -> WitnessOut:
    """Stop asking a witness to cosign (``witness.remove``, owner-signed). The cosignatures
    it already gave stay with their checkpoints.

    Raises:
        NotFound: no witness of that name.
    """
    found = next((w for w in await list_witnesses(home) if w.name == name), None)
    if found is None:
        raise NotFound(f"no witness named {name!r} (see `charter witness list`)")
    event = home.owner_event(
        "witness.remove",
        {"name": name, "vkey": found.vkey, "url": found.url},
        passphrase=passphrase,
    )

    def work(tx: Tx) -> None:
        if not tx.witnesses.remove(name):
            raise NotFound(f"no witness named {name!r} (see `charter witness list`)")
        tx.ledger.append_one(event)

    await home.write(work)
    return found


async def list_witnesses(home: Home) -> list[WitnessOut]:
    """Every configured witness."""
    return await home.read(lambda tx: [_out(row) for row in tx.witnesses.all()])


def submit(home: Home, store: WorkerStore, *, timeout: float = TIMEOUT) -> list[Submission]:
    """Submit the latest checkpoint to every witness that has not cosigned it yet (blocking:
    run it on a worker thread, with a :meth:`~charter.storage.ports.Store.worker` handle).

    Never raises for a witness's failure: each one is recorded (``last_error``) and returned.
    """
    rows, latest = store.read(lambda tx: (tx.witnesses.all(), tx.checkpoints.latest()))
    if not rows or latest is None:
        return []
    results = []
    for row in rows:
        if store.read(functools.partial(_has_cosigned, size=latest.size, name=row.name)):
            continue
        result = _submit_one(home, store, row, latest, timeout)
        if not result.ok:
            log.warning("witness %s: %s", row.name, result.detail)
            failure = functools.partial(
                _record_failure, name=row.name, error=result.detail, now=rfc3339(home.clock.now())
            )
            store.write(failure)
        results.append(result)
    return results


def _has_cosigned(tx: Tx, *, size: int, name: str) -> bool:
    return tx.witnesses.has(size, name)


def _record_failure(tx: Tx, *, name: str, error: str, now: str) -> None:
    tx.witnesses.record_failure(name, error, now)


def _submit_one(
    home: Home, store: WorkerStore, row: WitnessRow, latest: tlog.SignedCheckpoint, timeout: float
) -> Submission:
    verifier = CosignatureVerifier.from_vkey(row.vkey)
    note = latest.note  # the log's signature (and any cosignatures already here)
    old = row.size if row.size <= latest.size else 0

    def failed(detail: str) -> Submission:
        return Submission(row.name, latest.size, False, detail)

    for _ in range(_ATTEMPTS):
        proof = (
            tuple(store.read(functools.partial(_proof, old=old, size=latest.size))) if old else ()
        )
        body = AddCheckpoint(old, proof, note).to_body()
        status, answer = _post(row.url + "/add-checkpoint", body, timeout)
        if status == 200:
            try:
                lines = cosignatures_from(answer, latest.note, verifier)
            except NoteError as exc:
                return failed(f"answered with no valid cosignature: {exc.reason}")
            cosigned = functools.partial(
                _record_cosignature,
                name=row.name,
                size=latest.size,
                line=lines[0],
                now=rfc3339(home.clock.now()),
            )
            store.write(cosigned)
            return Submission(row.name, latest.size, True, "cosigned")
        if status == 409:
            try:
                known = parse_size_body(answer)
            except NoteError:
                return failed("answered 409 without a size")
            if known > latest.size:
                return failed(
                    f"has cosigned {known} entries of this log but the log has {latest.size}: "
                    "it has seen another history"
                )
            if known == old:
                return failed(f"refuses size {latest.size}: it cosigned another root (a fork)")
            store.write(functools.partial(_record_size, name=row.name, size=known))
            old = known
            continue
        if status == 422:
            return failed(f"refuses the consistency proof from {old}: it has seen another history")
        if status == 0:
            return failed(f"unreachable: {answer.decode('utf-8', 'replace')}")
        first = answer.decode("utf-8", "replace").split("\n", 1)[0][:200]
        return failed(f"answered {status}: {first}")
    return failed("kept answering 409")


def _proof(tx: Tx, *, old: int, size: int) -> list[bytes]:
    return tx.tree.consistency_proof(old, size)


def _record_cosignature(tx: Tx, *, name: str, size: int, line: str, now: str) -> None:
    tx.witnesses.record_cosignature(name, size, line, now)


def _record_size(tx: Tx, *, name: str, size: int) -> None:
    tx.witnesses.record_size(name, size)


def _post(url: str, body: bytes, timeout: float) -> tuple[int, bytes]:
    """POST ``body``; the status and at most 16 KiB of the answer (status 0: no answer)."""
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked by add_witness
        url, data=body, method="POST", headers={"Content-Type": "text/plain; charset=utf-8"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), response.read(_MAX_ANSWER)
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read(_MAX_ANSWER)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return 0, str(reason)[:200].encode()


async def lagging(home: Home) -> list[str]:
    """For ``charter doctor``: one line per witness that has not cosigned the latest
    checkpoint (empty: every witness is current, or none is configured)."""
    return await home.read(_lagging)


def _lagging(tx: Tx) -> list[str]:
    repo = tx.witnesses
    rows = repo.all()
    latest = tx.checkpoints.latest() if rows else None
    if latest is None:
        return []
    out = []
    for row in rows:
        if repo.has(latest.size, row.name):
            continue
        why = f" (last error: {row.last_error})" if row.last_error else ""
        out.append(
            f"witness {row.name} ({row.url}) has cosigned {row.size} of {latest.size} entries{why}"
        )
    return out


class Submitter:
    """Submits checkpoints to the witnesses on a daemon thread of its own, when kicked.

    Args:
        home: The home (each pass opens a connection of its own).
        timeout: Per-witness answer timeout.
    """

    def __init__(self, home: Home, timeout: float = TIMEOUT) -> None:
        self._home = home
        self._timeout = timeout
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.passes = 0

    def kick(self) -> None:
        """Ask for a submission pass soon (never blocks)."""
        with self._lock:
            if self._stop.is_set():
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="charter-witnesses", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def stop(self, wait: float = 1.0) -> None:
        """Stop the thread (waiting at most ``wait`` seconds for a pass in flight)."""
        with self._lock:
            self._stop.set()
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(wait)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                store = self._home.store.worker()
                try:
                    if store.read(lambda tx: tx.witnesses.any()):
                        submit(self._home, store, timeout=self._timeout)
                finally:
                    store.close()
            except Exception:  # a witness pass must never take the server down
                log.exception("witness submission failed")
            self.passes += 1


_SUBMITTERS: dict[int, Submitter] = {}
_SUBMITTERS_LOCK = threading.Lock()


def submitter_for(home: Home) -> Submitter:
    """The one background submitter of an open home (made on first use; see
    :func:`stop_submitter`)."""
    with _SUBMITTERS_LOCK:
        found = _SUBMITTERS.get(id(home))
        if found is None:
            found = _SUBMITTERS[id(home)] = Submitter(home)
        return found


def kick(home: Home, tx: Tx) -> None:
    """Have the home's submitter run a pass soon, if any witness is configured (never blocks
    on a witness: one indexed probe in ``tx``, then an event)."""
    if tx.witnesses.any():
        submitter_for(home).kick()


def stop_submitter(home: Home) -> Callable[[], Awaitable[None]]:
    """A shutdown hook that stops the home's submitter, if it started."""

    async def hook() -> None:
        with _SUBMITTERS_LOCK:
            found = _SUBMITTERS.pop(id(home), None)
        if found is not None:
            await asyncio.to_thread(found.stop)

    return hook


async def checkpoint_witnessed(home: Home, *, timeout: float = TIMEOUT) -> CheckpointOut:
    """The owner's on-demand checkpoint: sign (if the ledger grew), submit it to the
    witnesses and wait for them (each at most ``timeout``), return it with every cosignature
    gathered."""
    signed = await checkpoint(home)
    if not await home.read(lambda tx: tx.witnesses.any()):
        return signed
    await asyncio.to_thread(submit_once, home, timeout)
    return await checkpoint(home)


def submit_once(home: Home, timeout: float = TIMEOUT) -> list[Submission]:
    """:func:`submit` on a connection of its own (blocking; for a worker thread)."""
    store = home.store.worker()
    try:
        return submit(home, store, timeout=timeout)
    finally:
        store.close()
