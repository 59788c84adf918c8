-- The witnesses this log submits its checkpoints to (charter witness add URL VKEY), and the
-- cosignatures they returned. A cosignature line is appended to its checkpoint's note
-- whenever the note is handed out (charter audit checkpoint, audit_checkpoint, exports).
CREATE TABLE witnesses (
    name        TEXT PRIMARY KEY,              -- the witness key's name (from its vkey)
    vkey        TEXT NOT NULL UNIQUE,          -- C2SP vkey, type 0x04 (tlog-cosignature/v1)
    url         TEXT NOT NULL,                 -- submission prefix; POST <url>/add-checkpoint
    size        INTEGER NOT NULL DEFAULT 0 CHECK (size >= 0),  -- the size it last cosigned
    added_at    TEXT NOT NULL,
    last_ok     TEXT,
    last_error  TEXT,
    last_try    TEXT
);

CREATE TABLE cosignatures (
    size        INTEGER NOT NULL REFERENCES checkpoints(size),
    witness     TEXT NOT NULL,                 -- key name
    line        TEXT NOT NULL,                 -- the note signature line, verbatim
    created_at  TEXT NOT NULL,
    PRIMARY KEY (size, witness)
);

CREATE TRIGGER cosignatures_no_update BEFORE UPDATE ON cosignatures
BEGIN
    SELECT RAISE(ABORT, 'cosignatures are append-only');
END;
