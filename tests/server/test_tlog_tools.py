"""``audit_checkpoint`` and ``audit_prove`` through a real MCP client, in both protocol modes,
and the server's own checkpoints: every N entries (writer thread) and at shutdown."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from charter.config import Settings
from charter.errors import ConfigError
from charter.evidence import merkle
from charter.evidence.c2sp import Verifier, open_checkpoint, verify_tlog_proof
from charter.home import Home
from charter.storage import tlog as store
from charter.testing import FrozenClock, make_home, raw_db, raw_tx, server_for
from charter.tools import audit, identity
from charter.tools import tlog as tools_tlog


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    data = result.structured_content
    assert isinstance(data, dict)
    return data


def error_text(result: Any) -> str:
    assert result.is_error
    return str(result.content[0].text)


def sizes(home: Home) -> list[int]:
    return [c.size for c in raw_tx(home).checkpoints.upto()]


async def test_checkpoint_tool_returns_a_note_signed_by_the_log(home: Home, mode: str) -> None:
    head = raw_tx(home).ledger.head()[0]
    async with Client(await server_for(home, "alpha"), mode=mode) as client:
        out = structured(await client.call_tool("audit_checkpoint", {}))
        again = structured(await client.call_tool("audit_checkpoint", {}))
    assert out["origin"] == home.origin
    assert out["size"] == head  # its own call entry is written after it runs
    assert out["log_vkey"] == tools_tlog.log_verifier(home).vkey
    assert out["log_vkey"].startswith(home.origin + "+")
    checkpoint, _ = open_checkpoint(out["note"], [Verifier.from_vkey(out["log_vkey"])])
    assert (checkpoint.origin, checkpoint.size) == (home.origin, head)
    assert out["root"] == tools_tlog.b64(checkpoint.root_hash)
    leaves = [merkle.leaf_hash(b) for b in list(raw_tx(home).ledger.iter_bodies())[:head]]
    assert checkpoint.root_hash == merkle.root_from_leaves(leaves)
    assert again["size"] == head + 1  # the first call's entry grew the ledger
    last = list(raw_tx(home).ledger.iter_bodies())[-1]
    assert b'"action":"audit.checkpoint"' in last
    await audit.verify_home(home)


async def test_prove_returns_a_tlog_proof_that_verifies_offline(home: Home, mode: str) -> None:
    async with Client(await server_for(home, "alpha"), mode=mode) as client:
        await client.call_tool("identity_whoami", {})
        mine = raw_tx(home).ledger.head()[0] - 1
        out = structured(await client.call_tool("audit_prove", {"seq": mine}))
    entry = raw_tx(home).ledger.get(mine)
    assert entry is not None
    assert out["entry"].encode() == entry.body and out["entry_hash"] == entry.hash
    assert (out["seq"], out["tree_size"]) == (mine, mine + 1)
    verifier = tools_tlog.log_verifier(home)
    checkpoint = verify_tlog_proof(out["tlog_proof"], entry.body, [verifier])
    assert checkpoint.size == out["tree_size"]
    assert out["tlog_proof"].startswith(f"c2sp.org/tlog-proof@v1\nindex {mine}\n")
    assert out["tlog_proof"].endswith(out["checkpoint"])
    with pytest.raises(merkle.ProofError):
        verify_tlog_proof(out["tlog_proof"], entry.body + b" ", [verifier])
    await audit.verify_home(home)


async def test_prove_against_an_earlier_checkpoint(home: Home, mode: str) -> None:
    async with Client(await server_for(home, "alpha"), mode=mode) as client:
        await client.call_tool("identity_whoami", {})
        mine = raw_tx(home).ledger.head()[0] - 1
        first = structured(await client.call_tool("audit_checkpoint", {}))
        await client.call_tool("audit_checkpoint", {})
        out = structured(
            await client.call_tool("audit_prove", {"seq": mine, "tree_size": first["size"]})
        )
        assert out["checkpoint"] == first["note"]
        missing = await client.call_tool("audit_prove", {"seq": mine, "tree_size": 10_000})
        too_small = await client.call_tool("audit_prove", {"seq": mine, "tree_size": mine})
    assert "no checkpoint of size 10000" in error_text(missing)
    assert f"does not contain entry {mine}" in error_text(too_small)


async def test_an_agent_can_only_prove_its_own_entries(home: Home, mode: str) -> None:
    async with Client(await server_for(home, "alpha"), mode=mode) as client:
        owners = await client.call_tool("audit_prove", {"seq": 1})  # the owner's entry
        absent = await client.call_tool("audit_prove", {"seq": 10_000})
        negative = await client.call_tool("audit_prove", {"seq": -1})
    # The same answer whether the entry is someone else's or does not exist.
    assert error_text(owners) == "no entry 1 of yours"
    assert error_text(absent) == "no entry 10000 of yours"
    assert "invalid arguments for audit_prove" in error_text(negative)
    denied = list((await audit.query(home, action="audit.prove")).entries)
    assert [e.outcome for e in denied] == ["denied", "denied", "denied"]
    await audit.verify_home(home)


async def test_tools_need_audit_read(home: Home, mode: str) -> None:
    async with Client(await server_for(home, "beta"), mode=mode) as client:
        checkpoint = await client.call_tool("audit_checkpoint", {})
        await client.call_tool("identity_whoami", {})
        prove = await client.call_tool("audit_prove", {"seq": raw_tx(home).ledger.head()[0] - 1})
        assert sizes(home) == []  # nothing was signed for them
    assert "does not grant 'audit:read'" in error_text(checkpoint)
    assert "does not grant 'audit:read'" in error_text(prove)


async def test_the_server_signs_a_checkpoint_when_it_exits(home: Home, mode: str) -> None:
    async with Client(await server_for(home, "alpha"), mode=mode) as client:
        await client.call_tool("identity_whoami", {})
        assert sizes(home) == []
    assert sizes(home) == [raw_tx(home).ledger.head()[0]]


async def test_the_writer_signs_a_checkpoint_every_n_entries(
    tmp_path: Path, clock: FrozenClock, mode: str
) -> None:
    root = tmp_path / "home"
    await (await make_home(root, clock=clock)).close()
    async with await Home.open(Settings(home=root, checkpoint_every=4), clock=clock) as home:
        await identity.add_agent(home, "alpha", scopes=["audit:read"])
        rounds: list[int] = []  # the ledger's size after each round of four calls
        async with Client(await server_for(home, "alpha"), mode=mode) as client:
            for _ in range(3):
                for _ in range(4):  # one entry each: the ledger passes one multiple of 4
                    await client.call_tool("identity_whoami", {})
                rounds.append(raw_tx(home).ledger.head()[0])
                # The writer thread runs the hook shortly after the (inline) commits.
                for _ in range(200):
                    if sizes(home) and sizes(home)[-1] // 4 == rounds[-1] // 4:
                        break
                    await anyio.sleep(0.01)
            await client.call_tool("identity_whoami", {})
        end = raw_tx(home).ledger.head()[0]
        signed = sizes(home)
        # One checkpoint per multiple of 4 passed, each covering at least that multiple and
        # at most the round's entries; the server signs the final one when it exits.
        assert [size // 4 for size in signed[:-1]] == [size // 4 for size in rounds]
        assert all(size <= top for size, top in zip(signed, rounds, strict=False))
        assert signed[-1] == end
        checkpoints = raw_tx(home).checkpoints.upto(end)
        tree = store.TreeStore(raw_db(home))
        for old, new in itertools.pairwise(checkpoints):
            proof = tree.consistency_proof(old.size, new.size)
            merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
        await audit.verify_home(home)


def test_checkpoint_interval_is_a_setting(tmp_path: Path) -> None:
    assert Settings.from_env({}, home=tmp_path).checkpoint_every == 1000
    assert Settings.from_env({"CHARTER_CHECKPOINT_EVERY": "0"}, home=tmp_path).checkpoint_every == 0
    for bad in ("-1", "ten", "1e3", ""):
        with pytest.raises(ConfigError, match="CHARTER_CHECKPOINT_EVERY"):
            Settings.from_env({"CHARTER_CHECKPOINT_EVERY": bad}, home=tmp_path)


async def test_no_periodic_checkpoints_when_the_interval_is_zero(tmp_path: Path) -> None:
    root = tmp_path / "home"
    await (await make_home(root)).close()
    async with await Home.open(Settings(home=root, checkpoint_every=0)) as home:
        await identity.add_agent(home, "alpha", scopes=[])
        server = await server_for(home, "alpha")
        assert server.deps.after_commit == []
        assert len(server.deps.on_shutdown) == 1  # the final checkpoint is still signed
