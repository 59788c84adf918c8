-- PostgreSQL translation of migrations/0002_merkle.sql: the RFC 9162 Merkle tree over the
-- ledger entries, and the log's signed checkpoints. (SQLite's WITHOUT ROWID has no
-- counterpart: a PostgreSQL table is a heap with its primary key index either way.)

-- Perfect subtrees: node (level, idx) covers leaves [idx * 2^level, (idx + 1) * 2^level) and
-- is written, in the append transaction, as soon as the ledger holds all of them. Level 0
-- holds the leaf hashes SHA-256(0x00 || entry bytes). About 2n rows for n entries.
CREATE TABLE merkle_nodes (
    level  BIGINT NOT NULL CHECK (level >= 0 AND level < 64),
    idx    BIGINT NOT NULL CHECK (idx >= 0),
    hash   BYTEA  NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (level, idx)
);

CREATE TRIGGER merkle_nodes_no_update BEFORE UPDATE ON merkle_nodes
    FOR EACH ROW EXECUTE FUNCTION charter_append_only('the Merkle tree is append-only');
CREATE TRIGGER merkle_nodes_no_delete BEFORE DELETE ON merkle_nodes
    FOR EACH ROW EXECUTE FUNCTION charter_append_only('the Merkle tree is append-only');
CREATE TRIGGER merkle_nodes_no_truncate BEFORE TRUNCATE ON merkle_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION charter_append_only('the Merkle tree is append-only');

-- Every checkpoint the log key signed: the C2SP signed note, verbatim.
CREATE TABLE checkpoints (
    size        BIGINT PRIMARY KEY CHECK (size >= 0),
    root        BYTEA  NOT NULL CHECK (octet_length(root) = 32),
    note        TEXT   NOT NULL,
    created_at  TEXT   NOT NULL
);

CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION charter_append_only('signed checkpoints are append-only');
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION charter_append_only('signed checkpoints are append-only');
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION charter_append_only('signed checkpoints are append-only');
