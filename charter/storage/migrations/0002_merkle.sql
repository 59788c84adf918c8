-- RFC 9162 Merkle tree over the ledger entries, and the log's signed checkpoints.
-- Homes created before this migration get their tree filled in by charter.storage.tlog on
-- the next append or checkpoint (SQL cannot hash): see `sync_tree`.

-- Perfect subtrees: node (level, idx) covers leaves [idx * 2^level, (idx + 1) * 2^level) and
-- is written, in the append transaction, as soon as the ledger holds all of them. Level 0
-- holds the leaf hashes SHA-256(0x00 || entry bytes). About 2n rows for n entries.
CREATE TABLE merkle_nodes (
    level  INTEGER NOT NULL CHECK (level >= 0 AND level < 64),
    idx    INTEGER NOT NULL CHECK (idx >= 0),
    hash   BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;

CREATE TRIGGER merkle_nodes_no_update BEFORE UPDATE ON merkle_nodes
BEGIN
    SELECT RAISE(ABORT, 'the Merkle tree is append-only');
END;

CREATE TRIGGER merkle_nodes_no_delete BEFORE DELETE ON merkle_nodes
BEGIN
    SELECT RAISE(ABORT, 'the Merkle tree is append-only');
END;

-- Every checkpoint the log key signed: the C2SP signed note, verbatim.
CREATE TABLE checkpoints (
    size        INTEGER PRIMARY KEY CHECK (size >= 0),
    root        BLOB    NOT NULL CHECK (length(root) = 32),
    note        TEXT    NOT NULL,
    created_at  TEXT    NOT NULL
);

CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'signed checkpoints are append-only');
END;

CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'signed checkpoints are append-only');
END;
