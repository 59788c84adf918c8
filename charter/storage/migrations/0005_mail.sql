-- Mail: the owner's mail server settings, every message an agent sent, the local mailboxes.
-- The mail password is never here: it is the vault's system secret `charter:mail-password`.

-- The owner's SMTP/IMAP settings (one row; absent = the local transport).
CREATE TABLE mail_settings (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    smtp_host      TEXT NOT NULL,
    smtp_port      INTEGER NOT NULL CHECK (smtp_port BETWEEN 1 AND 65535),
    smtp_security  TEXT NOT NULL CHECK (smtp_security IN ('starttls', 'tls', 'none')),
    imap_host      TEXT,
    imap_port      INTEGER CHECK (imap_port BETWEEN 1 AND 65535),
    imap_security  TEXT CHECK (imap_security IN ('tls', 'starttls', 'none')),
    username       TEXT NOT NULL,
    -- Extra CA certificates (PEM) to trust besides the system's, for a private mail server.
    ca_pem         TEXT,
    timeout_s      INTEGER NOT NULL CHECK (timeout_s BETWEEN 1 AND 600),
    updated_at     TEXT NOT NULL
);

-- One row per message that passed policy, whatever became of it. It is the send log behind
-- `charter mail outbox`, the rate-limit counter (rows per agent in the last hour, `aborted`
-- excepted) and the guard against sending twice: `message_id` is unique, and a row moves
-- from `reserved` to `sending` exactly once, just before the transport gets the message.
--   reserved -> aborted   the intent could not be committed: nothing was sent
--   reserved -> sending -> sent | failed
-- Bodies are never stored here, only the canonical digest (docs/EMAIL.md).
CREATE TABLE mail_sent (
    id           INTEGER PRIMARY KEY,
    message_id   TEXT NOT NULL UNIQUE,
    agent        TEXT NOT NULL,
    sender       TEXT NOT NULL,
    recipients   TEXT NOT NULL,  -- JSON {"to": [...], "cc": [...], "bcc": [...]}
    subject      TEXT NOT NULL,
    digest       TEXT NOT NULL,
    size         INTEGER NOT NULL,
    transport    TEXT NOT NULL CHECK (transport IN ('local', 'smtp')),
    status       TEXT NOT NULL
                 CHECK (status IN ('reserved', 'sending', 'sent', 'failed', 'aborted')),
    intent_seq   INTEGER,
    reply        TEXT,
    created_at   TEXT NOT NULL,
    finished_at  TEXT
);
CREATE INDEX mail_sent_agent_time ON mail_sent(agent, created_at);

-- The local transport's mailboxes: one copy of a message per recipient agent.
CREATE TABLE mail_local_inbox (
    id            INTEGER PRIMARY KEY,
    agent         TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    sender_agent  TEXT NOT NULL,
    raw           BLOB NOT NULL,
    received_at   TEXT NOT NULL,
    seen          INTEGER NOT NULL DEFAULT 0 CHECK (seen IN (0, 1)),
    UNIQUE (agent, message_id)
);
CREATE INDEX mail_local_inbox_agent ON mail_local_inbox(agent, id);
