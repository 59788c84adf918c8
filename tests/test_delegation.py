"""Delegation charters (AUDIT-FORMAT §12): making, verifying, and the attenuation rules."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charter.errors import InvalidInput
from charter.evidence.charters import CharterView, make_charter, verify_charter
from charter.evidence.delegation import make_delegation, verify_delegation
from charter.keys import KeyPair
from charter.scopes import is_subset

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
OWNER = KeyPair.generate()


def root(
    scopes: list[str] | None = None, depth: int | None = None, key: KeyPair | None = None
) -> tuple[KeyPair, CharterView]:
    key = key or KeyPair.generate()
    policy = {} if depth is None else {"delegation_depth": depth}
    doc = make_charter(
        owner_key=OWNER,
        owner_id="o@example.com",
        agent_id="spiffe://t/agent/o/parent",
        agent_name="parent",
        agent_public_key=key.public_key,
        scopes=scopes or ["agent:delegate", "secret:use:API_*", "token:issue"],
        audiences=["https://a.example", "https://b.example"],
        not_before=T0,
        not_after=T0 + dt.timedelta(days=1),
        policy=policy,
    )
    return key, verify_charter(doc, OWNER.public_key)


def child_doc(
    parent_key: KeyPair, parent: CharterView, name: str = "child", **kw: Any
) -> dict[str, Any]:
    args: dict[str, Any] = {
        "scopes": ["secret:use:API_1*"],
        "audiences": ["https://a.example"],
        "not_before": T0,
        "not_after": T0 + dt.timedelta(hours=1),
    } | kw
    return make_delegation(
        parent_key=parent_key,
        parent=parent,
        agent_id=f"spiffe://t/agent/o/{name}",
        agent_name=name,
        agent_public_key=KeyPair.generate().public_key,
        **args,
    )


def test_a_delegation_verifies_against_its_parent() -> None:
    pk, parent = root()
    view = verify_delegation(child_doc(pk, parent), parent)
    assert (view.parent_id, view.parent_charter, view.depth) == (parent.agent_id, parent.hash, 1)
    assert view.scopes == ("secret:use:API_1*",)


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"scopes": ["secret:use:*"]}, "wider"),
        ({"scopes": ["email:send"]}, "wider"),
        ({"audiences": ["https://c.example"]}, "audience"),
        ({"not_before": T0 - dt.timedelta(seconds=1)}, "within"),
    ],
)
def test_wider_requests_are_refused(kw: dict[str, Any], why: str) -> None:
    pk, parent = root()
    with pytest.raises(InvalidInput, match=why):
        child_doc(pk, parent, **kw)


def test_expiry_is_cut_to_the_parents() -> None:
    pk, parent = root()
    view = verify_delegation(child_doc(pk, parent, not_after=T0 + dt.timedelta(days=9)), parent)
    assert view.not_after == parent.not_after


def test_no_delegate_scope_no_delegation() -> None:
    pk, parent = root(scopes=["token:issue"])
    with pytest.raises(InvalidInput, match="agent:delegate"):
        child_doc(pk, parent, scopes=[])


def test_depth_limit_is_the_owners() -> None:
    pk, parent = root()  # default limit 1
    ck = KeyPair.generate()
    doc = make_delegation(
        parent_key=pk,
        parent=parent,
        agent_id="spiffe://t/agent/o/c1",
        agent_name="c1",
        agent_public_key=ck.public_key,
        scopes=["agent:delegate"],
        audiences=[],
        not_before=T0,
        not_after=T0 + dt.timedelta(hours=1),
    )
    child = verify_delegation(doc, parent)
    with pytest.raises(InvalidInput, match="depth 2 exceeds"):
        child_doc(ck, child, scopes=[], audiences=[])
    pk2, parent2 = root(depth=2)
    ck2 = KeyPair.generate()
    doc2 = make_delegation(
        parent_key=pk2,
        parent=parent2,
        agent_id="spiffe://t/agent/o/c1",
        agent_name="c1",
        agent_public_key=ck2.public_key,
        scopes=["agent:delegate"],
        audiences=[],
        not_before=T0,
        not_after=T0 + dt.timedelta(hours=1),
    )
    grandchild = verify_delegation(
        child_doc(ck2, verify_delegation(doc2, parent2), scopes=[], audiences=[]),
        verify_delegation(doc2, parent2),
    )
    assert grandchild.depth == 2


def test_a_charter_signed_by_the_wrong_parent_is_rejected() -> None:
    pk, parent = root()
    _, other = root(key=KeyPair.generate())
    doc = child_doc(pk, parent)
    with pytest.raises(ValueError, match="another parent"):
        verify_delegation(doc, other)
    impostor = KeyPair.generate()
    forged = dict(doc)
    forged["sig"] = child_doc(impostor, root(key=impostor)[1])["sig"]
    with pytest.raises(ValueError, match="signature is invalid"):
        verify_delegation(forged, parent)


def test_a_child_outliving_its_parent_is_rejected() -> None:
    from charter.evidence.canonical import canonical_json
    from charter.evidence.delegation import DELEGATION_PREFIX
    from charter.evidence.jwk import b64url

    pk, parent = root()
    doc = child_doc(pk, parent)
    doc["not_after"] = "2026-01-03T00:00:00.000Z"  # re-signed by the parent itself
    doc["sig"] = b64url(
        pk.sign(DELEGATION_PREFIX + canonical_json({k: v for k, v in doc.items() if k != "sig"}))
    )
    with pytest.raises(ValueError, match="within its parent"):
        verify_delegation(doc, parent)


def test_a_broken_link_is_rejected() -> None:
    pk, parent = root()
    doc = child_doc(pk, parent)
    doc["parent"] = dict(doc["parent"], charter="0" * 64)
    with pytest.raises(ValueError, match="signature is invalid"):
        verify_delegation(doc, parent)
    _resign(pk, doc)  # signed by the right key, but naming another charter of the parent
    with pytest.raises(ValueError, match="another parent charter"):
        verify_delegation(doc, parent)


def _resign(key: KeyPair, doc: dict[str, Any]) -> None:
    from charter.evidence.canonical import canonical_json
    from charter.evidence.delegation import DELEGATION_PREFIX
    from charter.evidence.jwk import b64url

    unsigned = {k: v for k, v in doc.items() if k != "sig"}
    doc["sig"] = b64url(key.sign(DELEGATION_PREFIX + canonical_json(unsigned)))


_GLOBS = st.sampled_from(["*", "API_*", "API_1*", "API_?", "API_[12]", "DB_*", "API_12", "X"])
_FAMILIES = st.sampled_from(["secret:use:", "secret:read:", "email:send:"])
_SCOPES = st.lists(st.builds(lambda f, g: f + g, _FAMILIES, _GLOBS), max_size=3)
_AUDS = st.lists(st.sampled_from(["https://a.example", "https://b.example", "https://c"]))


@settings(max_examples=60, deadline=None)
@given(requests=st.lists(st.tuples(_SCOPES, _AUDS, st.integers(-5, 30)), min_size=1, max_size=4))
def test_no_sequence_of_delegations_widens(
    requests: list[tuple[list[str], list[str], int]],
) -> None:
    """Whatever each link asks for, an accepted chain only ever narrows scope, audience, time."""
    key, top = root(scopes=["agent:delegate", "secret:use:API_*", "email:send:*@x"], depth=8)
    key = key
    view = top
    for i, (scopes, auds, hours) in enumerate(requests):
        child_key = KeyPair.generate()
        try:
            doc = make_delegation(
                parent_key=key,
                parent=view,
                agent_id=f"spiffe://t/agent/o/c{i}",
                agent_name=f"c{i}",
                agent_public_key=child_key.public_key,
                scopes=[*scopes, "agent:delegate"],
                audiences=auds,
                not_before=T0,
                not_after=T0 + dt.timedelta(hours=hours),
            )
        except InvalidInput:
            continue
        child = verify_delegation(doc, view)
        assert is_subset(child.scopes, view.scopes) and is_subset(child.scopes, top.scopes)
        assert set(child.audiences) <= set(view.audiences) <= set(top.audiences)
        assert view.not_before <= child.not_before < child.not_after <= view.not_after
        key, view = child_key, child
