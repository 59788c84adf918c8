-- Every append writes (and syncs) one B-tree page per index on the ledger. Two indexes were
-- never read: nothing looks an entry up by its hash or its call id. `hash` stays a column
-- (the head query returns it); its uniqueness follows from UNIQUE(prev) along the chain,
-- and the verifier checks the chain itself. UNIQUE(prev) stays: the database refuses a
-- fork even from a writer that skipped BEGIN IMMEDIATE.
-- SQLite cannot drop a column constraint in place, so the table is rebuilt.

DROP TRIGGER ledger_no_update;
DROP TRIGGER ledger_no_delete;
DROP INDEX ledger_call;

CREATE TABLE ledger_lean (
    seq      INTEGER PRIMARY KEY CHECK (seq >= 0),
    prev     TEXT NOT NULL UNIQUE,
    hash     TEXT NOT NULL,
    ts       TEXT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    phase    TEXT NOT NULL,
    outcome  TEXT,
    call_id  TEXT,
    body     BLOB NOT NULL
);
INSERT INTO ledger_lean(seq, prev, hash, ts, actor, action, phase, outcome, call_id, body)
    SELECT seq, prev, hash, ts, actor, action, phase, outcome, call_id, body FROM ledger ORDER BY seq;
DROP TABLE ledger;
ALTER TABLE ledger_lean RENAME TO ledger;
CREATE INDEX ledger_actor_seq ON ledger(actor, seq);
CREATE INDEX ledger_action_seq ON ledger(action, seq);

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;
