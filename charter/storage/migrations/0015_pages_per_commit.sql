-- Fewer database pages per append. A durable commit's cost here grows with the pages it
-- writes (WAL frames, all synced): about 60-90 us for up to 6 pages, 400-900 us for 16-20 on
-- the machines the benchmarks ran on (BENCHMARKS.md, "Pages per commit"). A token_issue wrote
-- about 17: the Merkle tree's, the ledger's UNIQUE(prev) index's and the tokens' pages were
-- most of them.
--
-- Merkle nodes are keyed by position: `pos` = (last leaf the node covers) * 64 + level. The
-- nodes one append completes (the leaf and the perfect subtrees it closes) share the same last
-- leaf, so they are consecutive keys at the end of the tree: one page, where keying by
-- (level, idx) put each level on a page of its own. Lookups by (level, idx) compute `pos`;
-- the CHECK keeps `pos` and (level, idx) the same node.
DROP TRIGGER merkle_nodes_no_update;
DROP TRIGGER merkle_nodes_no_delete;

CREATE TABLE merkle_nodes_by_pos (
    pos    INTEGER PRIMARY KEY,
    level  INTEGER NOT NULL CHECK (level >= 0 AND level < 64),
    idx    INTEGER NOT NULL CHECK (idx >= 0),
    hash   BLOB    NOT NULL CHECK (length(hash) = 32),
    CONSTRAINT merkle_nodes_pos_check CHECK (pos = ((((idx + 1) << level) - 1) << 6) + level)
);
INSERT INTO merkle_nodes_by_pos(pos, level, idx, hash)
    SELECT ((((idx + 1) << level) - 1) << 6) + level, level, idx, hash FROM merkle_nodes
    ORDER BY 1;
DROP TABLE merkle_nodes;
ALTER TABLE merkle_nodes_by_pos RENAME TO merkle_nodes;

CREATE TRIGGER merkle_nodes_no_update BEFORE UPDATE ON merkle_nodes
BEGIN
    SELECT RAISE(ABORT, 'the Merkle tree is append-only');
END;

CREATE TRIGGER merkle_nodes_no_delete BEFORE DELETE ON merkle_nodes
BEGIN
    SELECT RAISE(ABORT, 'the Merkle tree is append-only');
END;

-- Tokens are looked up by `jti` only (introspection, revocation, verification): a table
-- clustered on it writes one page per issued token where a rowid table wrote its own page
-- and its primary-key index's.
CREATE TABLE tokens_by_jti (
    jti         TEXT PRIMARY KEY,
    kid         TEXT NOT NULL REFERENCES issuer_keys(kid),
    agent_name  TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    charter     TEXT NOT NULL,
    audience    TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    issued_at   TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    revoked_at  TEXT,
    revoked_reason TEXT,
    digest      TEXT,
    dpop_jkt    TEXT
) WITHOUT ROWID;
INSERT INTO tokens_by_jti(jti, kid, agent_name, agent_id, charter, audience, scopes, issued_at,
                          expires_at, revoked_at, revoked_reason, digest, dpop_jkt)
    SELECT jti, kid, agent_name, agent_id, charter, audience, scopes, issued_at, expires_at,
           revoked_at, revoked_reason, digest, dpop_jkt FROM tokens;
DROP TABLE tokens;
ALTER TABLE tokens_by_jti RENAME TO tokens;
CREATE INDEX tokens_kid_expires ON tokens(kid, expires_at);

-- The ledger refuses a fork by its links instead of a UNIQUE(prev) index: an entry must name
-- the hash of the entry before it (seq is the primary key, so there is one entry per seq).
-- UNIQUE(prev) put every append on a random page of its index (entry hashes are random); the
-- trigger reads one row by primary key, already in the cache, and hashes its bytes (never the
-- `hash` column, a copy: see tests/storage/test_ledger_head.py) with charter_sha256, a
-- function every Charter connection registers (charter/storage/db.py). Same refusal, even
-- from a writer that skipped BEGIN IMMEDIATE: two entries can neither share a seq nor skip one.
-- SQLite cannot drop a column constraint in place, so the table is rebuilt (as in 0007).
DROP TRIGGER ledger_no_update;
DROP TRIGGER ledger_no_delete;

CREATE TABLE ledger_linked (
    seq      INTEGER PRIMARY KEY CHECK (seq >= 0),
    prev     TEXT NOT NULL,
    hash     TEXT NOT NULL,
    ts       TEXT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    phase    TEXT NOT NULL,
    outcome  TEXT,
    call_id  TEXT,
    body     BLOB NOT NULL
);
INSERT INTO ledger_linked(seq, prev, hash, ts, actor, action, phase, outcome, call_id, body)
    SELECT seq, prev, hash, ts, actor, action, phase, outcome, call_id, body FROM ledger
    ORDER BY seq;
DROP TABLE ledger;
ALTER TABLE ledger_linked RENAME TO ledger;
CREATE INDEX ledger_actor_seq ON ledger(actor, seq);
CREATE INDEX ledger_action_seq ON ledger(action, seq);

CREATE TRIGGER ledger_links BEFORE INSERT ON ledger
WHEN NEW.seq > 0
    AND NEW.prev IS NOT (SELECT charter_sha256(body) FROM ledger WHERE seq = NEW.seq - 1)
BEGIN
    SELECT RAISE(ABORT, 'a ledger entry must link to the entry before it (a fork or a gap)');
END;

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;
