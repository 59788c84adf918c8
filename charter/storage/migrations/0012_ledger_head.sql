-- The one-row head that a PostgreSQL write transaction locks (SELECT ... FOR UPDATE) to
-- serialize writers, as BEGIN IMMEDIATE does here (charter/storage/pg.py). SQLite never reads
-- it: its write lock is the database's own. Kept in both schemas so they stay the same.
CREATE TABLE ledger_head (
  id INTEGER PRIMARY KEY CHECK (id = 1)
);
INSERT INTO ledger_head(id) VALUES (1);
