"""The storage ports' contract (charter/storage/ports.py), run over every backend.

Each test drives a home's :class:`~charter.storage.ports.Store` only through the port: units
of work, appends, the worker handle. Every test runs on the SQLite file and on a fresh
PostgreSQL database (``pg_database``: a private cluster, tests/support/pgfixtures.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from charter.config import Settings
from charter.errors import AgentRevoked, CharterError, InvalidInput, LedgerUnavailable
from charter.evidence.entries import Entry
from charter.home import Home
from charter.storage.ports import Draft, Store, Tx
from charter.testing import FrozenClock, agent_draft, make_home
from charter.tools import audit, identity

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_home(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> Callable[..., Awaitable[Home]]:
    """Makes a new home on ``backend`` (PostgreSQL: on a fresh database of its own)."""
    url = str(request.getfixturevalue("pg_database")) if backend == "postgresql" else None

    async def make(clock: FrozenClock | None = None) -> Home:
        if url is None:
            return await make_home(tmp_path / "home", clock=clock)
        settings = Settings(home=tmp_path / "home", database_url=url)
        return await Home.init(settings, owner="owner@example.com", clock=clock, cheap_kdf=True)

    return make


@pytest.fixture
async def home(clock: FrozenClock, new_home: Callable[..., Awaitable[Home]]) -> AsyncIterator[Home]:
    """A home on ``backend`` with agent ``alpha``."""
    h = await new_home(clock)
    await identity.add_agent(h, "alpha", scopes=["audit:read"])
    yield h
    await h.close()


def _draft(agent: identity.AgentContext, i: int) -> Draft:
    return agent_draft(
        agent,
        action="identity.whoami",
        session="s",
        call=secrets.token_hex(8),
        args={"i": i},
        args_hash=hashlib.sha256(str(i).encode()).hexdigest(),
        outcome="ok",
        require_agent=agent.name,
    )


async def test_a_write_is_all_or_nothing(home: Home) -> None:
    store = home.store

    def half_then_fail(tx: Tx) -> None:
        tx.meta.set("contract:first", "1")
        raise InvalidInput("refused halfway")

    with pytest.raises(InvalidInput, match="refused halfway"):  # the unit's own error, typed
        await store.write(half_then_fail)
    assert await store.read(lambda tx: tx.meta.get("contract:first")) is None
    await store.write(lambda tx: tx.meta.set("contract:second", "2"))
    assert await store.read(lambda tx: tx.meta.get("contract:second")) == "2"


async def test_a_committed_write_is_seen_by_another_store(home: Home) -> None:
    await home.store.write(lambda tx: tx.meta.set("contract:seen", "yes"))
    async with await Home.open(home.settings) as other:
        assert await other.store.read(lambda tx: tx.meta.get("contract:seen")) == "yes"


async def test_units_of_work_never_run_on_the_event_loop_thread(home: Home) -> None:
    loop_thread = threading.get_ident()
    seen = [
        await home.store.read(lambda tx: threading.get_ident()),
        await home.store.write(lambda tx: threading.get_ident()),
        await home.store.autocommit(lambda tx: threading.get_ident()),
    ]
    assert loop_thread not in seen


async def test_the_loop_keeps_serving_while_a_unit_of_work_runs(home: Home) -> None:
    release = threading.Event()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while not release.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.ensure_future(ticker())
    slow = asyncio.ensure_future(home.store.read(lambda tx: release.wait(5)))
    await asyncio.sleep(0.3)
    assert not slow.done() and ticks >= 10  # a blocked loop would not tick
    release.set()
    assert await slow is True
    await ticking


async def test_appends_form_one_chain_in_one_order(home: Home) -> None:
    alpha = await identity.load_agent(home, "alpha")
    size = await home.store.read(lambda tx: tx.queries.size())
    batches = [[_draft(alpha, 10 * b + i) for i in range(3)] for b in range(4)]
    results = await asyncio.gather(*(home.store.append(batch) for batch in batches))
    entries = [e for batch in results for e in batch]
    assert all(isinstance(e, Entry) for e in entries)
    seqs = sorted(e.seq for e in entries if isinstance(e, Entry))
    assert seqs == list(range(size, size + 12))
    assert (await audit.verify_home(home)).size == size + 12


async def test_two_stores_on_one_database_never_fork(home: Home) -> None:
    alpha = await identity.load_agent(home, "alpha")
    size = await home.store.read(lambda tx: tx.queries.size())
    async with await Home.open(home.settings, clock=home.clock) as other:
        results = await asyncio.gather(
            *(s.append([_draft(alpha, i)]) for i in range(20) for s in (home.store, other.store))
        )
    seqs = sorted(r[0].seq for r in results if isinstance(r[0], Entry))
    assert seqs == list(range(size, size + 40))  # one total order, nothing lost
    assert (await audit.verify_home(home)).size == size + 40


async def test_an_effect_commits_with_its_entry_or_not_at_all(home: Home) -> None:
    alpha = await identity.load_agent(home, "alpha")

    def refuse(tx: Tx) -> None:
        tx.meta.set("contract:refused", "1")
        raise InvalidInput("the effect refuses")

    kept, refused = _draft(alpha, 1), _draft(alpha, 2)
    kept.effects = (lambda tx: tx.meta.set("contract:kept", "1"),)
    refused.effects = (refuse,)
    first, second = await home.store.append([kept, refused])
    assert isinstance(first, Entry)
    assert isinstance(second, InvalidInput)  # the effect's refusal, for that draft only
    keys = await home.store.read(
        lambda tx: (tx.meta.get("contract:kept"), tx.meta.get("contract:refused"))
    )
    assert keys == ("1", None)
    await audit.verify_home(home)


async def test_a_revoked_agent_is_refused_inside_the_append(home: Home) -> None:
    alpha = await identity.load_agent(home, "alpha")
    await identity.revoke_agent(home, "alpha", reason="contract")
    (result,) = await home.store.append([_draft(alpha, 1)])
    assert isinstance(result, AgentRevoked)
    last = await home.store.read(lambda tx: tx.ledger.get(tx.queries.size() - 1))
    assert last is not None and last.fields["outcome"] == "denied"
    assert last.fields["kid"] == home.log_key.kid  # the refusal is the log key's
    await audit.verify_home(home)


async def test_the_worker_handle_serves_a_plain_thread(home: Home) -> None:
    worker = home.store.worker()

    def in_thread() -> str | None:
        worker.write(lambda tx: tx.meta.set("contract:worker", "w"))
        return worker.read(lambda tx: tx.meta.get("contract:worker"))

    try:
        assert await asyncio.to_thread(in_thread) == "w"
    finally:
        worker.close()
    assert await home.store.read(lambda tx: tx.meta.get("contract:worker")) == "w"


async def test_a_closed_store_refuses_work_with_a_clear_error(
    new_home: Callable[..., Awaitable[Home]],
) -> None:
    h = await new_home()
    store: Store = h.store
    await h.close()
    with pytest.raises(LedgerUnavailable, match="closed"):
        await store.read(lambda tx: tx.meta.get("origin"))


async def test_an_unbound_store_refuses_to_append(
    new_home: Callable[..., Awaitable[Home]],
) -> None:
    from charter.storage.backends import open_store

    h = await new_home()
    await h.close()
    store = await open_store(h.settings)  # not bound to the ledger's identity
    try:
        with pytest.raises(CharterError, match="not bound"):
            await store.read(lambda tx: tx.ledger.head())
    finally:
        await store.close()
