-- PostgreSQL translation of migrations/0010_witnesses.sql: the witnesses this log submits
-- its checkpoints to, and the cosignatures they returned.
CREATE TABLE witnesses (
    name        TEXT PRIMARY KEY,              -- the witness key's name (from its vkey)
    vkey        TEXT NOT NULL UNIQUE,          -- C2SP vkey, type 0x04 (tlog-cosignature/v1)
    url         TEXT NOT NULL,                 -- submission prefix; POST <url>/add-checkpoint
    size        BIGINT NOT NULL DEFAULT 0 CHECK (size >= 0),  -- the size it last cosigned
    added_at    TEXT NOT NULL,
    last_ok     TEXT,
    last_error  TEXT,
    last_try    TEXT
);

CREATE TABLE cosignatures (
    size        BIGINT NOT NULL REFERENCES checkpoints(size),
    witness     TEXT NOT NULL,                 -- key name
    line        TEXT NOT NULL,                 -- the note signature line, verbatim
    created_at  TEXT NOT NULL,
    PRIMARY KEY (size, witness)
);

-- As in SQLite, only UPDATE is refused (the SQLite schema has no delete trigger here).
CREATE TRIGGER cosignatures_no_update BEFORE UPDATE ON cosignatures
    FOR EACH ROW EXECUTE FUNCTION charter_append_only('cosignatures are append-only');
