-- PostgreSQL translation of migrations/0014_owners.sql (same schema). Organizations (issue
-- 28): the owners an organization key certified, each with their own key, and
-- which owner each agent belongs to. A home without an organization has no owner rows and
-- agents.owner_id NULL (its single owner). The history of both is in the ledger
-- (owner.certify, owner.remove, the charters); these rows are what is current.
CREATE TABLE owners (
    kid          TEXT PRIMARY KEY,             -- JWK thumbprint of the owner's public key
    owner_id     TEXT NOT NULL,                -- the owner's email address
    public_key   TEXT NOT NULL,                -- base64url Ed25519 public key
    cert_hash    TEXT NOT NULL UNIQUE,         -- hash of the owner certificate
    certificate  TEXT NOT NULL,                -- its canonical JSON
    not_after    TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'removed')),
    added_at     TEXT NOT NULL,
    removed_at   TEXT
);

CREATE UNIQUE INDEX owners_active_id ON owners(owner_id) WHERE status = 'active';

ALTER TABLE agents ADD COLUMN owner_id TEXT;   -- NULL: the home's single owner

CREATE INDEX agents_owner ON agents(owner_id) WHERE owner_id IS NOT NULL;
