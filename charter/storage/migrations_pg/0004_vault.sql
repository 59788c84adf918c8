-- PostgreSQL translation of migrations/0004_vault.sql: encrypted secret versions and the
-- vault's key state. Values are stored only as XChaCha20-Poly1305 ciphertexts.

-- One row per vault (a single row): its random id and the current master key version.
CREATE TABLE vault_state (
    id           BIGINT PRIMARY KEY CHECK (id = 1),
    vault_id     TEXT NOT NULL,
    key_version  BIGINT NOT NULL CHECK (key_version >= 1),
    key_check    BYTEA NOT NULL
);

-- One row per secret name. `last_version` survives `rm` so a re-created secret never
-- reuses a version number the ledger has already mentioned. `system` stays an integer 0/1
-- (as in SQLite) so the repositories read and write the same values on both backends.
CREATE TABLE vault_secrets (
    name            TEXT PRIMARY KEY,
    description     TEXT NOT NULL DEFAULT '',
    allowed_hosts   TEXT NOT NULL DEFAULT '[]',
    system          BIGINT NOT NULL DEFAULT 0 CHECK (system IN (0, 1)),
    current_version BIGINT,
    last_version    BIGINT NOT NULL CHECK (last_version >= 1),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

-- Every stored version of every secret. The associated data of each ciphertext binds the
-- vault id, name, version and key version, so rows cannot be swapped or replayed.
CREATE TABLE vault_versions (
    name        TEXT NOT NULL REFERENCES vault_secrets(name),
    version     BIGINT NOT NULL CHECK (version >= 1),
    key_version BIGINT NOT NULL CHECK (key_version >= 1),
    nonce       BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
