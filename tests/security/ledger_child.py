"""A child process that writes to a home's ledger, for the crash and concurrency tests.

    python ledger_child.py append HOME COUNT TAG   # COUNT appends through Ledger.append
    python ledger_child.py writer HOME TASKS       # LedgerWriter appends until killed

Both print ``ready`` once the home is open and wait for a line on stdin before writing, so
a test can start several at once. ``append`` prints ``done`` at the end; ``writer`` prints
``SEQ HASH`` for every append it has been told is durable (the acknowledgement a test
checks against the database after ``kill -9``).
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from pathlib import Path

from charter.config import Settings
from charter.evidence.canonical import canonical_json
from charter.home import Home
from charter.storage.ledger import Draft
from charter.storage.sqlite import SqliteStore
from charter.storage.writer import LedgerWriter
from charter.testing import raw_tx


def draft(home: Home, action: str, args: dict[str, object]) -> Draft:
    """An owner event (the test homes' owner keys have no passphrase)."""
    return Draft(
        actor=home.owner_id,
        owner=home.owner_id,
        action=action,
        phase="event",
        signer=home.owner_key(),
        args=args,
        args_hash=hashlib.sha256(canonical_json(args)).hexdigest(),
        outcome="ok",
    )


def append(home: Home, count: int, tag: str) -> None:
    """Append ``count`` events in batches of 1-3 drafts, each batch one transaction."""
    i = 0
    while i < count:
        size = min(1 + i % 3, count - i)
        batch = [draft(home, "test.append", {"writer": tag, "i": i + k}) for k in range(size)]
        for result in raw_tx(home).ledger.append(batch):
            if isinstance(result, Exception):
                raise result
        i += size
    print("done", flush=True)


async def writer(home: Home, tasks: int) -> None:
    """``tasks`` coroutines appending through one LedgerWriter (group commit) forever."""
    store = await SqliteStore.open(home.layout.db)
    store.bind(home.identity, home.clock, home.log_key)
    w = LedgerWriter(store)
    out = sys.stdout

    async def loop(n: int) -> None:
        i = 0
        while True:
            entry = await w.append(draft(home, "test.writer", {"task": n, "i": i}))
            out.write(f"{entry.seq} {entry.hash}\n")
            out.flush()
            i += 1

    await asyncio.gather(*(loop(n) for n in range(tasks)))


async def main() -> None:
    """Parse argv, open the home, signal readiness, wait for go, write."""
    mode, root = sys.argv[1], Path(sys.argv[2])
    home = await Home.open(Settings(home=root))
    print("ready", flush=True)
    sys.stdin.readline()
    if mode == "append":
        append(home, int(sys.argv[3]), sys.argv[4])
    elif mode == "writer":
        await writer(home, int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    asyncio.run(main())
