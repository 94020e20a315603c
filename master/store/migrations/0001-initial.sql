-- Principals: sites (one API key each) and users (researchers, admins). Secrets are stored only
-- as SHA-256 hashes: they are 256-bit random values, so a slow hash would add nothing.
CREATE TABLE principals (
  id          INTEGER PRIMARY KEY,
  kind        TEXT NOT NULL CHECK (kind IN ('site', 'user')),
  name        TEXT NOT NULL,
  role        TEXT NOT NULL CHECK (role IN ('site', 'researcher', 'admin')),
  key_hash    TEXT NOT NULL UNIQUE,
  enabled     INTEGER NOT NULL DEFAULT 1,
  created_at  TEXT NOT NULL,
  last_seen   TEXT,
  UNIQUE (kind, name)
);

CREATE TABLE tasks (
  id           INTEGER PRIMARY KEY,
  owner_id     INTEGER NOT NULL REFERENCES principals(id),
  name         TEXT,
  image        TEXT NOT NULL,
  -- Opaque to the registry: bytes plus a content type, so encrypted configs fit unchanged.
  config       BLOB,
  config_type  TEXT NOT NULL,
  status       TEXT NOT NULL,
  cancelled    INTEGER NOT NULL DEFAULT 0,
  created_at   TEXT NOT NULL,
  updated_at   TEXT NOT NULL
);
CREATE INDEX tasks_owner_status ON tasks (owner_id, status, id);
CREATE INDEX tasks_status ON tasks (status, id);

CREATE TABLE runs (
  id                INTEGER PRIMARY KEY,
  task_id           INTEGER NOT NULL REFERENCES tasks(id),
  site_id           INTEGER NOT NULL REFERENCES principals(id),
  status            TEXT NOT NULL,
  attempt           INTEGER NOT NULL DEFAULT 0,
  lease_expires_at  INTEGER,
  cancel_requested  INTEGER NOT NULL DEFAULT 0,
  last_contact_at   INTEGER,
  exit_code         INTEGER,
  reason            TEXT,
  digest            TEXT,
  duration_ms       INTEGER,
  progress_current  REAL,
  progress_total    REAL,
  progress_message  TEXT,
  log_bytes         INTEGER NOT NULL DEFAULT 0,
  log_truncated     INTEGER NOT NULL DEFAULT 0,
  created_at        TEXT NOT NULL,
  started_at        TEXT,
  finished_at       TEXT,
  UNIQUE (task_id, site_id)
);
-- The hand-out query walks this index: a site's queued runs in posting order.
CREATE INDEX runs_site_status ON runs (site_id, status, id);
CREATE INDEX runs_task ON runs (task_id);
CREATE INDEX runs_status_lease ON runs (status, lease_expires_at);

CREATE TABLE run_logs (
  id      INTEGER PRIMARY KEY,
  run_id  INTEGER NOT NULL REFERENCES runs(id),
  text    TEXT NOT NULL
);
CREATE INDEX run_logs_run ON run_logs (run_id, id);

CREATE TABLE run_files (
  run_id      INTEGER NOT NULL REFERENCES runs(id),
  name        TEXT NOT NULL,
  size        INTEGER NOT NULL,
  sha256      TEXT NOT NULL,
  stored_as   TEXT NOT NULL,
  created_at  TEXT NOT NULL,
  PRIMARY KEY (run_id, name)
);
