-- PostgreSQL translation of migrations/0015_pages_per_commit.sql. Merkle nodes are keyed by
-- position, `pos` = (last leaf the node covers) * 64 + level, as in SQLite: the nodes one
-- append writes are consecutive keys at the right edge of one index, where the (level, idx)
-- key touched an index page per level. The ledger refuses a fork by its links (trigger
-- ledger_links: an entry names the hash of the entry before it) instead of UNIQUE(prev), whose
-- index put every append on a random page. (The tokens change there, WITHOUT ROWID, has no
-- counterpart: a PostgreSQL table is a heap with its primary-key index either way.)
ALTER TABLE merkle_nodes DISABLE TRIGGER merkle_nodes_no_update;
ALTER TABLE merkle_nodes ADD COLUMN pos BIGINT;
UPDATE merkle_nodes SET pos = ((((idx + 1) << level::int) - 1) << 6) + level;
ALTER TABLE merkle_nodes ENABLE TRIGGER merkle_nodes_no_update;
ALTER TABLE merkle_nodes ALTER COLUMN pos SET NOT NULL;
ALTER TABLE merkle_nodes DROP CONSTRAINT merkle_nodes_pkey;
ALTER TABLE merkle_nodes ADD PRIMARY KEY (pos);
ALTER TABLE merkle_nodes ADD CONSTRAINT merkle_nodes_pos_check
    CHECK (pos = ((((idx + 1) << level::int) - 1) << 6) + level);

CREATE FUNCTION charter_ledger_links() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq > 0 AND NEW.prev IS DISTINCT FROM
            (SELECT encode(sha256(body), 'hex') FROM ledger WHERE seq = NEW.seq - 1) THEN
        RAISE EXCEPTION 'a ledger entry must link to the entry before it (a fork or a gap)'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER ledger_links BEFORE INSERT ON ledger
    FOR EACH ROW EXECUTE FUNCTION charter_ledger_links();
ALTER TABLE ledger DROP CONSTRAINT ledger_prev_key;
