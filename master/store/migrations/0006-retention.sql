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

-- Tasks and their config bytes per owner and status, kept by triggers. A task list's `total` and
-- the config quota checked at every task creation read a COUNT or SUM over every task of the
-- researcher (or of the registry, for an admin), which grew with the history; now they add a few
-- counters. PostgreSQL keeps counting (its concurrent writers would all update the same rows).
CREATE TABLE task_counts (
  owner_id      INTEGER NOT NULL,
  status        TEXT NOT NULL,
  n             INTEGER NOT NULL,
  config_bytes  INTEGER NOT NULL,
  PRIMARY KEY (owner_id, status)
) WITHOUT ROWID;
INSERT INTO task_counts (owner_id, status, n, config_bytes)
  SELECT owner_id, status, COUNT(*), SUM(config_bytes) FROM tasks GROUP BY owner_id, status;
CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks BEGIN
  INSERT INTO task_counts (owner_id, status, n, config_bytes) VALUES (NEW.owner_id, NEW.status, 1, NEW.config_bytes)
    ON CONFLICT (owner_id, status) DO UPDATE SET n = n + 1, config_bytes = config_bytes + excluded.config_bytes;
END;
CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks BEGIN
  UPDATE task_counts SET n = n - 1, config_bytes = config_bytes - OLD.config_bytes
    WHERE owner_id = OLD.owner_id AND status = OLD.status;
END;
CREATE TRIGGER task_counts_update AFTER UPDATE OF owner_id, status, config_bytes ON tasks
  WHEN OLD.owner_id IS NOT NEW.owner_id OR OLD.status IS NOT NEW.status OR OLD.config_bytes IS NOT NEW.config_bytes BEGIN
  UPDATE task_counts SET n = n - 1, config_bytes = config_bytes - OLD.config_bytes
    WHERE owner_id = OLD.owner_id AND status = OLD.status;
  INSERT INTO task_counts (owner_id, status, n, config_bytes) VALUES (NEW.owner_id, NEW.status, 1, NEW.config_bytes)
    ON CONFLICT (owner_id, status) DO UPDATE SET n = n + 1, config_bytes = config_bytes + excluded.config_bytes;
END;

-- Index entries every task and run pays for, that no query needs any more: the config quota reads
-- task_counts now, and (task_id, status) serves every lookup by task that (task_id) did.
DROP INDEX tasks_owner_config_bytes;
DROP INDEX runs_task;
