"""Parallel verification gives the same verdict as sequential, down to the first bad entry.

Worker processes run the stateless checks (parse, canonical bytes, signature) while the
parent replays the chain; every tamper class must be reported at the same seq with the same
reason whatever the number of workers. Also: the signed bytes cut out of an entry equal the
canonical bytes of the entry without its signature, and the fast canonical-domain check
refuses exactly what the plain one did.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charter.errors import LedgerIntegrityError
from charter.evidence import canonical, entry_checks, verifier
from charter.evidence.canonical import MAX_SAFE_INT, canonical_json
from charter.evidence.entries import SIGNING_PREFIX, LedgerIdentity, sign_entry
from charter.evidence.jwk import Ed25519Signer, b64url
from charter.home import Home
from charter.keys import KeyPair
from charter.keys.files import read_key_file
from charter.storage.ledger import Draft
from charter.testing import FrozenClock, agent_draft, raw_tx
from charter.tools import audit, identity


def _call(agent: identity.AgentContext, i: int) -> Draft:
    args = {"cursor": i, "note": f'quote " and ,"sig":"x" {i}', "nested": {"sig": "y", "ts": 1}}
    return agent_draft(
        agent,
        action="audit.query",
        phase="call",
        session="s1",
        call=secrets.token_hex(8),
        args=args,
        args_hash=hashlib.sha256(str(i).encode()).hexdigest(),
        outcome="ok",
    )


@pytest.fixture
async def ledger(home: Home, clock: FrozenClock) -> tuple[LedgerIdentity, list[bytes]]:
    """About 60 entries: two agents, a third registered midway, one revoked."""
    alpha, beta = await identity.load_agent(home, "alpha"), await identity.load_agent(home, "beta")
    for i in range(20):
        clock.advance(seconds=1)
        raw_tx(home).ledger.append([_call(alpha, i), _call(beta, i)])
    await identity.add_agent(home, "gamma", scopes=[])
    gamma = await identity.load_agent(home, "gamma")
    for i in range(15):
        clock.advance(seconds=1)
        raw_tx(home).ledger.append([_call(gamma, i), _call(alpha, i)])
    await identity.revoke_agent(home, "beta", reason="test")
    return home.identity, list(raw_tx(home).ledger.iter_bodies())


def _outcome(identity_: LedgerIdentity, bodies: list[bytes], workers: int) -> tuple[Any, ...]:
    try:
        report, state = verifier.verify_entries(identity_, bodies, workers=workers)
    except LedgerIntegrityError as exc:
        return ("fail", exc.seq, exc.reason)
    return ("ok", report, state.head)


def _resign(body: bytes, key: Ed25519Signer, change: Callable[[dict[str, Any]], None]) -> bytes:
    fields = json.loads(body)
    del fields["sig"], fields["kid"]
    change(fields)
    return sign_entry(fields, key).body


async def _tampers(home: Home, bodies: list[bytes]) -> dict[str, tuple[list[bytes], int | None]]:
    """Tampered copies of the ledger and the seq each must fail at (None: still valid)."""
    k = 30
    alpha = await identity.load_agent(home, "alpha")
    beta = await identity.get_agent(home, "beta")  # revoked: its key file is still there
    beta_key = read_key_file(home.layout.agent_key("beta"))
    entry = json.loads(bodies[k])
    out: dict[str, tuple[list[bytes], int | None]] = {"intact": (list(bodies), None)}

    def put(name: str, seq: int, at: int, body: bytes) -> None:
        copy = list(bodies)
        copy[at] = body
        out[name] = (copy, seq)

    put("edited byte", k, k, bodies[k].replace(b'"cursor":', b'"cursoR":'))
    put("not canonical", k, k, bodies[k].replace(b'{"action"', b'{ "action"'))
    put("not json", k, k, bodies[k][:-1])
    put("sig not base64url", k, k, canonical_json(entry | {"sig": "a+b/"}))
    put("foreign key", k, k, _resign(bodies[k], KeyPair.generate(), lambda f: None))
    other = alpha.key.kid if entry["kid"] == beta_key.kid else beta_key.kid
    put("kid of another agent", k, k, canonical_json(entry | {"kid": other}))
    put("float in args", k, k, re.sub(rb'"cursor":(\d+)', rb'"cursor":\1.5', bodies[k]))
    put("huge int", k, k, re.sub(rb'"cursor":(\d+)', rb'"cursor":99999999999999999999', bodies[k]))
    out["deleted"] = ([*bodies[:k], *bodies[k + 1 :]], k)
    out["reordered"] = ([*bodies[:k], bodies[k + 1], bodies[k], *bodies[k + 2 :]], k)
    out["truncated"] = (bodies[:k], None)
    # An entry by the revoked agent, correctly chained and signed with its own key.
    last = json.loads(bodies[-1])
    forged = _resign(
        bodies[-1],
        beta_key,
        lambda f: f.update(
            seq=last["seq"] + 1,
            prev=hashlib.sha256(bodies[-1]).hexdigest(),
            actor=beta.agent_id,
            charter=beta.charter_hash,
            action="audit.query",
            phase="call",
            outcome="ok",
        ),
    )
    out["revoked agent"] = ([*bodies, forged], len(bodies))
    # A valid entry re-signed by alpha but claiming seq 0's slot: a chain break, not a sig error
    out["resigned elsewhere"] = (
        [*bodies[:k], _resign(bodies[k], alpha.key, lambda f: f.update(seq=k + 1))],
        k,
    )
    return out


async def test_parallel_verdicts_match_sequential_for_every_tamper(
    home: Home,
    ledger: tuple[LedgerIdentity, list[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    identity_, bodies = ledger
    # Small chunks so a 60-entry ledger spreads over many worker tasks.
    monkeypatch.setattr(entry_checks, "PARALLEL_MIN", 8)
    monkeypatch.setattr(entry_checks, "PARALLEL_CHUNK", 7)
    for name, (copy, bad_seq) in (await _tampers(home, bodies)).items():
        sequential = _outcome(identity_, copy, workers=1)
        if bad_seq is None:
            assert sequential[0] == "ok", name
        else:
            assert sequential[:2] == ("fail", bad_seq), (name, sequential)
        assert _outcome(identity_, copy, workers=2) == sequential, name


def test_resuming_from_a_state_in_parallel_matches(
    ledger: tuple[LedgerIdentity, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    identity_, bodies = ledger
    monkeypatch.setattr(entry_checks, "PARALLEL_MIN", 4)
    monkeypatch.setattr(entry_checks, "PARALLEL_CHUNK", 5)
    full, _ = verifier.verify_entries(identity_, bodies)
    _, state = verifier.verify_entries(identity_, bodies[:25])
    resumed, _ = verifier.verify_entries(identity_, bodies[25:], state, workers=2)
    assert resumed == full


# -- the signed bytes and the canonical domain -------------------------------------------------

_text = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    [',"sig":"', '"sig"', ',"ts":"', "\\", '"', "\u2028", "\x7f", "\x00", "é"]
)
_key = st.text(st.characters(codec="utf-8", max_codepoint=0xFFFF), max_size=8) | st.sampled_from(
    ["sig", "ts", "v", ',"sig":"']
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-MAX_SAFE_INT, MAX_SAFE_INT) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_key, inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(args=st.dictionaries(_key, _json, max_size=4), reason=st.none() | _text)
def test_signed_bytes_are_the_canonical_bytes_without_the_signature(
    args: dict[str, Any], reason: str | None
) -> None:
    key = KeyPair.from_seed(b"\x01" * 32)
    fields = {
        "v": 1, "seq": 3, "ts": "2026-01-02T03:04:05.678Z", "prev": "p" * 64, "actor": "a",
        "owner": "o", "charter": None, "session": None, "call": None, "phase": "call",
        "action": "x.y", "args": args, "args_hash": None, "outcome": None, "reason": reason,
        "result_hash": None,
    }  # fmt: skip
    entry = sign_entry(fields, key)
    unsigned = {k: v for k, v in entry.fields.items() if k != "sig"}
    assert entry_checks.signed_bytes(entry.fields, entry.body) == canonical_json(unsigned)
    # ...and they are what the stored signature signs.
    assert entry.fields["sig"] == b64url(key.sign(SIGNING_PREFIX + canonical_json(unsigned)))


def _reference_check(value: Any, depth: int = 0) -> None:
    """The canonical-domain check as first written (plain isinstance chain)."""
    if depth > 64:
        raise ValueError("value is nested too deeply")
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise ValueError("integer outside the JSON safe range")
        return
    if isinstance(value, list | tuple):
        for item in value:
            _reference_check(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("object keys must be strings")
            if any(ord(ch) > 0xFFFF for ch in key):
                raise ValueError("object keys must lie in the Basic Multilingual Plane")
            _reference_check(item, depth + 1)
        return
    raise ValueError(f"cannot canonicalize a {type(value).__name__}")


def _verdict(check: Callable[[Any], None], value: Any) -> str:
    try:
        check(value)
    except ValueError as exc:
        return str(exc)
    return "ok"


_any = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner)
        | st.dictionaries(st.text(max_size=3) | st.integers(0, 3), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(value=_any)
def test_fast_domain_check_refuses_exactly_what_the_plain_one_did(value: Any) -> None:
    assert _verdict(canonical._check, value) == _verdict(_reference_check, value)


@pytest.mark.parametrize("depth", [63, 64, 65, 66])
def test_nesting_limit_is_unchanged(depth: int) -> None:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value}
    assert _verdict(canonical._check, value) == _verdict(_reference_check, value)
    value = "leaf"
    for _ in range(depth):
        value = [value]
    assert _verdict(canonical._check, value) == _verdict(_reference_check, value)


async def test_home_audit_with_workers_matches(
    home: Home,
    ledger: tuple[LedgerIdentity, list[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`charter audit verify` (every core) reports what the sequential audit does."""
    monkeypatch.setattr(entry_checks, "PARALLEL_MIN", 8)
    monkeypatch.setattr(entry_checks, "PARALLEL_CHUNK", 7)
    sequential = await audit.verify_home(home)
    parallel = await audit.verify_home(home, workers=2)
    assert (parallel.size, parallel.head) == (sequential.size, sequential.head)
