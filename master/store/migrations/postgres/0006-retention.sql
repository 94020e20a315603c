-- Mirror of ../0006-retention.sql: when a finished run's log and files were expired by retention.
ALTER TABLE runs ADD COLUMN log_expired_at TIMESTAMPTZ;
ALTER TABLE runs ADD COLUMN files_expired_at TIMESTAMPTZ;
CREATE INDEX runs_log_expiry ON runs (finished_at) WHERE log_expired_at IS NULL AND log_bytes > 0;
-- A researcher's task list, newest first, one page: an index walk that stops after the page.
CREATE INDEX tasks_owner_id ON tasks (owner_id, id);
