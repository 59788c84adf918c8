"""The stateless checks of one ledger entry (AUDIT-FORMAT §7, steps 1-3 and the signature),
and running them in worker processes while the verifier replays the chain in order.

:mod:`charter.evidence.verifier` replays; this module only parses and checks signatures, so
a worker process needs nothing else.
"""

from __future__ import annotations

import collections
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import orjson

from charter.errors import LedgerIntegrityError
from charter.evidence.canonical import canonical_json, parse_canonical
from charter.evidence.entries import FORMAT_VERSION, OUTCOMES, PHASES, SIGNING_PREFIX
from charter.evidence.jwk import b64url_decode, public_key_from_jwk, thumbprint, verify_signature

if TYPE_CHECKING:
    from concurrent.futures import Future

ENTRY_FIELDS = frozenset(
    {
        "v", "seq", "ts", "prev", "actor", "owner", "charter", "session", "call", "phase",
        "action", "args", "args_hash", "outcome", "reason", "result_hash", "kid", "sig",
    }
)  # fmt: skip
#: Entries read ahead before deciding to start worker processes (fewer: checked in process).
PARALLEL_MIN = 16_384
#: Entries per task sent to a worker process.
PARALLEL_CHUNK = 2_048

# What a worker found for an entry that parsed (a ``str`` is the reason it did not).
SIG_UNCHECKED, SIG_GOOD, SIG_BAD, SIG_NOT_B64 = 0, 1, 2, 3
Verdict = str | int


#: Replays one entry given its worker verdict (None: not checked by a worker).
Step = Callable[[bytes, "Verdict | None"], None]


def signed_bytes(entry: dict[str, Any], body: bytes) -> bytes:
    """``canonical(entry without "sig")``, cut out of the entry's canonical ``body``.

    Members are serialized independently in sorted key order, so removing the ``sig``
    member from the canonical bytes gives the canonical bytes without it. Only ``ts`` (a
    string) and ``v`` (an integer) follow ``sig``, so its last occurrence is the top-level
    member. ``body`` must have passed `parse`.
    """
    member = b',"sig":' + orjson.dumps(entry["sig"])
    start = body.rfind(member)
    end = start + len(member)
    if start < 0 or not body.startswith(b',"ts":', end):  # never, for a parsed entry
        return canonical_json({k: v for k, v in entry.items() if k != "sig"})
    return body[:start] + body[end:]


def precheck(body: bytes, keys: dict[str, bytes]) -> Verdict:
    """The stateless checks of one entry (run in a worker): a ``_parse`` failure reason, or
    the signature's verdict under ``keys[kid]`` (``SIG_UNCHECKED`` if the kid is unknown)."""
    try:
        entry = parse(0, body)  # the reasons _parse gives do not depend on seq
    except LedgerIntegrityError as exc:
        return exc.reason
    key = keys.get(entry["kid"])
    if key is None:
        return SIG_UNCHECKED
    try:
        sig = b64url_decode(entry["sig"])
    except ValueError:
        return SIG_NOT_B64
    ok = verify_signature(key, SIGNING_PREFIX + signed_bytes(entry, body), sig)
    return SIG_GOOD if ok else SIG_BAD


def precheck_chunk(bodies: list[bytes], keys: dict[str, bytes]) -> list[Verdict]:
    return [precheck(body, keys) for body in bodies]


def learn_keys(bodies: list[bytes], keys: dict[str, bytes]) -> None:
    """Add the agent keys of any charters in ``bodies`` to ``keys``, by thumbprint.

    These are only candidates (the entries are not verified yet): a worker's verdict is used
    only when the replay finds that the key it checked is the entry's authorized signer.
    """
    for body in bodies:
        delegated = b'"type":"delegation"' in body
        if b'"type":"charter"' not in body and not delegated:
            continue
        try:
            args = json.loads(body)["args"]
            jwk = (args["details"] if delegated else args)["charter"]["agent"]["key"]
            key = public_key_from_jwk(jwk)
        except (ValueError, KeyError, TypeError):
            continue
        keys.setdefault(thumbprint(key), key)


def verify_parallel(
    step: Step, keys: dict[str, bytes], bodies: Iterator[bytes], workers: int
) -> None:
    """Workers run the stateless checks chunk by chunk; ``step`` replays in order here.

    ``keys`` (kid -> public key) grows with every agent key a chunk's charters name.
    """
    head = list(itertools.islice(bodies, PARALLEL_MIN + 1))
    if len(head) <= PARALLEL_MIN:  # not worth starting processes
        for body in head:
            step(body, None)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    chunks = itertools.chain(_chunks(iter(head)), _chunks(bodies))
    # NOTE: fork only a single-threaded process (a threaded server must spawn), and fork
    # where possible: it starts at once and does not re-import the caller's __main__.
    single = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if single else "spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context)
    pending: collections.deque[tuple[list[bytes], Future[list[Verdict]]]] = collections.deque()
    try:
        for chunk in chunks:
            learn_keys(chunk, keys)
            pending.append((chunk, pool.submit(precheck_chunk, chunk, dict(keys))))
            if len(pending) >= 2 * workers:
                _replay_chunk(step, *pending.popleft())
        while pending:
            _replay_chunk(step, *pending.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _chunks(bodies: Iterator[bytes]) -> Iterator[list[bytes]]:
    while chunk := list(itertools.islice(bodies, PARALLEL_CHUNK)):
        yield chunk


def _replay_chunk(step: Step, chunk: list[bytes], verdicts: Future[list[Verdict]]) -> None:
    for body, verdict in zip(chunk, verdicts.result(), strict=True):
        step(body, verdict)


def fail(seq: int | None, reason: str) -> NoReturn:
    raise LedgerIntegrityError(seq, reason)


def parse(seq: int, body: bytes) -> dict[str, Any]:
    entry = parse_canonical(body)
    if not isinstance(entry, dict) or entry.keys() != ENTRY_FIELDS:
        entry = parse_slowly(seq, body)  # says exactly what is wrong, or agrees
    if entry["v"] != FORMAT_VERSION:
        fail(seq, f"unsupported format version {entry['v']!r}")
    for name in ("ts", "prev", "actor", "owner", "phase", "action", "kid", "sig"):
        if not isinstance(entry[name], str):
            fail(seq, f"field {name!r} must be a string")
    if not isinstance(entry["args"], dict):
        fail(seq, "field 'args' must be an object")
    if entry["phase"] not in PHASES:
        fail(seq, f"unknown phase {entry['phase']!r}")
    if entry["outcome"] is not None and entry["outcome"] not in OUTCOMES:
        fail(seq, f"unknown outcome {entry['outcome']!r}")
    return entry


def parse_slowly(seq: int, body: bytes) -> dict[str, Any]:
    """The first checks of `parse` one by one, with the standard library's parser."""
    try:
        entry = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        fail(seq, "entry is not valid UTF-8 JSON")
    if not isinstance(entry, dict):
        fail(seq, "entry is not a JSON object")
    if set(entry) != ENTRY_FIELDS:
        missing, extra = ENTRY_FIELDS - set(entry), set(entry) - ENTRY_FIELDS
        fail(seq, f"entry fields are wrong (missing {sorted(missing)}, unexpected {sorted(extra)})")
    try:
        canonical = canonical_json(entry)
    except ValueError as exc:
        fail(seq, f"entry cannot be canonicalized: {exc}")
    if canonical != body:
        fail(seq, "entry bytes are not canonical JSON (RFC 8785)")
    return entry
