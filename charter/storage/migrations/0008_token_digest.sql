-- The SHA-256 (hex) of each issued token's full claim set (JSON, sorted keys). A token
-- verifies only if its claims are exactly those issued under its id: no claim (exp included)
-- can be re-signed, even with the issuer key. NULL for tokens issued before this column.
ALTER TABLE tokens ADD COLUMN digest TEXT;
