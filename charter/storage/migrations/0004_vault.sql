-- The secrets vault: encrypted secret versions and the vault's key state.
-- Values are stored only as XChaCha20-Poly1305 ciphertexts (see charter/storage/vault.py).

-- One row per vault (a single row): its random id and the current master key version.
-- `key_check` is a ciphertext of a fixed text under the current master key, so a wrong key
-- is reported as such (and not as a corrupt secret).
CREATE TABLE vault_state (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    vault_id     TEXT NOT NULL,
    key_version  INTEGER NOT NULL CHECK (key_version >= 1),
    key_check    BLOB NOT NULL
);

-- One row per secret name. `last_version` survives `rm` so a re-created secret never
-- reuses a version number the ledger has already mentioned.
CREATE TABLE vault_secrets (
    name            TEXT PRIMARY KEY,
    description     TEXT NOT NULL DEFAULT '',
    allowed_hosts   TEXT NOT NULL DEFAULT '[]',
    system          INTEGER NOT NULL DEFAULT 0 CHECK (system IN (0, 1)),
    current_version INTEGER,
    last_version    INTEGER NOT NULL CHECK (last_version >= 1),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

-- Every stored version of every secret. The associated data of each ciphertext binds the
-- vault id, name, version and key version, so rows cannot be swapped or replayed.
CREATE TABLE vault_versions (
    name        TEXT NOT NULL REFERENCES vault_secrets(name),
    version     INTEGER NOT NULL CHECK (version >= 1),
    key_version INTEGER NOT NULL CHECK (key_version >= 1),
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
