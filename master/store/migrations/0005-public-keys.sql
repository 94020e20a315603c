-- Public keys the registry relays (it never holds a private key): sites and researchers register
-- their own, an admin registers trusted third parties (TTPs, with their file service URL).
-- rotations: the JSON list of rotation statements, each signed by the key it replaces, so that
-- clients which pinned an older fingerprint can follow the chain. A revoked key is kept (for the
-- record) but no longer handed out.
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
