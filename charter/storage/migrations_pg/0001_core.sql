-- PostgreSQL translation of migrations/0001_core.sql (same tables, columns, constraints and
-- indexes; docs/POSTGRES-NOTES.md has the type map). SQLite's INTEGER is 64-bit: BIGINT.

-- Refuses the change that fired it, with the message given as the trigger's argument: the
-- append-only tables' UPDATE and DELETE triggers (SQLite's RAISE(ABORT, ...)), and also
-- TRUNCATE, which PostgreSQL has and which skips row triggers.
CREATE FUNCTION charter_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One row per ledger entry. `body` is the entry's canonical JSON (RFC 8785), signature
-- included: it is the only source of truth; the other columns are indexes over it.
CREATE TABLE ledger (
    seq      BIGINT PRIMARY KEY CHECK (seq >= 0),
    prev     TEXT NOT NULL UNIQUE,
    hash     TEXT NOT NULL CONSTRAINT ledger_hash_key UNIQUE,
    ts       TEXT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    phase    TEXT NOT NULL,
    outcome  TEXT,
    call_id  TEXT,
    body     BYTEA NOT NULL
);
CREATE INDEX ledger_actor_seq ON ledger(actor, seq);
CREATE INDEX ledger_action_seq ON ledger(action, seq);
CREATE INDEX ledger_call ON ledger(call_id);

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
    FOR EACH ROW EXECUTE FUNCTION charter_append_only('the ledger is append-only');
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION charter_append_only('the ledger is append-only');
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION charter_append_only('the ledger is append-only');

-- Current state of each agent; the history is in the ledger.
CREATE TABLE agents (
    name          TEXT PRIMARY KEY,
    agent_id      TEXT NOT NULL UNIQUE,
    public_key    TEXT NOT NULL,
    kid           TEXT NOT NULL UNIQUE,
    charter_hash  TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    created_at    TEXT NOT NULL,
    revoked_at    TEXT,
    revoked_reason TEXT
);

-- Every charter ever issued (an agent update issues a new one).
CREATE TABLE charters (
    hash        TEXT PRIMARY KEY,
    agent_name  TEXT NOT NULL,
    body        BYTEA NOT NULL,
    issued_at   TEXT NOT NULL
);
CREATE INDEX charters_agent ON charters(agent_name);
