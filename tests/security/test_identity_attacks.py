"""Identity attacks and ledger tampering (SECURITY.md, "A prompt-injected agent" and "An admin").

An agent tries to act as another, widen its scopes, or read what is not its own; an admin
edits the database behind Charter's back. Every attempt is refused and recorded, or, for an
admin holding only the database, detected by ``audit verify`` at the exact entry.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import rfc8785
import sechelp
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import TextContent

from charter.cli import cli
from charter.errors import ConfigError, LedgerIntegrityError
from charter.evidence.auditor import Trust
from charter.evidence.canonical import canonical_json
from charter.evidence.entries import SIGNING_PREFIX, Entry, sign_entry
from charter.evidence.jwk import b64url
from charter.home import Home
from charter.keys import KeyPair
from charter.keys.files import read_key_file
from charter.storage.ledger import Draft
from charter.testing import FrozenClock, admin_db, make_home, raw_db, raw_tx, server_for
from charter.tools import audit, identity, tlog, tokens
from charter.tools import vault as vault_tools

CANARY = "canary-5e1b-beta-only-9a7c3f"
ALPHA_SECRET = "alpha-public-value-2d4b"
#: Arguments an agent might use to claim another identity; none may have any effect.
IMPERSONATION_KEYS = ("agent", "actor", "agent_id", "agent_name", "as", "on_behalf_of", "sub")


@pytest.fixture
async def site(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[Home]:
    """Agents alpha and beta with their own secrets; beta's is the canary."""
    home = await make_home(tmp_path / "home", clock=clock)
    await identity.add_agent(
        home,
        "alpha",
        scopes=["audit:read", "token:issue", "secret:read:ALPHA_*", "secret:use:ALPHA_*"],
        audiences=["https://api.example.com"],
    )
    await identity.add_agent(
        home, "beta", scopes=["audit:read", "secret:read:BETA_*", "secret:use:BETA_*"]
    )
    await vault_tools.set_secret(
        home, "ALPHA_KEY", ALPHA_SECRET.encode(), allowed_hosts=["127.0.0.1"]
    )
    await vault_tools.set_secret(home, "BETA_KEY", CANARY.encode(), allowed_hosts=["127.0.0.1"])
    yield home
    await home.close()


def text(result: Any) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


async def agent_id(home: Home, name: str) -> str:
    return (await identity.get_agent(home, name)).agent_id


def new_entries(home: Home, since: int) -> list[dict[str, Any]]:
    return [Entry.from_body(b).fields for b in raw_tx(home).ledger.iter_bodies(since)]


# -- acting as another agent ------------------------------------------------------------------


async def test_tool_arguments_cannot_choose_the_agent(site: Home, mode: str) -> None:
    beta = await identity.load_agent(site, "beta")
    claims = dict.fromkeys(IMPERSONATION_KEYS, "beta") | {
        "actor": beta.agent_id,
        "charter": beta.charter.hash,
        "kid": beta.key.kid,
    }
    start = raw_tx(site).ledger.head()[0]
    async with Client(await server_for(site, "alpha"), mode=mode) as client:
        who = await client.call_tool("identity_whoami", claims)
        tools = (await client.list_tools()).tools
        for tool in tools:
            await client.call_tool(tool.name, claims)
    assert who.structured_content is not None
    assert who.structured_content["name"] == "alpha"
    written = new_entries(site, start)
    assert len(written) >= len(tools) + 1  # every call, refused or not, is on the record
    alpha = await identity.load_agent(site, "alpha")
    assert {e["actor"] for e in written} == {alpha.agent_id}
    assert {e["kid"] for e in written} <= {alpha.key.kid, site.log_key.kid}
    assert CANARY not in json.dumps(written)
    await audit.verify_home(site)


async def test_forged_request_metadata_cannot_choose_the_agent(site: Home, mode: str) -> None:
    beta = await identity.load_agent(site, "beta")
    meta: Any = {
        "agent": "beta",
        "charter/agent": "beta",
        "sub": beta.agent_id,
        "session": "forged-session-id",
    }
    async with Client(await server_for(site, "alpha"), mode=mode) as client:
        who = await client.call_tool("identity_whoami", {}, meta=meta)
        secret = await client.call_tool("secret_get", {"name": "BETA_KEY"}, meta=meta)
    assert who.structured_content is not None and who.structured_content["name"] == "alpha"
    assert secret.is_error and CANARY not in text(secret)
    last = sechelp.entries(site)[-1]
    assert (last["actor"], last["outcome"]) == (await agent_id(site, "alpha"), "denied")
    assert last["session"] != "forged-session-id"


async def test_a_second_initialize_over_stdio_does_not_change_the_agent(tmp_path: Path) -> None:
    """stdio: the identity is fixed by the launch; the client's self-description is not one."""
    async with await make_home(tmp_path / "home") as home:
        await identity.add_agent(home, "alpha", scopes=[])
        await identity.add_agent(home, "beta", scopes=["audit:read"])
    server = sechelp.RawStdioServer(tmp_path / "home", "alpha", tmp_path / "stderr.log")
    try:
        server.initialize()
        again = server.request(
            "initialize",
            {
                "protocolVersion": sechelp.PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "beta", "version": "1"},
            },
        )
        server.wait(again)
        ok, who, _ = sechelp.tool_result(server.wait(server.call("identity_whoami", {})))
        denied, _, message = sechelp.tool_result(server.wait(server.call("audit_query", {})))
    finally:
        server.close()
    assert ok and who is not None and who["name"] == "alpha"
    assert not denied and "does not grant 'audit:read'" in message
    await sechelp.verify(tmp_path / "home")


# -- reading what is not yours ----------------------------------------------------------------


@pytest.mark.parametrize(
    "action",
    ["' OR '1'='1", "%", "*", "email.send' OR actor != '", "identity.whoami\x00"],
)
async def test_audit_query_never_shows_another_agents_entries(
    site: Home, mode: str, action: str
) -> None:
    async with Client(await server_for(site, "beta"), mode=mode) as client:
        await client.call_tool("identity_whoami", {})
    async with Client(await server_for(site, "alpha"), mode=mode) as client:
        await client.call_tool("identity_whoami", {})
        pages = [
            await client.call_tool("audit_query", {"action": action, "limit": 200}),
            await client.call_tool("audit_query", {"limit": 200}),
        ]
    for page in pages:
        assert not page.is_error, text(page)
        assert page.structured_content is not None
        actors = {e["actor"] for e in page.structured_content["entries"]}
        assert actors <= {await agent_id(site, "alpha")}


async def test_audit_prove_refuses_another_agents_entry(site: Home, mode: str) -> None:
    async with Client(await server_for(site, "beta"), mode=mode) as client:
        await client.call_tool("identity_whoami", {})
    beta_seq = raw_tx(site).ledger.head()[0] - 1
    async with Client(await server_for(site, "alpha"), mode=mode) as client:
        proof = await client.call_tool("audit_prove", {"seq": beta_seq})
    assert proof.is_error
    last = sechelp.entries(site)[-1]
    assert (last["action"], last["outcome"]) == ("audit.prove", "denied")
    assert last["actor"] == await agent_id(site, "alpha")


async def test_another_agents_secret_is_refused_and_recorded(site: Home, mode: str) -> None:
    start = raw_tx(site).ledger.head()[0]
    async with Client(await server_for(site, "alpha"), mode=mode) as client:
        listed = await client.call_tool("secret_list", {})
        got = await client.call_tool("secret_get", {"name": "BETA_KEY"})
        used = await client.call_tool(
            "secret_http_request",
            {"method": "GET", "url": "http://127.0.0.1:9/?k={{secret:BETA_KEY}}"},
        )
        mine = await client.call_tool("secret_get", {"name": "ALPHA_KEY"})
    assert listed.structured_content is not None
    assert "BETA_KEY" not in json.dumps(listed.structured_content)
    for refused in (got, used):
        assert refused.is_error and "BETA_KEY" in text(refused) and CANARY not in text(refused)
    assert not mine.is_error and ALPHA_SECRET in text(mine)  # the control: reads do work
    written = new_entries(site, start)
    denied = [e for e in written if e["outcome"] == "denied"]
    assert [e["action"] for e in denied] == ["secret.read", "secret.http_request"]
    assert CANARY not in json.dumps(written) and ALPHA_SECRET not in json.dumps(written)


# -- widening scopes by editing the database -------------------------------------------------


def admin(home: Home) -> sqlite3.Connection:
    """A raw connection, as an admin with the database file would have (triggers dropped)."""
    return admin_db(home)  # SQLite: the file with its triggers dropped; PostgreSQL: triggers off


async def widen_charter_row(home: Home, name: str, scopes: list[str]) -> None:
    conn = admin(home)
    h = (await identity.get_agent(home, name)).charter_hash
    (body,) = conn.execute("SELECT body FROM charters WHERE hash = ?", (h,)).fetchone()
    doc = json.loads(body)
    doc["scopes"] = scopes
    conn.execute("UPDATE charters SET body = ? WHERE hash = ?", (canonical_json(doc), h))
    conn.close()


async def test_an_edited_charter_row_is_refused_by_the_server(site: Home) -> None:
    await widen_charter_row(site, "beta", ["audit:read", "secret:read:*", "token:issue"])
    with pytest.raises(ConfigError, match="invalid"):
        await server_for(site, "beta")
    result = sechelp.charter_cli(site.settings.home, "serve", "--agent", "beta")
    assert result.returncode == ConfigError.exit_code
    assert "charter" in result.stderr and "invalid" in result.stderr
    assert "Traceback" not in result.stderr
    await audit.verify_home(site)  # the ledger keeps the owner-signed original


async def test_a_charter_re_signed_by_another_key_is_refused(site: Home) -> None:
    conn = admin(site)
    h = (await identity.get_agent(site, "beta")).charter_hash
    (body,) = conn.execute("SELECT body FROM charters WHERE hash = ?", (h,)).fetchone()
    doc = json.loads(body)
    forger = KeyPair.generate()
    doc["scopes"] = ["secret:read:*"]
    doc["owner"]["key"] = forger.jwk()
    unsigned = {k: v for k, v in doc.items() if k != "sig"}
    doc["sig"] = b64url(forger.sign(b"charter.charter.v1\x00" + canonical_json(unsigned)))
    conn.execute("UPDATE charters SET body = ? WHERE hash = ?", (canonical_json(doc), h))
    conn.close()
    with pytest.raises(ConfigError, match="different owner key"):
        await server_for(site, "beta")


async def test_pointing_an_agent_at_another_agents_charter_is_refused(site: Home) -> None:
    conn = admin(site)
    alpha_charter = (await identity.get_agent(site, "alpha")).charter_hash
    conn.execute("UPDATE agents SET charter_hash = ? WHERE name = 'beta'", (alpha_charter,))
    conn.close()
    with pytest.raises(ConfigError, match="does not match its charter"):
        await server_for(site, "beta")


async def test_widening_the_charter_inside_the_ledger_fails_verification(site: Home) -> None:
    register = next(
        e
        for e in sechelp.entries(site)
        if e["action"] == "agent.register" and e["args"]["agent"] == "beta"
    )
    conn = admin(site)
    body = dict(register)
    body["args"] = json.loads(json.dumps(register["args"]))
    body["args"]["charter"]["scopes"] = ["secret:read:*"]
    conn.execute(
        "UPDATE ledger SET body = ? WHERE seq = ?", (canonical_json(body), register["seq"])
    )
    conn.close()
    await assert_fails_at(site, register["seq"], "signature does not verify")


async def test_un_revoking_an_agent_in_the_database_is_caught_by_verify(
    site: Home, mode: str
) -> None:
    await identity.revoke_agent(site, "beta", reason="compromised")
    conn = admin(site)
    conn.execute("UPDATE agents SET status = 'active', revoked_at = NULL WHERE name = 'beta'")
    conn.close()
    first = raw_tx(site).ledger.head()[0]
    async with Client(await server_for(site, "beta"), mode=mode) as client:
        await client.call_tool("identity_whoami", {})
    await assert_fails_at(site, first, "revoked agent")


# -- ledger tampering by an admin with the database ---------------------------------------------


@pytest.fixture
async def busy(site: Home, clock: FrozenClock) -> Home:
    """``site`` with a few agent calls in the ledger (sync: built before any test loop)."""

    async def drive() -> None:
        for name in ("alpha", "beta", "alpha"):
            server = await server_for(site, name)
            async with Client(server) as client:
                await client.call_tool("identity_whoami", {})
                await client.call_tool("audit_query", {"limit": 1})
            clock.advance(seconds=1)

    await drive()
    assert raw_tx(site).ledger.head()[0] >= 10
    return site


async def assert_fails_at(home: Home, seq: int, reason: str) -> None:
    with pytest.raises(LedgerIntegrityError) as caught:
        await audit.verify_home(home)
    assert caught.value.seq == seq, caught.value.public_message
    assert reason in caught.value.reason
    result = CliRunner().invoke(cli, ["audit", "verify", "--home", str(home.settings.home)])
    assert result.exit_code == LedgerIntegrityError.exit_code
    assert f"entry {seq}" in result.output


def body_at(home: Home, seq: int) -> dict[str, Any]:
    entry = raw_tx(home).ledger.get(seq)
    assert entry is not None
    return dict(entry.fields)


async def agent_seq(home: Home, name: str, nth: int = 0) -> int:
    actor = await agent_id(home, name)
    seqs = [e["seq"] for e in sechelp.entries(home) if e["actor"] == actor]
    return int(seqs[nth])


async def test_the_database_refuses_updates_and_deletes_of_the_ledger(busy: Home) -> None:
    on_pg = busy.settings.database_url is not None  # PostgreSQL: its triggers, same words
    conn = raw_db(busy) if on_pg else sqlite3.connect(busy.layout.db, isolation_level=None)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE ledger SET outcome = 'ok' WHERE seq = 3")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM ledger WHERE seq = 3")
    if not on_pg:
        conn.close()
    await audit.verify_home(busy)


async def test_an_edited_entry_fails_at_its_seq(busy: Home) -> None:
    seq = await agent_seq(busy, "alpha", 1)
    body = body_at(busy, seq)
    body["outcome"] = "denied" if body["outcome"] == "ok" else "ok"
    admin(busy).execute("UPDATE ledger SET body = ? WHERE seq = ?", (canonical_json(body), seq))
    await assert_fails_at(busy, seq, "signature does not verify")


async def test_an_entry_rewritten_in_non_canonical_form_fails_at_its_seq(busy: Home) -> None:
    seq = await agent_seq(busy, "beta")
    loose = json.dumps(body_at(busy, seq), indent=1).encode()  # same content, other bytes
    admin(busy).execute("UPDATE ledger SET body = ? WHERE seq = ?", (loose, seq))
    await assert_fails_at(busy, seq, "not canonical")


async def test_a_deleted_entry_fails_at_its_seq(busy: Home) -> None:
    seq = await agent_seq(busy, "beta")
    admin(busy).execute("DELETE FROM ledger WHERE seq = ?", (seq,))
    await assert_fails_at(busy, seq, f"expected seq {seq}")


async def test_an_inserted_entry_fails_at_its_seq(busy: Home) -> None:
    """Replay a genuine, validly signed entry into the middle, renumbering the rest."""
    seq = await agent_seq(busy, "alpha", 2)
    replayed = raw_tx(busy).ledger.get(await agent_seq(busy, "alpha", 0))
    assert replayed is not None
    conn = admin(busy)
    for (s,) in conn.execute("SELECT seq FROM ledger WHERE seq >= ? ORDER BY seq DESC", (seq,)):
        conn.execute("UPDATE ledger SET seq = seq + 1 WHERE seq = ?", (s,))
    conn.execute(
        "INSERT INTO ledger(seq, prev, hash, ts, actor, action, phase, outcome, call_id, body)"
        " VALUES (?, 'x', 'y', '', '', '', '', NULL, NULL, ?)",
        (seq, replayed.body),
    )
    await assert_fails_at(busy, seq, "expected seq")


async def test_reordered_entries_fail_at_the_first_moved_seq(busy: Home) -> None:
    seq = await agent_seq(busy, "beta")
    first, second = raw_tx(busy).ledger.get(seq), raw_tx(busy).ledger.get(seq + 1)
    assert first is not None and second is not None
    conn = admin(busy)
    conn.execute("UPDATE ledger SET body = ? WHERE seq = ?", (second.body, seq))
    conn.execute("UPDATE ledger SET body = ? WHERE seq = ?", (first.body, seq + 1))
    await assert_fails_at(busy, seq, f"expected seq {seq}")


async def test_an_entry_re_signed_with_a_foreign_key_fails_at_its_seq(busy: Home) -> None:
    seq = await agent_seq(busy, "alpha", 1)
    body = body_at(busy, seq)
    del body["kid"], body["sig"]
    body["outcome"] = "error"
    forged = sign_entry(body, KeyPair.generate())
    admin(busy).execute("UPDATE ledger SET body = ? WHERE seq = ?", (forged.body, seq))
    await assert_fails_at(busy, seq, "unknown key")


async def test_a_foreign_signature_under_the_agents_key_id_fails_at_its_seq(busy: Home) -> None:
    seq = await agent_seq(busy, "alpha", 1)
    body = body_at(busy, seq)
    del body["sig"]
    body["reason"] = "rewritten"
    body["sig"] = b64url(KeyPair.generate().sign(SIGNING_PREFIX + canonical_json(body)))
    admin(busy).execute("UPDATE ledger SET body = ? WHERE seq = ?", (canonical_json(body), seq))
    await assert_fails_at(busy, seq, "signature does not verify")


async def _draft_as(home: Home, name: str, key: KeyPair) -> Draft:
    info = await identity.get_agent(home, name)
    return Draft(
        actor=info.agent_id,
        owner=home.owner_id,
        action="identity.whoami",
        phase="call",
        signer=key,
        charter=info.charter_hash,
        session="forged",
        call="forged",
        outcome="ok",
    )


async def test_an_entry_by_a_revoked_agent_fails_at_its_seq(busy: Home) -> None:
    """Someone with beta's key file writes as beta after its revocation (no server check)."""
    key = read_key_file(busy.layout.agent_key("beta"))
    await identity.revoke_agent(busy, "beta", reason="stolen laptop")
    forged = raw_tx(busy).ledger.append_one(await _draft_as(busy, "beta", key))
    await assert_fails_at(busy, forged.seq, "revoked agent")


async def test_an_entry_under_an_expired_charter_fails_at_its_seq(
    busy: Home, clock: FrozenClock
) -> None:
    key = read_key_file(busy.layout.agent_key("alpha"))
    clock.advance(days=identity.DEFAULT_VALIDITY.days + 1)
    forged = raw_tx(busy).ledger.append_one(await _draft_as(busy, "alpha", key))
    await assert_fails_at(busy, forged.seq, "expired charter")


async def test_an_entry_naming_another_actor_fails_at_its_seq(busy: Home) -> None:
    """Alpha's key signing an entry that claims to be beta's action."""
    key = read_key_file(busy.layout.agent_key("alpha"))
    draft = await _draft_as(busy, "beta", key)
    forged = raw_tx(busy).ledger.append_one(draft)
    await assert_fails_at(busy, forged.seq, "names another actor")


#: A new value for each copied column of a ledger row (the signed body is left untouched).
EDITED_COLUMNS = {
    "actor": "spiffe://charter.local/agent/someone/else",
    "action": "secret.read",
    "outcome": "denied",
    "ts": "2001-01-01T00:00:00.000Z",
    "phase": "event",
    "call_id": "0000000000000000",
    "prev": "f" * 64,
    "hash": "e" * 64,
}


@pytest.mark.parametrize("column", sorted(EDITED_COLUMNS))
async def test_an_edited_column_fails_at_its_seq(busy: Home, column: str) -> None:
    """Queries trust the columns, not the body: editing one alone must not verify (16.7)."""
    seq = await agent_seq(busy, "alpha", 1)
    value = EDITED_COLUMNS[column]
    if column == "actor":
        value = await agent_id(busy, "beta")  # alpha's entry relabelled as beta's
    admin(busy).execute(f"UPDATE ledger SET {column} = ? WHERE seq = ?", (value, seq))
    await assert_fails_at(busy, seq, f"the ledger row's {column} column does not match")


async def test_a_relabelled_entry_is_not_served_to_the_wrong_agent(busy: Home, mode: str) -> None:
    """Beta's entries relabelled as alpha's: audit_query fails closed and audit_prove says
    'not yours' instead of handing alpha beta's entries; audit_verify names the row."""
    beta = await agent_id(busy, "beta")
    seqs = [e["seq"] for e in sechelp.entries(busy) if e["actor"] == beta]
    conn = admin(busy)
    conn.executemany(
        "UPDATE ledger SET actor = ? WHERE seq = ?",
        [(await agent_id(busy, "alpha"), s) for s in seqs],
    )
    conn.close()
    async with Client(await server_for(busy, "alpha"), mode=mode) as client:
        page = await client.call_tool("audit_query", {"limit": 200})
        proof = await client.call_tool("audit_prove", {"seq": seqs[0]})
        verified = await client.call_tool("audit_verify", {})
    assert page.is_error and beta not in text(page)
    assert f"entry {seqs[0]}" in text(page) and "actor column" in text(page)
    assert proof.is_error and text(proof).endswith(f"no entry {seqs[0]} of yours")
    assert beta not in text(proof)
    assert verified.structured_content is not None
    assert verified.structured_content["valid"] is False
    assert verified.structured_content["failed_seq"] == seqs[0]
    assert "actor column" in verified.structured_content["reason"]
    calls = sechelp.entries(busy)[-3:]
    assert [(e["action"], e["outcome"]) for e in calls] == [
        ("audit.query", "error"),
        ("audit.prove", "denied"),
        ("audit.verify", "ok"),
    ]


async def test_an_owner_event_signed_by_an_agent_key_is_not_an_owner_event(busy: Home) -> None:
    """An agent key cannot forge an owner action (e.g. registering itself more scopes)."""
    key = read_key_file(busy.layout.agent_key("alpha"))
    draft = await _draft_as(busy, "alpha", key)
    draft.actor, draft.charter, draft.phase, draft.action = (
        busy.owner_id,
        None,
        "event",
        "agent.update",
    )
    forged = raw_tx(busy).ledger.append_one(draft)
    await assert_fails_at(busy, forged.seq, "names another actor")


def cut_tail(home: Home, size: int) -> None:
    """What an admin with the database does to hide the last entries: drop them, the Merkle
    nodes covering them and every checkpoint that counted them."""
    conn = admin(home)
    for table in ("merkle_nodes", "checkpoints"):
        if home.settings.database_url is None:  # PostgreSQL: admin() has triggers off
            conn.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    conn.execute("DELETE FROM ledger WHERE seq >= ?", (size,))
    level = "level" if home.settings.database_url is None else "level::integer"  # PostgreSQL
    conn.execute(f"DELETE FROM merkle_nodes WHERE ((idx + 1) << {level}) > ?", (size,))
    conn.execute("DELETE FROM checkpoints WHERE size > ?", (size,))
    conn.close()


async def test_a_consistently_cut_tail_passes_local_verification(busy: Home) -> None:
    """What SECURITY.md says Charter does NOT guarantee without a checkpoint kept elsewhere."""
    size = raw_tx(busy).ledger.head()[0]
    cut_tail(busy, size - 3)
    assert (await audit.verify_home(busy)).size == size - 3


async def test_a_tail_cut_only_from_the_ledger_table_fails_verification(busy: Home) -> None:
    size = raw_tx(busy).ledger.head()[0]
    admin(busy).execute("DELETE FROM ledger WHERE seq >= ?", (size - 3,))
    with pytest.raises(LedgerIntegrityError, match="Merkle tree"):
        await audit.verify_home(busy)


async def test_a_kept_checkpoint_detects_a_cut_tail(busy: Home) -> None:
    kept = (await tlog.checkpoint(busy)).note
    size = raw_tx(busy).ledger.head()[0]
    cut_tail(busy, size - 3)
    with pytest.raises(LedgerIntegrityError) as caught:
        await audit.verify_home(busy, trust=Trust(kept=kept))
    assert (caught.value.seq, caught.value.reason.split(":")[0]) == (size - 3, "truncated")


async def test_a_kept_checkpoint_detects_history_rewritten_with_the_homes_own_keys(
    busy: Home,
) -> None:
    """A thief with the home's files (agent keys, log key) rewrites beta's last call away:
    the forged chain verifies on its own, but not against a checkpoint kept elsewhere."""
    kept = (await tlog.checkpoint(busy)).note
    seq = await agent_seq(busy, "beta", 1)
    tail = [body_at(busy, s) for s in range(seq + 1, raw_tx(busy).ledger.head()[0])]
    cut_tail(busy, seq)
    keys = {
        (await identity.get_agent(busy, n)).kid: read_key_file(busy.layout.agent_key(n))
        for n in ("alpha", "beta")
    }
    for old in tail:  # re-sign the rest of history, now without beta's call
        signer = keys.get(old["kid"]) or busy.log_key
        raw_tx(busy).ledger.append_one(
            Draft(
                actor=old["actor"],
                owner=old["owner"],
                action=old["action"],
                phase=old["phase"],
                signer=signer,
                charter=old["charter"],
                session=old["session"],
                call=old["call"],
                args=old["args"],
                args_hash=old["args_hash"],
                outcome=old["outcome"],
                reason=old["reason"],
                result_hash=old["result_hash"],
            )
        )
    alpha = read_key_file(busy.layout.agent_key("alpha"))
    for _ in range(2):  # pad past the kept size, so this is a fork, not a truncation
        raw_tx(busy).ledger.append_one(await _draft_as(busy, "alpha", alpha))
    await audit.verify_home(busy)  # consistent on its own
    with pytest.raises(LedgerIntegrityError) as caught:
        await audit.verify_home(busy, trust=Trust(kept=kept))
    assert caught.value.reason.startswith("fork")


# -- canonical bytes are RFC 8785 -----------------------------------------------------------

TRICKY = [
    "",
    "\x00\x01\x1f\x7f",
    "\b\f\n\r\t",
    '"\\/',
    "\u2028\u2029",
    "\ufeff\ufffe\uffff",
    "é",
    "e\u0301",
    "😀",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "\U0010ffff",
    "</script>",
    "\u0085\u00a0",
]


@pytest.mark.parametrize("value", TRICKY)
def test_canonical_bytes_equal_rfc8785_on_tricky_strings(value: str) -> None:
    key = value[:1] if value[:1] < "\U00010000" else "x"  # keys stay in the BMP
    doc: dict[str, Any] = {"k": value, key: [value, {"n": -(2**53 - 1)}]}
    assert canonical_json(doc) == rfc8785.dumps(doc)


def test_canonical_key_order_is_by_utf16_code_units_like_rfc8785() -> None:
    doc = {"\ufb01": 1, "\u00e9": 2, "a": 3, "A": 4, "\u20ac": 5, "\x7f": 6, "": 7}
    assert canonical_json(doc) == rfc8785.dumps(doc)


def test_values_outside_the_canonical_domain_are_refused() -> None:
    for bad in (1.5, 2**53, {"\U0001f600": 1}, "\ud800", {1: 2}, b"bytes"):
        with pytest.raises(ValueError, match=r"."):
            canonical_json(bad)


_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53 - 1), 2**53 - 1),
    st.text(st.characters(exclude_categories=["Cs"])),
)
_json = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(st.characters(exclude_categories=["Cs"], max_codepoint=0xFFFF), max_size=6),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_canonical_bytes_equal_rfc8785_on_generated_values(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


# -- over HTTP: the agent is the bearer token's subject, and nothing else ----------------------


def swap_subject(token: str, subject: str) -> str:
    """The token with its payload's ``sub`` replaced, signature untouched."""
    header, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = subject
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{sig}"


async def test_over_http_the_agent_is_the_token_subject_and_nothing_else(tmp_path: Path) -> None:
    root = tmp_path / "home"
    await (await make_home(root)).close()  # the real clock: the server runs on it
    async with sechelp.http_server(root) as mcp, await sechelp.open_home(root) as home:
        await identity.add_agent(home, "alpha", scopes=["audit:read"], audiences=[mcp])
        await identity.add_agent(home, "beta", scopes=["secret:read:*"], audiences=[mcp])
        await vault_tools.set_secret(home, "BETA_KEY", CANARY.encode(), allowed_hosts=["127.0.0.1"])
        alpha = (await tokens.issue_for_owner(home, "alpha", audience=mcp)).token
        headers = {"Accept": "application/json, text/event-stream"}
        forged = httpx2.post(
            mcp,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers=headers
            | {"Authorization": f"Bearer {swap_subject(alpha, await agent_id(home, 'beta'))}"},
        )
        assert forged.status_code == 401
        claims = {"Authorization": f"Bearer {alpha}", "X-Charter-Agent": "beta", "X-Agent": "beta"}
        start = raw_tx(home).ledger.head()[0]
        async with (
            httpx2.AsyncClient(headers=claims, timeout=20) as http,
            Client(streamable_http_client(mcp, http_client=http)) as client,
        ):
            who = await client.call_tool("identity_whoami", {"agent": "beta"})
            secret = await client.call_tool("secret_get", {"name": "BETA_KEY"})
        assert who.structured_content is not None and who.structured_content["name"] == "alpha"
        assert secret.is_error and CANARY not in text(secret)
        written = new_entries(home, start)
        assert {e["actor"] for e in written} == {await agent_id(home, "alpha")}
        assert written[-1]["outcome"] == "denied"
        await audit.verify_home(home)
