-- Mirror of ../0005-public-keys.sql: the public keys the registry relays (it never holds a private
-- key). Same text columns as SQLite (JSON in rotations and public_key; ISO times), so both
-- backends share one set of registration rules (master/public-keys.ts).
CREATE TABLE public_keys (
  kind TEXT NOT NULL CHECK (kind IN ('site', 'user', 'ttp')),
  name TEXT NOT NULL,
  public_key TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  rotations TEXT NOT NULL DEFAULT '[]',
  url TEXT,
  revoked_at TEXT,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (kind, name)
);
