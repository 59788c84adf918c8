"""State changes committed with a call's ``ok`` outcome entry (a plan's success effects).

A token's row is the case that matters: the token verifies only while its row exists, so
the row must exist exactly when the ledger records that the token was issued.
"""

from __future__ import annotations

import importlib
import sqlite3
from typing import Any

import pytest
from mcp import Client
from mcp.types import ToolAnnotations

from charter.errors import TokenInvalid
from charter.evidence.entries import Entry
from charter.home import Home
from charter.server import calls
from charter.server.app import CharterServer
from charter.server.calls import current_call
from charter.storage.ports import Tx
from charter.storage.sqlite import SqliteStore
from charter.testing import conn_of, other_db, raw_db, raw_tx, server_for
from charter.tools import audit, identity, tokens
from charter.tools.plan import Plan

ACTS = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
AUDIENCE = "https://api.example.com"


def _marks(home: Home) -> list[str]:
    return [
        row[0] for row in raw_db(home).execute("SELECT value FROM meta WHERE key LIKE 'mark:%'")
    ]


async def _server(home: Home) -> CharterServer:
    """alpha's server plus a test tool that writes a ``meta`` row on success."""
    server = await server_for(home, "alpha")

    @server.charter_tool("test_mark", annotations=ACTS, visible_args=("how",))
    async def test_mark(how: str) -> str:
        """Test only: commit an intent, then a mark that lands with the ok outcome."""

        def mark(tx: Tx) -> object:
            conn = conn_of(tx)
            return conn.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (f"mark:{how}", how))

        def broken(tx: Tx) -> object:
            conn = conn_of(tx)
            return conn.execute("INSERT INTO no_such_table VALUES (1)")

        async def act(_intent: Entry) -> str:
            if how == "revoked meanwhile":
                pg = home.settings.database_url is not None  # the owner, from another process
                other = other_db(home) if pg else sqlite3.connect(home.layout.db)
                other.execute("UPDATE agents SET status = 'revoked' WHERE name = 'alpha'")
                other.commit()
                other.close()
            return "done"

        plan = Plan(
            act=act,
            success_effects=lambda _: (mark, broken) if how == "effect fails" else (mark,),
            # "unrecordable": the outcome entry cannot be canonicalized (a float)
            outcome=lambda _: {"ratio": 0.5} if how == "unrecordable" else {},
        )
        result = await current_call().run(plan)
        if how == "tool fails":
            raise RuntimeError("after the plan ran")
        return result

    return server


def _outcomes(home: Home) -> list[dict[str, Any]]:
    bodies = [Entry.from_body(b).fields for b in raw_tx(home).ledger.iter_bodies()]
    return [f for f in bodies if f["action"] == "test.mark" and f["phase"] != "intent"]


async def test_the_effect_commits_with_the_ok_outcome(home: Home, mode: str) -> None:
    async with Client(await _server(home), mode=mode) as client:
        result = await client.call_tool("test_mark", {"how": "ok"})
    assert not result.is_error
    assert _marks(home) == ["ok"]
    assert [o["outcome"] for o in _outcomes(home)] == ["ok"]
    await audit.verify_home(home)


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("unrecordable", []),  # no outcome entry: the effect is not applied either
        ("tool fails", ["error"]),
        ("revoked meanwhile", ["denied"]),  # the log key records the refusal instead
        ("effect fails", []),  # rolled back with the entry; the first effect too
    ],
)
async def test_no_ok_outcome_no_effect(
    home: Home, mode: str, how: str, expected: list[str]
) -> None:
    async with Client(await _server(home), mode=mode) as client:
        result = await client.call_tool("test_mark", {"how": how})
    assert result.is_error
    assert _marks(home) == []
    assert [o["outcome"] for o in _outcomes(home)] == expected
    await audit.verify_home(home)


@pytest.mark.sqlite_only("traces the writer's statements with sqlite3's set_trace_callback")
async def test_a_token_is_issued_in_one_transaction_with_its_intent_and_outcome(
    home: Home, mode: str
) -> None:
    """token_issue is a local effect: intent, token row and outcome share one commit."""
    await identity.update_agent(home, "alpha", scopes=["audit:read", "token:issue"])
    server = await server_for(home, "alpha")
    statements: list[str] = []
    async with Client(server, mode=mode) as client:
        writer_store = server.deps.writer.store
        assert isinstance(writer_store, SqliteStore)
        await writer_store.run(lambda conn: conn.set_trace_callback(statements.append))
        result = await client.call_tool("token_issue", {"audience": AUDIENCE})
    assert not result.is_error
    token = result.structured_content["token"]
    await tokens.verify(home, token, audience=AUDIENCE)
    begin = max(i for i, s in enumerate(statements) if s.startswith("BEGIN IMMEDIATE"))
    traced = statements[begin : statements.index("COMMIT", begin) + 1]
    # SQLite traces a statement a second time when a trigger of it runs (ledger_links)
    txn = [s for i, s in enumerate(traced) if i == 0 or s != traced[i - 1]]
    ledger = [i for i, s in enumerate(txn) if s.startswith("INSERT INTO ledger")]
    insert_token = next(i for i, s in enumerate(txn) if s.startswith("INSERT INTO tokens"))
    assert len(ledger) == 2, txn
    assert "'intent'" in txn[ledger[0]] and "'outcome'" in txn[ledger[1]]
    assert ledger[0] < insert_token < ledger[1] < len(txn) - 1
    entries = [f for f in _fields(home) if f["action"] == "token.issue"]
    assert [e["phase"] for e in entries] == ["intent", "outcome"]
    # The outcome's result hash is the hash of what the client received.
    assert entries[1]["result_hash"] == calls.hash_value(result.structured_content)


async def test_a_token_whose_intent_and_outcome_were_not_recorded_never_verifies(
    home: Home, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await identity.update_agent(home, "alpha", scopes=["audit:read", "token:issue"])
    signed: list[str] = []

    def record_then_fail(tx: Tx, request: tokens.TokenRequest, issued: Any) -> None:
        signed.append(issued.token)
        raise RuntimeError("the disk filled up")  # after the token was signed

    monkeypatch.setattr(
        importlib.import_module("charter.tools.tokens.issue"), "record", record_then_fail
    )
    async with Client(await server_for(home, "alpha"), mode=mode) as client:
        result = await client.call_tool("token_issue", {"audience": AUDIENCE})
    assert result.is_error
    assert "could not be recorded" in result.content[0].text  # type: ignore[union-attr]
    assert signed[0] not in str(result.content)
    assert raw_db(home).execute("SELECT count(*) FROM tokens").fetchone()[0] == 0
    with pytest.raises(TokenInvalid):
        await tokens.verify(home, signed[0], audience=AUDIENCE)
    # No intent without its outcome: the failed unit left one `call` entry, nothing else.
    entries = [f for f in _fields(home) if f["action"] == "token.issue"]
    assert [(e["phase"], e["outcome"]) for e in entries] == [("call", "error")]
    await audit.verify_home(home)


async def test_a_revoked_agent_is_refused_at_its_intent_once(home: Home, mode: str) -> None:
    """token_issue skips the gate's pre-check: the intent's own check refuses, and the call
    is recorded by one denial (log key), not a second one for its closing entry."""
    await identity.update_agent(home, "alpha", scopes=["audit:read", "token:issue"])
    server = await server_for(home, "alpha")
    await identity.revoke_agent(home, "alpha", reason="left the team")
    async with Client(server, mode=mode) as client:
        result = await client.call_tool("token_issue", {"audience": AUDIENCE})
    assert result.is_error
    assert "revoked" in result.content[0].text  # type: ignore[union-attr]
    assert raw_db(home).execute("SELECT count(*) FROM tokens").fetchone()[0] == 0
    entries = [f for f in _fields(home) if f["action"] == "token.issue"]
    assert [(e["phase"], e["outcome"], e["kid"]) for e in entries] == [
        ("call", "denied", home.log_key.kid)
    ]
    await audit.verify_home(home)


def _fields(home: Home) -> list[dict[str, Any]]:
    return [Entry.from_body(b).fields for b in raw_tx(home).ledger.iter_bodies()]
