-- No-op on SQLite, kept so that both engines share one numbering. PostgreSQL's 0008 keeps the
-- task_counts counters by triggers, as SQLite has since 0006.
SELECT 1;
