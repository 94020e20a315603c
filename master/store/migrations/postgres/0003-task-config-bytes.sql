-- Mirror of ../0003-task-config-bytes.sql: per-researcher quotas count the config bytes a
-- researcher keeps stored, read from this covering index, never from the config blobs.
ALTER TABLE tasks ADD COLUMN config_bytes BIGINT NOT NULL DEFAULT 0;
UPDATE tasks SET config_bytes = COALESCE(length(config), 0);
CREATE INDEX tasks_owner_config_bytes ON tasks (owner_id, config_bytes);
