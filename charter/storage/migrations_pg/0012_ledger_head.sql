-- PostgreSQL translation of migrations/0012_ledger_head.sql: the one-row head every write
-- transaction locks first (SELECT id FROM ledger_head WHERE id = 1 FOR UPDATE), so writers
-- run one after the other as under SQLite's BEGIN IMMEDIATE and the ledger append reads its
-- head (max seq) knowing no other writer can append before it commits.
CREATE TABLE ledger_head (
  id BIGINT PRIMARY KEY CHECK (id = 1)
);
INSERT INTO ledger_head(id) VALUES (1);
