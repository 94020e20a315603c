-- Mirror of ../0006-retention.sql's task_counts: tasks and their config bytes per owner and
-- status, kept by triggers in the transaction that changes the task. The open-task quota and the
-- config quota checked at every task creation, and a task list's `total`, read a few counter rows
-- instead of counting every task the researcher (or the registry) ever kept.
--
-- Concurrency: each owner has its own rows, so researchers never wait for each other. A creation
-- (INSERT ... ON CONFLICT DO UPDATE) or a status change updates its owner's row under a row lock
-- held until its transaction ends, so two transactions of one owner, on any registry process,
-- add up rather than overwrite; a creation already holds the owner's principals row (the quota's
-- lock) before it inserts. A transaction that changes two tasks of one owner in opposite
-- directions can deadlock with another; PostgreSQL aborts one, which the store retries.
--
-- Registries of the previous version may still write while this runs: the lock keeps the backfill
-- and the triggers in step (no task is counted twice or missed).
LOCK TABLE tasks IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE task_counts (
  owner_id      BIGINT NOT NULL,
  status        TEXT NOT NULL,
  n             INTEGER NOT NULL,
  config_bytes  BIGINT NOT NULL,
  PRIMARY KEY (owner_id, status)
);
INSERT INTO task_counts (owner_id, status, n, config_bytes)
  SELECT owner_id, status, COUNT(*), COALESCE(SUM(config_bytes), 0) FROM tasks GROUP BY owner_id, status;

CREATE FUNCTION pht_task_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    UPDATE task_counts SET n = n - 1, config_bytes = config_bytes - OLD.config_bytes
      WHERE owner_id = OLD.owner_id AND status = OLD.status;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO task_counts (owner_id, status, n, config_bytes) VALUES (NEW.owner_id, NEW.status, 1, NEW.config_bytes)
      ON CONFLICT (owner_id, status)
      DO UPDATE SET n = task_counts.n + 1, config_bytes = task_counts.config_bytes + EXCLUDED.config_bytes;
  END IF;
  RETURN NULL;
END;
$$;
CREATE TRIGGER task_counts_insert_delete AFTER INSERT OR DELETE ON tasks FOR EACH ROW
  EXECUTE FUNCTION pht_task_counts();
CREATE TRIGGER task_counts_update AFTER UPDATE OF owner_id, status, config_bytes ON tasks FOR EACH ROW
  WHEN (OLD.owner_id IS DISTINCT FROM NEW.owner_id OR OLD.status IS DISTINCT FROM NEW.status
    OR OLD.config_bytes IS DISTINCT FROM NEW.config_bytes)
  EXECUTE FUNCTION pht_task_counts();

CREATE FUNCTION pht_task_counts_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM task_counts;
  RETURN NULL;
END;
$$;
CREATE TRIGGER task_counts_truncate AFTER TRUNCATE ON tasks FOR EACH STATEMENT
  EXECUTE FUNCTION pht_task_counts_truncate();

-- Read by nothing any more: the config quota reads task_counts (SQLite dropped it in 0006).
DROP INDEX tasks_owner_config_bytes;
