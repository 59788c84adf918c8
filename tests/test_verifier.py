"""Verifier rules that hold even against someone holding every key: entries re-signed with the
right keys and re-chained still fail when they break a format or protocol rule."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from mcp import Client

from charter.errors import LedgerIntegrityError
from charter.evidence.canonical import canonical_json
from charter.evidence.entries import sign_entry
from charter.evidence.jwk import Ed25519Signer
from charter.evidence.verifier import verify_entries
from charter.home import Home
from charter.keys.files import read_key_file
from charter.testing import raw_db, raw_tx, server_for

Mutation = Callable[[dict[str, Any]], None]


def _keys(home: Home) -> dict[str, Ed25519Signer]:
    keys: list[Ed25519Signer] = [home.owner_key(), home.log_key]
    keys += [read_key_file(p) for p in home.layout.keys.glob("agents/*.key")]
    return {k.kid: k for k in keys}


def rewrite(home: Home, index: int, mutate: Mutation) -> list[bytes]:
    """The ledger with entry ``index`` mutated, then it and every later entry re-signed with its
    own signer's key and re-chained: only the rule under test can catch it."""
    keys = _keys(home)
    bodies = list(raw_tx(home).ledger.iter_bodies())
    prev = json.loads(bodies[index])["prev"]
    for i in range(index, len(bodies)):
        fields = json.loads(bodies[i])
        if i == index:
            mutate(fields)
        fields["prev"] = prev
        signer = keys[fields.pop("kid")]
        fields.pop("sig")
        entry = sign_entry(fields, signer)
        bodies[i] = entry.body
        prev = hashlib.sha256(entry.body).hexdigest()
    return bodies


def first_failure(home: Home, bodies: list[bytes]) -> LedgerIntegrityError:
    with pytest.raises(LedgerIntegrityError) as caught:
        verify_entries(home.identity, bodies)
    return caught.value


async def _calls(home: Home) -> None:
    async with Client(await server_for(home, "alpha")) as client:
        await client.call_tool("identity_whoami", {})
        await client.call_tool("audit_query", {"limit": 1})


async def test_resigned_unchanged_ledger_still_verifies(home: Home) -> None:
    await _calls(home)
    verify_entries(home.identity, rewrite(home, 1, lambda f: None))


@pytest.mark.parametrize(
    "ts",
    [
        "2026-01-02T03:04:05Z",
        "2026-01-02T03:04:05.678+00:00",
        "2026-01-02 03:04:05.678Z",
        "2026-01-02T03:04:05.6780Z",
        "2026-13-02T03:04:05.678Z",
    ],
)
async def test_only_the_fixed_width_utc_timestamp_is_accepted(home: Home, ts: str) -> None:
    await _calls(home)
    index = raw_tx(home).ledger.head()[0] - 1

    def set_ts(fields: dict[str, Any]) -> None:
        fields["ts"] = ts

    failure = first_failure(home, rewrite(home, index, set_ts))
    assert failure.seq == index
    assert "timestamp" in failure.reason


async def test_a_timestamp_going_back_in_time_fails(home: Home) -> None:
    await _calls(home)
    index = raw_tx(home).ledger.head()[0] - 1

    def earlier(fields: dict[str, Any]) -> None:
        fields["ts"] = "2000-01-01T00:00:00.000Z"

    failure = first_failure(home, rewrite(home, index, earlier))
    assert (failure.seq, failure.reason) == (index, "timestamp goes back in time")


async def test_an_agent_entry_under_someone_elses_actor_fails(home: Home) -> None:
    await _calls(home)
    index = raw_tx(home).ledger.head()[0] - 1

    def impersonate(fields: dict[str, Any]) -> None:
        fields["actor"] = "spiffe://charter.local/agent/owner/beta"

    failure = first_failure(home, rewrite(home, index, impersonate))
    assert failure.seq == index
    assert "another actor" in failure.reason


def test_the_log_key_cannot_sign_an_agents_success(home: Home) -> None:
    """A server-attested entry (log key) may only be a refusal or a server event."""
    identity_entry = json.loads(list(raw_tx(home).ledger.iter_bodies())[-1])
    fields = {k: v for k, v in identity_entry.items() if k not in ("kid", "sig")}
    fields.update(
        seq=raw_tx(home).ledger.head()[0],
        prev=raw_tx(home).ledger.head()[1],
        action="email.send",
        phase="call",
        outcome="ok",
        actor="spiffe://charter.local/agent/owner/alpha",
    )
    forged = sign_entry(fields, home.log_key)
    failure = first_failure(home, [*raw_tx(home).ledger.iter_bodies(), forged.body])
    assert "log key may only sign refusals" in failure.reason


def test_an_approval_request_must_carry_the_arguments_hash(home: Home) -> None:
    alpha = read_key_file(home.layout.agent_key("alpha"))
    size, head = raw_tx(home).ledger.head()
    last = json.loads(list(raw_tx(home).ledger.iter_bodies())[-1])
    charter_hash = (
        raw_db(home).execute("SELECT charter_hash FROM agents WHERE name='alpha'").fetchone()[0]
    )
    fields = {
        "v": 1,
        "seq": size,
        "ts": last["ts"],
        "prev": head,
        "actor": "spiffe://charter.local/agent/owner/alpha",
        "owner": home.owner_id,
        "charter": charter_hash,
        "session": "s",
        "call": "c",
        "phase": "event",
        "action": "approval.request",
        "args": {
            "approval": "apr-1",
            "mode": "owner",
            "action": "email.send",
            "expires_at": "2026-01-03T03:04:05.678Z",
        },
        "args_hash": None,
        "outcome": "ok",
        "reason": None,
        "result_hash": None,
    }
    forged = sign_entry(fields, alpha)
    failure = first_failure(home, [*raw_tx(home).ledger.iter_bodies(), forged.body])
    assert failure.seq == size
    assert "hash of the arguments" in failure.reason
    assert canonical_json(forged.fields) == forged.body


async def test_an_agent_entry_under_a_superseded_charter_fails(home: Home) -> None:
    await _calls(home)
    index = raw_tx(home).ledger.head()[0] - 1

    def old_charter(fields: dict[str, Any]) -> None:
        fields["charter"] = "0" * 64

    failure = first_failure(home, rewrite(home, index, old_charter))
    assert failure.seq == index
    assert "current charter" in failure.reason


def test_an_owner_signed_entry_must_name_the_owner(home: Home) -> None:
    bodies = list(raw_tx(home).ledger.iter_bodies())
    index = next(i for i, b in enumerate(bodies) if json.loads(b)["action"] == "agent.register")

    def agent_as_actor(fields: dict[str, Any]) -> None:
        fields["actor"] = "spiffe://charter.local/agent/owner/alpha"

    failure = first_failure(home, rewrite(home, index, agent_as_actor))
    assert failure.seq == index
    assert "must name the owner as actor" in failure.reason
