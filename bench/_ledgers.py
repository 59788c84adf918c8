"""Throwaway Charter homes with ledgers of a given size, built through the real append path.

Large ledgers are built with group commit: ``home.store.append`` with batches of drafts (one
unit of work on the store's thread: ``Ledger.append``, one ``BEGIN IMMEDIATE … COMMIT``, one
fsync, per batch), exactly what ``LedgerWriter`` does under load. Each entry is an
agent-signed ``call`` entry like the ones a tool call writes.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from bench._common import scratch_dir
from charter.config import Settings
from charter.errors import CharterError
from charter.home import Home
from charter.testing import call_draft, make_home
from charter.tools import identity

AGENT = "bench"
#: A folder shared by the benchmark processes of one run, where built ledgers are kept.
SHARED_ENV = "CHARTER_BENCH_SHARED"
BATCH = 1000

_cache: dict[int, Path] = {}


#: The address of agent ``inbox``, to which ``bench`` may send (the local transport).
INBOX = "inbox@agents.example.com"


async def new_home(root: Path) -> Home:
    """A new home (system clock) with agent ``bench``: it may read its audit trail, get
    tokens for ``https://api.example.com`` and send email (10,000 an hour) to agent ``inbox``
    (:data:`INBOX`) through the local transport."""
    home = await make_home(root)
    await identity.add_agent(
        home,
        AGENT,
        scopes=["audit:read", "token:issue", f"email:send:{INBOX}"],
        audiences=["https://api.example.com"],
        policy={"email": {"address": "bench@agents.example.com", "rate_per_hour": 10_000}},
    )
    await identity.add_agent(home, "inbox", scopes=[], policy={"email": {"address": INBOX}})
    return home


async def create_home(root: Path) -> None:
    """Make :func:`new_home` at ``root`` and close it (for benchmarks that spawn servers)."""
    home = await new_home(root)
    await home.close()


async def open_home(root: Path) -> Home:
    """Open an existing home."""
    return await Home.open(Settings(home=root))


async def fill(home: Home, size: int, batch: int = BATCH) -> None:
    """Append agent entries in batches until the ledger holds at least ``size`` entries."""
    agent = await identity.load_agent(home, AGENT)
    session = secrets.token_hex(8)
    have, _ = await home.read(lambda tx: tx.ledger.head())
    while have < size:
        n = min(batch, size - have)
        done = await home.store.append([call_draft(agent, session, have + k) for k in range(n)])
        refused = [r for r in done if isinstance(r, CharterError)]
        if refused:
            raise refused[0]
        have += n


async def ledger_of(size: int) -> Path:
    """The root of a home whose ledger holds at least ``size`` entries (built once per run).

    Under ``python -m bench.run`` each benchmark runs in its own process; they share the
    ledgers through the run's folder (:data:`SHARED_ENV`).
    """
    if size not in _cache:
        shared = os.environ.get(SHARED_ENV)
        folder = Path(shared) / f"ledger-{size}" if shared else scratch_dir(f"ledger{size}")
        root, done = folder / "home", folder / "complete"
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # an interrupted build
            async with await new_home(root) as home:
                await fill(home, size)
            done.touch()
        _cache[size] = root
    return _cache[size]
