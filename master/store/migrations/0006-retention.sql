-- Retention (master/retention.ts): a finished run's log and result files may be expired after an
-- age set in the registry's config. The run row stays (its state, exit code, log size); these
-- say when its log or files went, so that reading them answers 410 Gone instead of nothing.
ALTER TABLE runs ADD COLUMN log_expired_at TEXT;
ALTER TABLE runs ADD COLUMN files_expired_at TEXT;
-- The sweep's seek: oldest finished runs that still have a log, without walking the history
-- already expired (the partial index holds only the runs with something left to expire).
CREATE INDEX runs_log_expiry ON runs (finished_at) WHERE log_expired_at IS NULL AND log_bytes > 0;
-- A researcher's task list (newest first, one page) walks this index backwards and stops after
-- the page; without it, every one of the researcher's tasks was sorted for each page
-- (bench:history, a temp b-tree over all of them).
CREATE INDEX tasks_owner_id ON tasks (owner_id, id);
