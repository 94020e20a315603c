-- Site governance: organizations, projects, and reviewers' signatures of image digests.
-- A registry without any project keeps the old rules (a researcher may send a task to any
-- enabled site); as soon as one project exists, tasks name a project and reach only its sites.
CREATE TABLE organizations (
  id          INTEGER PRIMARY KEY,
  name        TEXT NOT NULL UNIQUE,
  created_at  TEXT NOT NULL
);
ALTER TABLE principals ADD COLUMN organization_id INTEGER REFERENCES organizations(id);

CREATE TABLE projects (
  id          INTEGER PRIMARY KEY,
  name        TEXT NOT NULL UNIQUE,
  created_at  TEXT NOT NULL
);
-- Sites and researchers of a project; looked up both ways (a task's sites, a researcher's projects).
CREATE TABLE project_members (
  project_id    INTEGER NOT NULL REFERENCES projects(id),
  principal_id  INTEGER NOT NULL REFERENCES principals(id),
  PRIMARY KEY (project_id, principal_id)
);
CREATE INDEX project_members_principal ON project_members (principal_id, project_id);
ALTER TABLE tasks ADD COLUMN project_id INTEGER REFERENCES projects(id);

-- A signature is over the digest alone (sha256:…), made with the reviewer's own Ed25519 key; the
-- registry stores it beside the digest but is not trusted for it: sites verify against the keys
-- they trust. One signature per key and digest.
CREATE TABLE image_signatures (
  id          INTEGER PRIMARY KEY,
  digest      TEXT NOT NULL,
  key_id      TEXT NOT NULL,
  public_key  TEXT NOT NULL,
  signature   TEXT NOT NULL,
  signer      TEXT NOT NULL,
  posted_by   INTEGER NOT NULL REFERENCES principals(id),
  created_at  TEXT NOT NULL,
  UNIQUE (digest, key_id)
);
