-- PostgreSQL translation of migrations/0007_ledger_lean.sql: two ledger indexes were never
-- read (an entry is never looked up by its hash or its call id), and every append pays for
-- them. `hash` stays a column; UNIQUE(prev) stays (the database refuses a fork). SQLite
-- rebuilt the table to drop the constraint; PostgreSQL drops it in place (the append-only
-- triggers stay as they are).
ALTER TABLE ledger DROP CONSTRAINT ledger_hash_key;
DROP INDEX ledger_call;
