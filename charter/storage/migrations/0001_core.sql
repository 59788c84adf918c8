-- Core schema: ledger metadata, the append-only ledger, agents and their charters.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One row per ledger entry. `body` is the entry's canonical JSON (RFC 8785), signature
-- included: it is the only source of truth; the other columns are indexes over it.
CREATE TABLE ledger (
    seq      INTEGER PRIMARY KEY CHECK (seq >= 0),
    prev     TEXT NOT NULL UNIQUE,
    hash     TEXT NOT NULL UNIQUE,
    ts       TEXT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    phase    TEXT NOT NULL,
    outcome  TEXT,
    call_id  TEXT,
    body     BLOB NOT NULL
);
CREATE INDEX ledger_actor_seq ON ledger(actor, seq);
CREATE INDEX ledger_action_seq ON ledger(action, seq);
CREATE INDEX ledger_call ON ledger(call_id);

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

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
    body        BLOB NOT NULL,
    issued_at   TEXT NOT NULL
);
CREATE INDEX charters_agent ON charters(agent_name);
