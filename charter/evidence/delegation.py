"""Delegation charters: a sub-agent's charter, signed by its PARENT AGENT (AUDIT-FORMAT §12).

A delegation charter has the fields of an owner charter (§3) plus ``parent`` (the parent
agent's id, the hash of the parent's charter it was made under, and the parent's public key)
and ``depth`` (1 for a child of an owner-chartered agent). It is signed by the parent agent's
Ed25519 key over ``DELEGATION_PREFIX || canonical(doc without "sig")``; the chain is checked
child → parent → … → the owner's charter. Pure functions: no storage, no clock.

Attenuation rules (each checked by :func:`check_attenuation`, on making and on verifying):
the parent's charter grants ``agent:delegate``; the child's depth is the parent's plus one
and at most the owner's ``delegation_depth`` (policy; default 1); scopes are within the
parent's by glob containment (:func:`charter.scopes.is_subset`: narrowed, never widened);
audiences a subset; the validity window inside the parent's; the policy the parent's, unchanged
(so no approval rule is dropped); the child's key is not the parent's.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from charter.clock import parse_rfc3339, rfc3339
from charter.errors import InvalidInput
from charter.evidence.canonical import canonical_json
from charter.evidence.charters import CharterView, charter_hash, validate_audiences
from charter.evidence.jwk import (
    Ed25519Signer,
    b64url,
    b64url_decode,
    public_jwk,
    public_key_from_jwk,
)
from charter.evidence.jwk import verify_signature as ed25519_verify
from charter.scopes import is_subset, validate_scopes

DELEGATION_PREFIX = b"charter.delegation.v1\x00"
DELEGATE_SCOPE = "agent:delegate"
#: The policy member where the owner sets how deep delegation may go (default 1).
DEPTH_POLICY = "delegation_depth"
DEFAULT_DEPTH = 1
MAX_DEPTH = 8


def depth_limit(policy: dict[str, Any]) -> int:
    """The owner's depth limit in ``policy`` (``delegation_depth``, default 1).

    Raises:
        ValueError: not an integer in 0..8.
    """
    value = policy.get(DEPTH_POLICY, DEFAULT_DEPTH)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DEPTH:
        raise ValueError(f"policy {DEPTH_POLICY} must be an integer from 0 to {MAX_DEPTH}")
    return value


def depth_of(view: CharterView) -> int:
    """0 for an owner charter, else the delegation's ``depth``."""
    return view.depth


def check_attenuation(
    parent: CharterView,
    *,
    child_key: bytes,
    scopes: list[str],
    audiences: list[str],
    not_before: dt.datetime,
    not_after: dt.datetime,
    depth: int,
    policy: dict[str, Any],
) -> None:
    """Refuse anything a delegation by ``parent`` may not grant.

    Raises:
        InvalidInput: naming the first rule broken (the message is safe for the agent).
    """
    if DELEGATE_SCOPE not in parent.scopes:
        raise InvalidInput(f"the parent's charter does not grant {DELEGATE_SCOPE!r}")
    try:
        limit = depth_limit(parent.policy)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    if depth != parent.depth + 1:
        raise InvalidInput("a delegation's depth must be its parent's plus one")
    if depth > limit:
        raise InvalidInput(
            f"delegation depth {depth} exceeds the owner's limit of {limit} ({DEPTH_POLICY})"
        )
    beyond = [s for s in scopes if not is_subset([s], parent.scopes)]
    if beyond:
        raise InvalidInput(f"scope {beyond[0]!r} is wider than the parent's charter grants")
    wider = sorted(set(audiences) - set(parent.audiences))
    if wider:
        raise InvalidInput(f"audience {wider[0]!r} is not among the parent's audiences")
    if not_after <= not_before:
        raise InvalidInput("the delegation's validity window is empty")
    if not_before < parent.not_before or not_after > parent.not_after:
        raise InvalidInput("a delegation's validity must lie within its parent's")
    if policy != parent.policy:
        raise InvalidInput("a delegation must keep its parent's policy unchanged")
    if child_key == parent.agent_key:
        raise InvalidInput("a sub-agent must have a key of its own")


def make_delegation(
    *,
    parent_key: Ed25519Signer,
    parent: CharterView,
    agent_id: str,
    agent_name: str,
    agent_public_key: bytes,
    scopes: list[str],
    audiences: list[str],
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> dict[str, Any]:
    """Build and sign (with the parent agent's key) a delegation charter.

    ``not_after`` is cut to the parent's; the rules of :func:`check_attenuation` apply.

    Raises:
        InvalidInput: an unknown scope, a bad audience, or anything wider than the parent.
    """
    if parent_key.public_key != parent.agent_key:
        raise InvalidInput("the delegation must be signed by the parent agent's own key")
    scopes = validate_scopes(scopes)
    audiences = validate_audiences(audiences)
    not_after = min(not_after, parent.not_after)
    depth = parent.depth + 1
    check_attenuation(
        parent,
        child_key=agent_public_key,
        scopes=scopes,
        audiences=audiences,
        not_before=not_before,
        not_after=not_after,
        depth=depth,
        policy=parent.policy,
    )
    doc: dict[str, Any] = {
        "v": 1,
        "type": "delegation",
        "serial": secrets.token_hex(16),
        "agent": {"id": agent_id, "name": agent_name, "key": public_jwk(agent_public_key)},
        "parent": {
            "id": parent.agent_id,
            "charter": parent.hash,
            "key": public_jwk(parent.agent_key),
        },
        "owner": {"id": parent.owner_id, "key": public_jwk(parent.owner_key)},
        "depth": depth,
        "scopes": scopes,
        "audiences": audiences,
        "policy": parent.policy,
        "issued_at": rfc3339(not_before),
        "not_before": rfc3339(not_before),
        "not_after": rfc3339(not_after),
    }
    doc["sig"] = b64url(parent_key.sign(DELEGATION_PREFIX + canonical_json(doc)))
    return doc


def is_delegation(doc: Any) -> bool:
    """Whether ``doc`` claims to be a delegation charter (not whether it verifies)."""
    return isinstance(doc, dict) and doc.get("type") == "delegation"


def read_delegation(doc: Any) -> CharterView:
    """Check a delegation charter's shape and its signature by the key it names as the
    parent's; nothing about the parent itself (see :func:`verify_delegation`).

    Raises:
        ValueError: describing the first problem found.
    """
    if not is_delegation(doc) or doc.get("v") != 1:
        raise ValueError("not a version 1 delegation charter")
    try:
        agent, owner, parent = doc["agent"], doc["owner"], doc["parent"]
        view = CharterView(
            doc=doc,
            hash=charter_hash(doc),
            agent_id=str(agent["id"]),
            agent_name=str(agent["name"]),
            agent_key=public_key_from_jwk(agent["key"]),
            owner_id=str(owner["id"]),
            owner_key=public_key_from_jwk(owner["key"]),
            scopes=tuple(doc["scopes"]),
            audiences=tuple(doc["audiences"]),
            not_before=parse_rfc3339(doc["not_before"]),
            not_after=parse_rfc3339(doc["not_after"]),
        )
        parent_key = public_key_from_jwk(parent["key"])
        str(parent["id"]), str(parent["charter"])
        depth = doc["depth"]
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError("depth must be a positive integer")
        if not isinstance(doc["policy"], dict):
            raise ValueError("policy must be an object")
        sig = b64url_decode(doc["sig"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed delegation charter: {exc}") from exc
    unsigned = {k: v for k, v in doc.items() if k != "sig"}
    if not ed25519_verify(parent_key, DELEGATION_PREFIX + canonical_json(unsigned), sig):
        raise ValueError("delegation charter signature is invalid")
    return view


def verify_delegation(doc: Any, parent: CharterView) -> CharterView:
    """Verify one link of the chain: ``doc`` was signed by ``parent``'s agent key, under
    ``parent``'s charter (its hash), for the same owner, and attenuates it.

    ``parent`` must itself be verified (an owner charter, or a delegation verified the same
    way): verifying every link from the child up to the owner's charter is the chain check.

    Raises:
        ValueError: describing the first problem found.
    """
    view = read_delegation(doc)
    link = doc["parent"]
    if link["id"] != parent.agent_id or link["charter"] != parent.hash:
        raise ValueError("delegation names another parent or another parent charter")
    if public_key_from_jwk(link["key"]) != parent.agent_key:
        raise ValueError("delegation is not signed by the parent agent's key")
    if view.owner_id != parent.owner_id or view.owner_key != parent.owner_key:
        raise ValueError("delegation names another owner than its parent's")
    try:
        check_attenuation(
            parent,
            child_key=view.agent_key,
            scopes=list(view.scopes),
            audiences=list(view.audiences),
            not_before=view.not_before,
            not_after=view.not_after,
            depth=view.depth,
            policy=view.policy,
        )
        if list(view.scopes) != validate_scopes(view.scopes):
            raise InvalidInput("scopes must be valid, sorted and unique")
        if list(view.audiences) != validate_audiences(list(view.audiences)):
            raise InvalidInput("audiences must be valid, sorted and unique")
    except InvalidInput as exc:
        raise ValueError(f"delegation widens its parent: {exc.public_message}") from None
    return view
