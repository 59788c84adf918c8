-- PostgreSQL translation of migrations/0011_dpop.sql: the client key a DPoP-bound token is
-- bound to (NULL for agent-key-bound tokens), and the DPoP replay cache every server of a
-- deployment shares.
ALTER TABLE tokens ADD COLUMN dpop_jkt TEXT;

CREATE TABLE dpop_jtis (
    jkt         TEXT NOT NULL,                 -- thumbprint of the proof's key
    jti         TEXT NOT NULL,                 -- the proof's id (at most 256 characters)
    expires_at  TEXT NOT NULL,
    PRIMARY KEY (jkt, jti)
);

CREATE INDEX dpop_jtis_expiry ON dpop_jtis(expires_at);
