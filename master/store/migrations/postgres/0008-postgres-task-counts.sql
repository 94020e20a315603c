-- Mirror of ../0006-retention.sql's task_counts: tasks and their config bytes per owner and
-- status, kept by triggers in the transaction that changes the task. The open-task quota and the
-- config quota checked at every task creation, and a task list's `total`, read a few counter rows
-- instead of counting every task the researcher (or the registry) ever kept.
--
-- Concurrency: a counter row is updated under a row lock held until the changing transaction
-- ends, so two transactions on any registry processes add up rather than overwrite. One row per
-- owner and status made every task of a researcher wait for the others' transactions: at 100
-- single-site tasks/s from 4 researchers, 200 ms per status change on average and up to 7.5 s
-- (bench:scale, pg_stat_statements). So each owner's counters are split into 64 slots by task id,
-- which readers add up: two tasks wait for each other only when their ids share a slot (and the
-- transactions of one task are serialized by its own row lock anyway). A transaction that moves
-- counters in opposite directions to another's may deadlock with it; PostgreSQL aborts one, which
-- the store retries.
--
-- Registries of the previous version may still write while this runs: the lock keeps the backfill
-- and the triggers in step (no task is counted twice or missed).
LOCK TABLE tasks IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE task_counts (
  owner_id      BIGINT NOT NULL,
  status        TEXT NOT NULL,
  slot          SMALLINT NOT NULL,
  n             INTEGER NOT NULL,
  config_bytes  BIGINT NOT NULL,
  PRIMARY KEY (owner_id, status, slot)
);
INSERT INTO task_counts (owner_id, status, slot, n, config_bytes)
  SELECT owner_id, status, id % 64, COUNT(*), COALESCE(SUM(config_bytes), 0) FROM tasks GROUP BY 1, 2, 3;

CREATE FUNCTION pht_task_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    UPDATE task_counts SET n = n - 1, config_bytes = config_bytes - OLD.config_bytes
      WHERE owner_id = OLD.owner_id AND status = OLD.status AND slot = OLD.id % 64;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO task_counts (owner_id, status, slot, n, config_bytes)
      VALUES (NEW.owner_id, NEW.status, NEW.id % 64, 1, NEW.config_bytes)
      ON CONFLICT (owner_id, status, slot)
      DO UPDATE SET n = task_counts.n + 1, config_bytes = task_counts.config_bytes + EXCLUDED.config_bytes;
  END IF;
  RETURN NULL;
END;
$$;
CREATE TRIGGER task_counts_insert_delete AFTER INSERT OR DELETE ON tasks FOR EACH ROW
  EXECUTE FUNCTION pht_task_counts();
CREATE TRIGGER task_counts_update AFTER UPDATE OF id, owner_id, status, config_bytes ON tasks FOR EACH ROW
  WHEN (OLD.id IS DISTINCT FROM NEW.id OR OLD.owner_id IS DISTINCT FROM NEW.owner_id
    OR OLD.status IS DISTINCT FROM NEW.status OR OLD.config_bytes IS DISTINCT FROM NEW.config_bytes)
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
