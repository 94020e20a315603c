-- Mirror of ../0002-runs-task-status-index.sql: a task's status is derived from a count of its
-- runs per state after every run change; this index answers that count without reading the runs.
CREATE INDEX runs_task_status ON runs (task_id, status);
