"""What the console's pages compute: keyset pages newest first, each entry's signature and
inclusion status, intent/outcome pairs, the overview's counts."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from consolehelp import mail_server
from mcp import Client

from charter.console import data
from charter.errors import InvalidInput
from charter.evidence.entries import Entry
from charter.home import Home
from charter.testing import FrozenClock, make_home, raw_tx
from charter.tools import identity, tlog


@pytest.fixture
async def home(tmp_path: Path, clock: FrozenClock) -> Any:
    h = await make_home(tmp_path / "home", clock=clock)
    await identity.add_agent(h, "clerk", scopes=["email:send"])
    yield h
    await h.close()


async def mail(home: Home, n: int) -> None:
    acted: list[str] = []
    async with Client(await mail_server(home, acted), mode="legacy") as client:
        for i in range(n):
            result = await client.call_tool("test_mail", {"to": f"u{i}@example.com", "body": "x"})
            assert not result.is_error


async def test_pages_are_newest_first_and_cover_the_ledger_once(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    await mail(home, 12)
    monkeypatch.setattr(data, "PAGE_SIZE", 5)
    size = raw_tx(home).ledger.head()[0]
    seen: list[int] = []
    before = None
    while True:
        view = await data.ledger_page(home, data.Filters(), before)
        seen += [r.seq for r in view.rows]
        if view.next_before is None:
            break
        before = view.next_before
    assert seen == list(range(size - 1, -1, -1))
    clerk = await data.ledger_page(home, data.Filters(agent="clerk", outcome="ok"), None)
    assert clerk.rows and {(r.agent, r.outcome, r.phase) for r in clerk.rows} == {
        ("clerk", "ok", "outcome")
    }


async def test_intent_and_outcome_are_linked_both_ways(home: Home) -> None:
    await mail(home, 1)
    view = await data.ledger_page(home, data.Filters(agent="clerk"), None)
    by_phase = {r.phase: r for r in view.rows}
    assert by_phase["intent"].partner == by_phase["outcome"].seq
    assert by_phase["outcome"].partner == by_phase["intent"].seq


async def test_signature_and_inclusion_status_are_checked_not_assumed(home: Home) -> None:
    await mail(home, 2)
    checkpoint = await tlog.checkpoint(home)
    await identity.add_agent(home, "late", scopes=[])  # entries after the checkpoint
    view = await data.ledger_page(home, data.Filters(), None)
    assert {r.signature for r in view.rows} == {"valid"}
    covered = {r.inclusion for r in view.rows if r.seq < checkpoint.size}
    assert covered == {f"proved in checkpoint {checkpoint.size}"}
    assert {r.inclusion for r in view.rows if r.seq >= checkpoint.size} == {"not yet checkpointed"}
    # A changed field breaks the signature; an unknown signer is named as such.
    entry = Entry.from_body(raw_tx(home).queries.get_body(view.rows[-1].seq) or b"")
    keys, _ = await home.read(lambda tx: data._keys(home, tx))
    forged = dataclasses.replace(entry, fields=entry.fields | {"action": "forged.action"})
    assert data.signature_status(entry, keys) == "valid"
    assert data.signature_status(forged, keys) == "INVALID"
    assert data.signature_status(entry, {}) == "unknown key"


async def test_bad_filters_are_one_line_errors(home: Home) -> None:
    for filters in (
        data.Filters(agent="nobody"),
        data.Filters(outcome="maybe"),
        data.Filters(since="yesterday"),
    ):
        with pytest.raises(InvalidInput):
            await data.ledger_page(home, filters, None)


async def test_the_overview_counts_calls_per_agent_this_hour(home: Home) -> None:
    await mail(home, 3)
    o = await data.overview(home)
    assert [r.info.name for r in o.agents] == ["clerk"]
    assert o.agents[0].last_activity is not None
    assert o.series["clerk"][-1] == 3 and sum(o.series["clerk"]) == 3
    assert o.verification.size == raw_tx(home).ledger.head()[0]
