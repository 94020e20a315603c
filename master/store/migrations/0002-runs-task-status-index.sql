-- Task status is derived from a count of its runs per state after every run change; with this
-- covering index that count never touches the run rows, so a task sent to a thousand sites does
-- not make each of its thousand claims read a thousand rows.
CREATE INDEX runs_task_status ON runs (task_id, status);
