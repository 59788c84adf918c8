"""The gate runs a side-effecting service's plan (``Call.run``) in one order.

approvals -> intent (with its effects) -> act -> outcome facts and success effects. Each
test drives a real MCP session against a test tool whose plan records what happened, and
checks the ledger and the database afterwards.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from mcp import Client
from mcp.types import ToolAnnotations

from charter.errors import ScopeDenied, ServiceError
from charter.evidence.entries import Entry
from charter.home import Home
from charter.server.app import CharterServer
from charter.server.calls import current_call
from charter.storage.ports import Tx
from charter.testing import conn_of, other_db, raw_db, raw_tx, server_for
from charter.tools import approvals, audit, identity
from charter.tools.plan import Plan

ACTS = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)


def _meta(home: Home, prefix: str) -> list[str]:
    rows = raw_db(home).execute("SELECT value FROM meta WHERE key LIKE ?", (f"{prefix}:%",))
    return [row[0] for row in rows]


def _calls(home: Home) -> list[tuple[str, str | None, dict[str, Any]]]:
    bodies = [Entry.from_body(b).fields for b in raw_tx(home).ledger.iter_bodies()]
    return [(f["phase"], f["outcome"], f["args"]) for f in bodies if f["action"] == "test.plan"]


async def _serve(home: Home, agent: str, acted: list[dict[str, Any]]) -> CharterServer:
    """``agent``'s server plus a tool running a plan; ``acted`` gets what its act saw."""
    server = await server_for(home, agent)

    @server.charter_tool("test_plan", annotations=ACTS, visible_args=("how",))
    async def test_plan(how: str) -> dict[str, int]:
        """Test only: run a plan whose steps write ``meta`` rows."""
        call = current_call()
        call.require("token:issue")

        def reserve(tx: Tx) -> object:
            conn = conn_of(tx)
            if how == "intent effect refuses":
                raise ScopeDenied("refused by the intent's effect")
            return conn.execute("INSERT INTO meta(key, value) VALUES ('reserved:x', ?)", (how,))

        def mark(tx: Tx) -> object:
            conn = conn_of(tx)
            return conn.execute("INSERT INTO meta(key, value) VALUES ('done:x', ?)", (how,))

        async def act(intent: Entry) -> dict[str, int]:
            # What another process sees now: the intent must already be durable.
            pg = home.settings.database_url is not None
            other = other_db(home) if pg else sqlite3.connect(home.layout.db)
            try:
                durable = other.execute(
                    "SELECT count(*) FROM ledger WHERE seq = ? AND phase = 'intent'",
                    (intent.seq,),
                ).fetchone()[0]
                reserved = other.execute(
                    "SELECT count(*) FROM meta WHERE key = 'reserved:x'"
                ).fetchone()[0]
            finally:
                other.close()
            acted.append({"seq": intent.seq, "durable": durable, "reserved": reserved})
            if how == "act fails":
                raise ServiceError("the remote side failed")
            return {"answer": 42}

        plan = Plan(
            details={"resolved": how.upper()},
            act=act,
            intent_effects=(reserve,),
            success_effects=lambda _result: (mark,),
            outcome=lambda result: {"answer": result["answer"]},
        )
        result = await call.run(plan)
        if how == "tool fails after the act":
            raise RuntimeError("the tool failed after its plan ran")
        return result

    return server


@pytest.fixture
async def agent(home: Home) -> str:
    await identity.add_agent(home, "doer", scopes=["token:issue", "audit:read"])
    return "doer"


async def test_the_plan_runs_in_order_and_lands_with_the_ok_outcome(
    home: Home, agent: str, mode: str
) -> None:
    acted: list[dict[str, Any]] = []
    async with Client(await _serve(home, agent, acted), mode=mode) as client:
        result = await client.call_tool("test_plan", {"how": "ok"})
    assert not result.is_error
    (intent, outcome) = _calls(home)
    assert intent[:2] == ("intent", None)
    assert intent[2]["details"] == {"resolved": "OK"}
    # The act ran once, after its intent (and the intent's effect) was committed.
    assert acted == [{"seq": acted[0]["seq"], "durable": 1, "reserved": 1}]
    assert outcome[:2] == ("outcome", "ok")
    assert outcome[2]["details"] == {"answer": 42}  # the outcome facts, from the result
    assert _meta(home, "reserved") == ["ok"] and _meta(home, "done") == ["ok"]
    await audit.verify_home(home)


@pytest.mark.parametrize(
    ("how", "message", "facts"),
    [
        ("act fails", "the remote side failed", None),  # no result, so no outcome facts
        ("tool fails after the act", "internal error", {"answer": 42}),  # what the act did
    ],
)
async def test_a_failure_after_the_intent_records_error_and_no_success_effect(
    home: Home, agent: str, mode: str, how: str, message: str, facts: dict[str, int] | None
) -> None:
    acted: list[dict[str, Any]] = []
    async with Client(await _serve(home, agent, acted), mode=mode) as client:
        result = await client.call_tool("test_plan", {"how": how})
    assert result.is_error and message in str(result.content)
    assert len(acted) == 1
    assert [(phase, outcome) for phase, outcome, _ in _calls(home)] == [
        ("intent", None),
        ("outcome", "error"),
    ]
    assert _calls(home)[1][2].get("details") == facts
    assert _meta(home, "reserved") == [how]  # it exists exactly with its intent
    assert _meta(home, "done") == []  # success effects only with an ok outcome
    await audit.verify_home(home)


async def test_an_intent_effect_that_refuses_means_no_intent_and_no_act(
    home: Home, agent: str, mode: str
) -> None:
    acted: list[dict[str, Any]] = []
    async with Client(await _serve(home, agent, acted), mode=mode) as client:
        result = await client.call_tool("test_plan", {"how": "intent effect refuses"})
    assert result.is_error and "refused by the intent's effect" in str(result.content)
    assert acted == []
    assert [(phase, outcome) for phase, outcome, _ in _calls(home)] == [("call", "denied")]
    assert _meta(home, "reserved") == [] and _meta(home, "done") == []
    await audit.verify_home(home)


async def test_approval_comes_before_the_intent_and_the_act(home: Home, mode: str) -> None:
    await identity.add_agent(
        home,
        "careful",
        scopes=["token:issue"],
        policy={"approvals": [{"pattern": "token:issue", "mode": "owner"}]},
    )
    acted: list[dict[str, Any]] = []
    async with Client(await _serve(home, "careful", acted), mode=mode) as client:
        pending = await client.call_tool("test_plan", {"how": "ok"})
        assert pending.is_error and "approval pending" in str(pending.content)
        assert acted == [] and _meta(home, "reserved") == []
        assert [(p, o) for p, o, _ in _calls(home)] == [("call", "denied")]
        (request,) = await approvals.list_pending(home)
        await approvals.approve(home, request.id)
        done = await client.call_tool("test_plan", {"how": "ok"})
    assert not done.is_error
    intent = _calls(home)[1]
    assert intent[0] == "intent"
    assert intent[2]["details"]["resolved"] == "OK" and "approval" in intent[2]["details"]
    assert len(acted) == 1 and acted[0]["durable"] == 1
    await audit.verify_home(home)
