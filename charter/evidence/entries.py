"""Ledger entries (AUDIT-FORMAT.md): their version, signing and genesis prefixes, the
ledger's identity, and an entry's canonical bytes, signature and hash.

An entry is a JSON object; its bytes are RFC 8785 canonical JSON. The signer signs
``SIGNING_PREFIX || canonical(entry without "sig")``; the entry hash is
``SHA-256(canonical(entry))`` (signature included) and becomes the next entry's ``prev``.
Entry 0's ``prev`` is the genesis hash, which binds the ledger's origin, owner and log key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from charter.evidence.canonical import canonical_json
from charter.evidence.jwk import Ed25519Signer, b64url, public_jwk

FORMAT_VERSION = 1
SIGNING_PREFIX = b"charter.ledger.entry.v1\x00"
GENESIS_PREFIX = b"charter.ledger.genesis.v1\x00"
PHASES = ("intent", "outcome", "call", "event")
OUTCOMES = ("ok", "denied", "error")


@dataclass(frozen=True, slots=True)
class LedgerIdentity:
    """What makes this ledger this ledger: bound into entry 0 through the genesis hash."""

    origin: str
    owner_id: str
    owner_key: bytes
    log_key: bytes

    def genesis_document(self) -> dict[str, Any]:
        """The object whose canonical bytes, prefixed, hash to the genesis ``prev``."""
        return {
            "log_key": public_jwk(self.log_key),
            "origin": self.origin,
            "owner": self.owner_id,
            "owner_key": public_jwk(self.owner_key),
        }

    def genesis_hash(self) -> str:
        """Hex SHA-256 of ``GENESIS_PREFIX || canonical(genesis_document())``."""
        return hashlib.sha256(GENESIS_PREFIX + canonical_json(self.genesis_document())).hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    """A committed entry: its parsed fields, canonical bytes and hash."""

    fields: dict[str, Any]
    body: bytes
    hash: str

    @property
    def seq(self) -> int:
        """Position in the ledger (0-based)."""
        return int(self.fields["seq"])

    @classmethod
    def from_body(cls, body: bytes) -> Entry:
        """Parse stored bytes (trusted: they came from our own database)."""
        return cls(orjson.loads(body), body, hashlib.sha256(body).hexdigest())


def sign_entry(fields: dict[str, Any], signer: Ed25519Signer) -> Entry:
    """Sign ``fields`` (which must not yet hold ``kid``/``sig``) and return the entry."""
    fields["kid"] = signer.kid
    fields["sig"] = b64url(signer.sign(SIGNING_PREFIX + canonical_json(fields)))
    body = canonical_json(fields, checked=True)  # checked above; ``sig`` is base64url ASCII
    return Entry(fields, body, hashlib.sha256(body).hexdigest())
