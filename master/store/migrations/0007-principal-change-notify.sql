-- No-op on SQLite, kept so that both engines share one numbering. PostgreSQL's 0007 adds a
-- trigger that tells every registry process when a principal changes (their caches of
-- authenticated keys must forget it); a SQLite file has one registry process, which sees a change
-- made by another process (`node master revoke`) through the file's data_version instead.
SELECT 1;
