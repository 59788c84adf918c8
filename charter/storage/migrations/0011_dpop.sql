-- DPoP (RFC 9449), issue 20. A token issued with `--dpop-jwk` / `dpop_jwk` is bound to a
-- client's key: its row records that key's RFC 7638 thumbprint (the token's cnf.jkt), and a
-- server refuses it unless it comes as `Authorization: DPoP` with a proof signed by that key.
-- NULL for tokens bound to the agent's own key (usable as Bearer, as before).
ALTER TABLE tokens ADD COLUMN dpop_jkt TEXT;

-- The DPoP replay cache every server of a deployment shares: a proof's (jkt, jti) is
-- recorded the first time it is accepted and refused after that until the proof could no
-- longer be accepted anyway (expires_at, RFC 3339 UTC); expired rows are pruned on insert.
CREATE TABLE dpop_jtis (
    jkt         TEXT NOT NULL,                 -- thumbprint of the proof's key
    jti         TEXT NOT NULL,                 -- the proof's id (at most 256 characters)
    expires_at  TEXT NOT NULL,
    PRIMARY KEY (jkt, jti)
);

CREATE INDEX dpop_jtis_expiry ON dpop_jtis(expires_at);
