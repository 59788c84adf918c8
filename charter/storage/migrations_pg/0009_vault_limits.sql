-- PostgreSQL translation of migrations/0009_vault_limits.sql: limits on using secrets
-- (docs/VAULT.md, SECURITY.md G-AGENT-4).

-- Uses of a secret per agent per minute through secret_http_request; NULL: the default (60).
ALTER TABLE vault_secrets ADD COLUMN rate_per_minute BIGINT CHECK (rate_per_minute > 0);

-- One row per use of a secret by an agent (its intent committed), kept for the rate window.
CREATE TABLE vault_uses (
    agent   TEXT NOT NULL,
    secret  TEXT NOT NULL,
    used_at TEXT NOT NULL
);
CREATE INDEX vault_uses_agent_secret ON vault_uses(agent, secret, used_at);

-- An agent that wrote the value of a secret it may only use (a guess) is blocked from using
-- that secret until the owner lifts the block (`charter secret unblock`).
CREATE TABLE vault_blocks (
    agent      TEXT NOT NULL,
    secret     TEXT NOT NULL,
    blocked_at TEXT NOT NULL,
    PRIMARY KEY (agent, secret)
);
