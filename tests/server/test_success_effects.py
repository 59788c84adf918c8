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
async def test_a_token_row_is_committed_in_its_outcome_transaction(home: Home, mode: str) -> None:
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
    # The outcome's transaction: BEGIN, ..., the token's row, the outcome entry, COMMIT.
    last_begin = max(i for i, s in enumerate(statements) if s.startswith("BEGIN IMMEDIATE"))
    txn = statements[last_begin:]
    insert_token = next(i for i, s in enumerate(txn) if s.startswith("INSERT INTO tokens"))
    insert_entry = next(i for i, s in enumerate(txn) if s.startswith("INSERT INTO ledger"))
    assert insert_token < insert_entry < txn.index("COMMIT")
    assert "'outcome'" in txn[insert_entry]


async def test_a_token_whose_outcome_was_not_recorded_never_verifies(
    home: Home, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await identity.update_agent(home, "alpha", scopes=["audit:read", "token:issue"])
    signed: list[str] = []
    real_sign = tokens.sign

    async def sign_then_revoke(h: Home, request: tokens.TokenRequest) -> tokens.IssuedToken:
        issued = await real_sign(h, request)
        signed.append(issued.token)
        await identity.revoke_agent(home, "alpha", reason="race")  # before the outcome commits
        return issued

    # What the plan's act calls (``tokens.issue`` is the function, not the module).
    monkeypatch.setattr(
        importlib.import_module("charter.tools.tokens.issue"), "sign", sign_then_revoke
    )
    async with Client(await server_for(home, "alpha"), mode=mode) as client:
        result = await client.call_tool("token_issue", {"audience": AUDIENCE})
    assert result.is_error
    rows = raw_db(home).execute("SELECT count(*) FROM tokens").fetchone()[0]
    assert rows == 0  # the refused outcome took the token's row with it
    with pytest.raises(TokenInvalid):
        await tokens.verify(home, signed[0], audience=AUDIENCE)
