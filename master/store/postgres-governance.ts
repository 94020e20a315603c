import type pg from 'pg';
import { ERROR_CODES } from '../../shared/error-codes.js';
import type { ImageSignature } from '../../shared/governance.js';
import { ConflictError, NotFoundError, RegistryError } from '../errors.js';
import type { Principal, PrincipalKind } from './registry-store.js';
import type { GovernanceListing } from './sqlite-governance.js';

/**
 * The PostgreSQL side of governance, mirroring sqlite-governance.ts rule for rule (the same
 * errors, the same "no project defined: the old rules" fallback). Each function runs its
 * statements through `q`, bound by PostgresRegistryStore to the pool or to its transaction.
 */
export type PgQuery = <R extends pg.QueryResultRow>(
  name: string,
  text: string,
  values?: unknown[],
) => Promise<pg.QueryResult<R>>;

const UNIQUE_VIOLATION = '23505';

async function unique<T>(run: () => Promise<T>, what: string): Promise<T> {
  try {
    return await run();
  } catch (e) {
    if ((e as { code?: string }).code === UNIQUE_VIOLATION) throw new ConflictError(`${what} already exists`);
    throw e;
  }
}

export async function createOrganization(q: PgQuery, name: string): Promise<void> {
  await unique(
    () => q('insertOrg', 'INSERT INTO organizations (name, created_at) VALUES ($1, now())', [name]),
    `an organization named "${name}"`,
  );
}

export async function createProject(q: PgQuery, name: string): Promise<void> {
  await unique(
    () => q('insertProject', 'INSERT INTO projects (name, created_at) VALUES ($1, now())', [name]),
    `a project named "${name}"`,
  );
}

export async function setOrganization(q: PgQuery, kind: PrincipalKind, name: string, org: string): Promise<void> {
  const o = (await q<{ id: number }>('orgByName', 'SELECT id FROM organizations WHERE name = $1', [org])).rows[0];
  if (!o) throw new NotFoundError(`organization "${org}"`);
  const { rowCount } = await q('setOrg', 'UPDATE principals SET organization_id = $1 WHERE kind = $2 AND name = $3', [
    o.id,
    kind,
    name,
  ]);
  if (rowCount !== 1) throw new NotFoundError(`${kind} "${name}"`);
}

async function projectByName(q: PgQuery, name: string): Promise<{ id: number; name: string } | undefined> {
  return (
    await q<{ id: number; name: string }>('projectByName', 'SELECT id, name FROM projects WHERE name = $1', [name])
  ).rows[0];
}

export async function addToProject(q: PgQuery, project: string, kind: PrincipalKind, name: string): Promise<boolean> {
  const p = await projectByName(q, project);
  if (!p) throw new NotFoundError(`project "${project}"`);
  const m = (
    await q<{ id: number }>('principalByKindName', 'SELECT id FROM principals WHERE kind = $1 AND name = $2', [
      kind,
      name,
    ])
  ).rows[0];
  if (!m) throw new NotFoundError(`${kind} "${name}"`);
  // ON CONFLICT: two processes adding the same member both succeed, and exactly one reports it new.
  const { rowCount } = await q(
    'addMember',
    'INSERT INTO project_members (project_id, principal_id) VALUES ($1, $2) ON CONFLICT DO NOTHING',
    [p.id, m.id],
  );
  return rowCount === 1;
}

type ListingRow = { name: string; created_at: Date; members: string[] };

const toListing = (r: ListingRow): GovernanceListing => ({
  name: r.name,
  createdAt: r.created_at.toISOString(),
  members: r.members,
});

export async function listOrganizations(q: PgQuery): Promise<GovernanceListing[]> {
  const { rows } = await q<ListingRow>(
    'listOrgs',
    `SELECT g.name, g.created_at,
            ARRAY(SELECT kind || ':' || name FROM principals WHERE organization_id = g.id ORDER BY id) AS members
       FROM organizations g ORDER BY g.name`,
  );
  return rows.map(toListing);
}

export async function listProjects(q: PgQuery): Promise<GovernanceListing[]> {
  const { rows } = await q<ListingRow>(
    'listProjects',
    `SELECT p.name, p.created_at,
            ARRAY(SELECT x.kind || ':' || x.name FROM project_members m JOIN principals x ON x.id = m.principal_id
                   WHERE m.project_id = p.id ORDER BY x.id) AS members
       FROM projects p ORDER BY p.name`,
  );
  return rows.map(toListing);
}

async function isMember(q: PgQuery, projectId: number, principalId: number): Promise<boolean> {
  const { rowCount } = await q(
    'isMember',
    'SELECT 1 FROM project_members WHERE project_id = $1 AND principal_id = $2',
    [projectId, principalId],
  );
  return rowCount === 1;
}

/**
 * The project a task runs under (see resolveTaskProject in sqlite-governance.ts): null when no
 * project is defined at the registry; otherwise the named project, or the owner's only one.
 */
export async function resolveTaskProject(
  q: PgQuery,
  owner: Principal,
  project: string | null,
): Promise<{ projectId: number; projectName: string } | null> {
  if ((await q('anyProject', 'SELECT 1 FROM projects LIMIT 1')).rowCount === 0) {
    if (project !== null)
      throw new RegistryError(
        422,
        ERROR_CODES.validation,
        `project "${project}": no projects are defined at this registry`,
      );
    return null;
  }
  if (project !== null) {
    const p = await projectByName(q, project);
    if (!p) throw new RegistryError(422, ERROR_CODES.validation, `unknown project "${project}"`);
    if (owner.role !== 'admin' && !(await isMember(q, p.id, owner.id)))
      throw new RegistryError(403, ERROR_CODES.forbidden, `you are not a member of project "${project}"`);
    return { projectId: p.id, projectName: p.name };
  }
  const { rows: mine } = await q<{ id: number; name: string }>(
    'projectsOf',
    'SELECT p.id, p.name FROM project_members m JOIN projects p ON p.id = m.project_id WHERE m.principal_id = $1 ORDER BY p.name',
    [owner.id],
  );
  if (mine.length === 1) return { projectId: mine[0]!.id, projectName: mine[0]!.name };
  if (mine.length === 0)
    throw new RegistryError(
      403,
      ERROR_CODES.forbidden,
      'you are in no project; an admin adds you with "node master add-to-project PROJECT user NAME"',
    );
  throw new RegistryError(
    422,
    ERROR_CODES.validation,
    `you are in several projects (${mine.map((p) => p.name).join(', ')}); name one in "project"`,
  );
}

/** The sites of a task under a project: its enabled sites, or the named ones if all belong to it. */
export async function projectSites(
  q: PgQuery,
  projectId: number,
  projectName: string,
  named: { id: number; name: string }[] | null,
): Promise<number[]> {
  if (named === null) {
    // The project's enabled sites, by name like the project-less "every enabled site".
    const { rows } = await q<{ id: number }>(
      'enabledSitesOfProject',
      "SELECT s.id FROM project_members m JOIN principals s ON s.id = m.principal_id WHERE m.project_id = $1 AND s.kind = 'site' AND s.enabled ORDER BY s.name",
      [projectId],
    );
    if (rows.length === 0)
      throw new RegistryError(422, ERROR_CODES.noSites, `project "${projectName}" has no enabled sites`);
    return rows.map((r) => r.id);
  }
  const { rows } = await q<{ principal_id: number }>(
    'membersAmong',
    'SELECT principal_id FROM project_members WHERE project_id = $1 AND principal_id = ANY($2::bigint[])',
    [projectId, named.map((s) => s.id)],
  );
  const members = new Set(rows.map((r) => r.principal_id));
  const outside = named.filter((s) => !members.has(s.id)).map((s) => s.name);
  if (outside.length)
    throw new RegistryError(
      403,
      ERROR_CODES.forbidden,
      `site(s) not in project "${projectName}": ${outside.join(', ')}`,
      {
        outside,
      },
    );
  return named.map((s) => s.id);
}

export async function storeSignature(
  q: PgQuery,
  postedBy: number,
  s: Omit<ImageSignature, 'createdAt'>,
): Promise<void> {
  await q(
    'upsertSignature',
    `INSERT INTO image_signatures (digest, key_id, public_key, signature, signer, posted_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, now())
       ON CONFLICT (digest, key_id) DO UPDATE SET signature = excluded.signature, signer = excluded.signer, posted_by = excluded.posted_by, created_at = excluded.created_at`,
    [s.digest, s.keyId, s.publicKey, s.signature, s.signer, postedBy],
  );
}

export async function signaturesOf(q: PgQuery, digest: string): Promise<ImageSignature[]> {
  const { rows } = await q<Omit<ImageSignature, 'createdAt'> & { createdAt: Date }>(
    'signatures',
    'SELECT digest, key_id AS "keyId", public_key AS "publicKey", signature, signer, created_at AS "createdAt" FROM image_signatures WHERE digest = $1 ORDER BY id',
    [digest],
  );
  return rows.map((r) => ({ ...r, createdAt: r.createdAt.toISOString() }));
}
