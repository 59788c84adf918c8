"""Charters: the owner-signed credential binding an agent (id and key) to its owner.

A charter is canonical JSON signed by the owner key over
``CHARTER_PREFIX || canonical(charter without "sig")``. Its hash, ``SHA-256`` of the canonical
bytes of the whole charter, is the ``charter`` reference in every ledger entry and token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from charter.clock import parse_rfc3339, rfc3339
from charter.errors import AgentRevoked, InvalidInput
from charter.evidence.canonical import canonical_json
from charter.evidence.jwk import (
    Ed25519Signer,
    b64url,
    b64url_decode,
    public_jwk,
    public_key_from_jwk,
)
from charter.evidence.jwk import verify_signature as ed25519_verify
from charter.scopes import validate_scopes

CHARTER_PREFIX = b"charter.charter.v1\x00"
AGENT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
TRUST_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,250}[a-z0-9])?$")
_AUDIENCE = re.compile(r"^[\x21-\x7e]{1,512}$")


def validate_agent_name(name: str) -> str:
    """Return ``name`` if it is a valid agent name (lowercase letters, digits, ``._-``).

    Raises:
        InvalidInput: otherwise.
    """
    if not AGENT_NAME.match(name):
        raise InvalidInput(
            f"invalid agent name {name!r}: use 1-63 lowercase letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return name


def validate_audiences(audiences: list[str]) -> list[str]:
    """Return the audiences sorted and de-duplicated; each must be a printable URI-like string."""
    for aud in audiences:
        if not _AUDIENCE.match(aud):
            raise InvalidInput(f"invalid audience {aud!r}: use a URL without spaces")
    return sorted(set(audiences))


def owner_handle(owner_id: str) -> str:
    """The path-safe handle of an owner (their email's local part, lowercased)."""
    local = owner_id.split("@", 1)[0].lower()
    handle = re.sub(r"[^a-z0-9._-]", "-", local).strip("-.") or "owner"
    return handle[:63]


def agent_spiffe_id(trust_domain: str, owner_id: str, name: str) -> str:
    """``spiffe://<trust-domain>/agent/<owner-handle>/<name>``."""
    return f"spiffe://{trust_domain}/agent/{owner_handle(owner_id)}/{name}"


def charter_hash(charter: dict[str, Any]) -> str:
    """Hex SHA-256 of the charter's canonical bytes (signature included)."""
    return hashlib.sha256(canonical_json(charter)).hexdigest()


def make_charter(
    *,
    owner_key: Ed25519Signer,
    owner_id: str,
    agent_id: str,
    agent_name: str,
    agent_public_key: bytes,
    scopes: list[str],
    audiences: list[str],
    not_before: dt.datetime,
    not_after: dt.datetime,
    policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build and sign a charter.

    Raises:
        InvalidInput: for an unknown scope, a bad audience or an empty validity window.
    """
    if not_after <= not_before:
        raise InvalidInput("the charter's validity window is empty")
    doc: dict[str, Any] = {
        "v": 1,
        "type": "charter",
        "serial": secrets.token_hex(16),
        "agent": {"id": agent_id, "name": agent_name, "key": public_jwk(agent_public_key)},
        "owner": {"id": owner_id, "key": public_jwk(owner_key.public_key)},
        "scopes": validate_scopes(scopes),
        "audiences": validate_audiences(audiences),
        "policy": policy or {},
        "issued_at": rfc3339(not_before),
        "not_before": rfc3339(not_before),
        "not_after": rfc3339(not_after),
    }
    doc["sig"] = b64url(owner_key.sign(CHARTER_PREFIX + canonical_json(doc)))
    return doc


@dataclass(frozen=True, slots=True)
class CharterView:
    """A verified charter's fields, typed."""

    doc: dict[str, Any]
    hash: str
    agent_id: str
    agent_name: str
    agent_key: bytes
    owner_id: str
    owner_key: bytes
    scopes: tuple[str, ...]
    audiences: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime

    @property
    def policy(self) -> dict[str, Any]:
        """Extension policy (approvals, email address, limits)."""
        return dict(self.doc.get("policy") or {})

    @property
    def parent_id(self) -> str | None:
        """A delegation charter's parent agent id (AUDIT-FORMAT §12); None for an owner's."""
        return str(self.doc["parent"]["id"]) if self.doc.get("type") == "delegation" else None

    @property
    def parent_charter(self) -> str | None:
        """The hash of the parent's charter a delegation was made under; None for an owner's."""
        if self.doc.get("type") != "delegation":
            return None
        return str(self.doc["parent"]["charter"])

    @property
    def depth(self) -> int:
        """0 for an owner-signed charter, else the delegation's depth (1 for a child)."""
        return int(self.doc["depth"]) if self.doc.get("type") == "delegation" else 0


def verify_charter(doc: Any, owner_key: bytes | None = None) -> CharterView:
    """Check a charter's shape and owner signature (and that it names ``owner_key`` if given).

    Raises:
        ValueError: describing the first problem found.
    """
    if not isinstance(doc, dict) or doc.get("type") != "charter" or doc.get("v") != 1:
        raise ValueError("not a version 1 charter")
    try:
        agent, owner = doc["agent"], doc["owner"]
        signed_by = public_key_from_jwk(owner["key"])
        view = CharterView(
            doc=doc,
            hash=charter_hash(doc),
            agent_id=str(agent["id"]),
            agent_name=str(agent["name"]),
            agent_key=public_key_from_jwk(agent["key"]),
            owner_id=str(owner["id"]),
            owner_key=signed_by,
            scopes=tuple(doc["scopes"]),
            audiences=tuple(doc["audiences"]),
            not_before=parse_rfc3339(doc["not_before"]),
            not_after=parse_rfc3339(doc["not_after"]),
        )
        sig = b64url_decode(doc["sig"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed charter: {exc}") from exc
    if owner_key is not None and signed_by != owner_key:
        raise ValueError("charter names a different owner key")
    unsigned = {k: v for k, v in doc.items() if k != "sig"}
    if not ed25519_verify(signed_by, CHARTER_PREFIX + canonical_json(unsigned), sig):
        raise ValueError("charter signature is invalid")
    return view


def check_validity(view: CharterView, now: dt.datetime) -> None:
    """Raise :class:`AgentRevoked` when ``now`` is outside the charter's validity window."""
    if now < view.not_before:
        raise AgentRevoked("the agent's charter is not valid yet")
    if now >= view.not_after:
        raise AgentRevoked(
            "the agent's charter has expired; the owner can renew it with "
            "`charter agent update NAME --valid-for 90d`"
        )
