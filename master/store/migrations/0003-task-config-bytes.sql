-- Per-researcher quotas count the config bytes a researcher keeps stored. The size is kept beside
-- the blob so that the sum over a researcher's tasks is read from this covering index alone,
-- never from the config blobs themselves.
ALTER TABLE tasks ADD COLUMN config_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE tasks SET config_bytes = COALESCE(length(config), 0);
CREATE INDEX tasks_owner_config_bytes ON tasks (owner_id, config_bytes);
