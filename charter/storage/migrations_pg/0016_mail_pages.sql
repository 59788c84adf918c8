-- PostgreSQL translation of migrations/0016_mail_pages.sql: the send log loses its
-- UNIQUE(message_id) index (a row moves between states by (agent, created_at, message_id),
-- matching exactly one row), and the rate count's index holds the status so the count reads
-- only the index.
ALTER TABLE mail_sent DROP CONSTRAINT mail_sent_message_id_key;
DROP INDEX mail_sent_agent_time;
CREATE INDEX mail_sent_agent_time ON mail_sent(agent, created_at, status);
