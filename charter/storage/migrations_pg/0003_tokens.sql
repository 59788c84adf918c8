-- PostgreSQL translation of migrations/0003_tokens.sql: the issuer keys that sign agent
-- tokens and one row per issued token (never the token itself).

-- Every issuer key this home has used. The signing key is the one row with retired_at NULL;
-- a retired key stays published in the JWKS while a token it signed has not expired.
CREATE TABLE issuer_keys (
    kid         TEXT PRIMARY KEY,          -- RFC 7638 thumbprint
    public_key  TEXT NOT NULL UNIQUE,      -- base64url raw Ed25519 public key
    created_at  TEXT NOT NULL,
    retired_at  TEXT
);
CREATE UNIQUE INDEX issuer_keys_one_current ON issuer_keys((retired_at IS NULL))
    WHERE retired_at IS NULL;

CREATE TABLE tokens (
    jti         TEXT PRIMARY KEY,
    kid         TEXT NOT NULL REFERENCES issuer_keys(kid),
    agent_name  TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    charter     TEXT NOT NULL,             -- hash of the charter the token was issued under
    audience    TEXT NOT NULL,
    scopes      TEXT NOT NULL,             -- space-separated, as in the `scope` claim
    issued_at   TEXT NOT NULL,             -- RFC 3339; the claims hold the same instants
    expires_at  TEXT NOT NULL,
    revoked_at  TEXT,
    revoked_reason TEXT
);
CREATE INDEX tokens_kid_expires ON tokens(kid, expires_at);
