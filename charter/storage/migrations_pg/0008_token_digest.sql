-- PostgreSQL translation of migrations/0008_token_digest.sql: the SHA-256 (hex) of each
-- issued token's full claim set; NULL for tokens issued before this column.
ALTER TABLE tokens ADD COLUMN digest TEXT;
