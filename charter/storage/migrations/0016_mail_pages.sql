-- Fewer pages per local send (issue 26). A send to another agent of the home commits its
-- intent, its send-log row, the copy in the recipient's mailbox and its outcome in one
-- transaction, and a durable commit costs more the more pages it writes.
--
-- The send log's UNIQUE(message_id) index is gone: each row put one random key in it (one
-- more page per commit), and nothing looks a row up by its Message-ID alone. Charter makes
-- every Message-ID from 128 random bits, a row moves between states by (agent, created_at,
-- message_id) and only when exactly one row matches (charter/storage/mail.py).
--
-- The rate count (an agent's rows of the last hour, `aborted` rows of earlier versions
-- excepted) now reads only its index, which holds the status: it read every counted row
-- from the table.
CREATE TABLE mail_sent_0016 (
    id           INTEGER PRIMARY KEY,
    message_id   TEXT NOT NULL,
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
INSERT INTO mail_sent_0016(id, message_id, agent, sender, recipients, subject, digest, size,
                           transport, status, intent_seq, reply, created_at, finished_at)
    SELECT id, message_id, agent, sender, recipients, subject, digest, size, transport, status,
           intent_seq, reply, created_at, finished_at
    FROM mail_sent ORDER BY id;
DROP TABLE mail_sent;
ALTER TABLE mail_sent_0016 RENAME TO mail_sent;
CREATE INDEX mail_sent_agent_time ON mail_sent(agent, created_at, status);
