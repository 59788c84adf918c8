-- Human approval of sensitive calls, and the owner's kill switch (docs/APPROVALS.md).
-- The ledger holds the signed history (approval.request / approval.answer / approval.approve /
-- approval.deny, owner.lockdown / owner.lockdown.lift / agent.reinstate); these tables are
-- the current state the server and the CLI query.

-- One row per approval request. `summary` is the redacted call summary (JSON) shown to the
-- human; `args_hash` is the SHA-256 of the call's canonical arguments: an approval runs only
-- a call with exactly these arguments. `expires_at`: until when a pending request may be
-- decided, then (once approved) until when the approved call may run.
CREATE TABLE approvals (
    id              TEXT PRIMARY KEY,
    mode            TEXT NOT NULL CHECK (mode IN ('client', 'owner')),
    agent           TEXT NOT NULL,
    agent_id        TEXT NOT NULL,
    tool            TEXT NOT NULL,
    action          TEXT NOT NULL,
    call_id         TEXT NOT NULL,
    args_hash       TEXT NOT NULL,
    scopes          TEXT NOT NULL,
    summary         TEXT NOT NULL,
    status          TEXT NOT NULL
        CHECK (status IN ('pending', 'approved', 'denied', 'used', 'cancelled')),
    requested_at    TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    request_entry   TEXT NOT NULL,
    decided_at      TEXT,
    decided_by      TEXT,
    decision_seq    INTEGER,
    reason          TEXT,
    used_at         TEXT,
    used_call       TEXT
);
CREATE INDEX approvals_lookup ON approvals(agent, tool, args_hash, status);
CREATE INDEX approvals_status ON approvals(status, expires_at);

-- Kill switch: one row per `charter lockdown`; the open one has lifted_at NULL.
CREATE TABLE lockdowns (
    id          INTEGER PRIMARY KEY,
    started_at  TEXT NOT NULL,
    reason      TEXT,
    lifted_at   TEXT
);

-- The agents a lockdown revoked: only these may be reinstated, one by one.
CREATE TABLE lockdown_agents (
    lockdown_id     INTEGER NOT NULL REFERENCES lockdowns(id),
    agent           TEXT NOT NULL,
    reinstated_at   TEXT,
    PRIMARY KEY (lockdown_id, agent)
);
