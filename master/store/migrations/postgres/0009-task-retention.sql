-- Mirror of ../0009-task-retention.sql: finished tasks by when they ended, for retention.runs.
CREATE INDEX tasks_finished ON tasks (updated_at) WHERE status IN ('completed', 'failed', 'cancelled');
