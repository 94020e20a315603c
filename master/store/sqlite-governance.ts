import type Database from 'better-sqlite3';
import { ERROR_CODES } from '../../shared/error-codes.js';
import type { ImageSignature, PostedBy } from '../../shared/governance.js';
import { ConflictError, NotFoundError, RegistryError } from '../errors.js';
import type { Principal, PrincipalKind } from './registry-store.js';

/**
 * The SQLite side of governance: organizations, projects and their members, who may send a task
 * where, and image signatures. Used by SqliteRegistryStore inside its own transactions.
 */
const SQL = {
  insertOrg: 'INSERT INTO organizations (name, created_at) VALUES (?, ?) RETURNING id, name, created_at',
  orgByName: 'SELECT id FROM organizations WHERE name = ?',
  setOrg: 'UPDATE principals SET organization_id = ? WHERE kind = ? AND name = ?',
  insertProject: 'INSERT INTO projects (name, created_at) VALUES (?, ?) RETURNING id, name, created_at',
  projectByName: 'SELECT id, name FROM projects WHERE name = ?',
  anyProject: 'SELECT 1 FROM projects LIMIT 1',
  principalByKindName: 'SELECT id FROM principals WHERE kind = ? AND name = ?',
  addMember: 'INSERT OR IGNORE INTO project_members (project_id, principal_id) VALUES (?, ?)',
  isMember: 'SELECT 1 FROM project_members WHERE project_id = ? AND principal_id = ?',
  projectsOf:
    'SELECT p.id, p.name FROM project_members m JOIN projects p ON p.id = m.project_id WHERE m.principal_id = ? ORDER BY p.name',
  // The project's enabled sites, by name like the project-less "every enabled site".
  enabledSitesOfProject:
    "SELECT s.id FROM project_members m JOIN principals s ON s.id = m.principal_id WHERE m.project_id = ? AND s.kind = 'site' AND s.enabled = 1 ORDER BY s.name",
  setTaskProject: 'UPDATE tasks SET project_id = ? WHERE id = ?',
  holdRun: "UPDATE runs SET status = 'awaiting_approval', last_contact_at = ? WHERE id = ?",
  postedBy:
    'SELECT o.name AS researcher, org.name AS organization, p.name AS project FROM tasks t JOIN principals o ON o.id = t.owner_id ' +
    'LEFT JOIN organizations org ON org.id = o.organization_id LEFT JOIN projects p ON p.id = t.project_id WHERE t.id = ?',
  listOrgs:
    'SELECT g.name, g.created_at, ' +
    "(SELECT json_group_array(kind || ':' || name) FROM principals WHERE organization_id = g.id) AS members FROM organizations g ORDER BY g.name",
  listProjects:
    'SELECT p.name, p.created_at, ' +
    "(SELECT json_group_array(x.kind || ':' || x.name) FROM project_members m JOIN principals x ON x.id = m.principal_id WHERE m.project_id = p.id) AS members FROM projects p ORDER BY p.name",
  upsertSignature:
    'INSERT INTO image_signatures (digest, key_id, public_key, signature, signer, posted_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ' +
    'ON CONFLICT (digest, key_id) DO UPDATE SET signature = excluded.signature, signer = excluded.signer, posted_by = excluded.posted_by, created_at = excluded.created_at',
  signatures:
    'SELECT digest, key_id AS keyId, public_key AS publicKey, signature, signer, created_at AS createdAt FROM image_signatures WHERE digest = ? ORDER BY id',
} as const;

export type GovernanceStatements = { [K in keyof typeof SQL]: Database.Statement };

export function prepareGovernance(db: Database.Database): GovernanceStatements {
  return Object.fromEntries(Object.entries(SQL).map(([k, sql]) => [k, db.prepare(sql)])) as GovernanceStatements;
}

function unique<T>(run: () => T, what: string): T {
  try {
    return run();
  } catch (e) {
    if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') throw new ConflictError(`${what} already exists`);
    throw e;
  }
}

export function createOrganization(g: GovernanceStatements, name: string): void {
  unique(() => g.insertOrg.run(name, new Date().toISOString()), `an organization named "${name}"`);
}

export function createProject(g: GovernanceStatements, name: string): void {
  unique(() => g.insertProject.run(name, new Date().toISOString()), `a project named "${name}"`);
}

export function setOrganization(g: GovernanceStatements, kind: PrincipalKind, name: string, org: string): void {
  const o = g.orgByName.get(org) as { id: number } | undefined;
  if (!o) throw new NotFoundError(`organization "${org}"`);
  if (g.setOrg.run(o.id, kind, name).changes !== 1) throw new NotFoundError(`${kind} "${name}"`);
}

export function addToProject(g: GovernanceStatements, project: string, kind: PrincipalKind, name: string): boolean {
  const p = g.projectByName.get(project) as { id: number } | undefined;
  if (!p) throw new NotFoundError(`project "${project}"`);
  const m = g.principalByKindName.get(kind, name) as { id: number } | undefined;
  if (!m) throw new NotFoundError(`${kind} "${name}"`);
  return g.addMember.run(p.id, m.id).changes === 1;
}

export interface GovernanceListing {
  name: string;
  createdAt: string;
  members: string[];
}

export function listOrganizations(g: GovernanceStatements): GovernanceListing[] {
  return (g.listOrgs.all() as { name: string; created_at: string; members: string }[]).map((r) => ({
    name: r.name,
    createdAt: r.created_at,
    members: JSON.parse(r.members) as string[],
  }));
}

export function listProjects(g: GovernanceStatements): GovernanceListing[] {
  return (g.listProjects.all() as { name: string; created_at: string; members: string }[]).map((r) => ({
    name: r.name,
    createdAt: r.created_at,
    members: JSON.parse(r.members) as string[],
  }));
}

/**
 * The project a task runs under and, when no sites are named, its target sites. With no project
 * defined at the registry the old rules hold (returns project null and leaves sites to the
 * caller). Otherwise a task runs under the project it names, or its researcher's only project,
 * and may reach only that project's sites.
 */
export function resolveTaskProject(
  g: GovernanceStatements,
  owner: Principal,
  project: string | null,
): { projectId: number; projectName: string } | null {
  if (!g.anyProject.get()) {
    if (project !== null)
      throw new RegistryError(
        422,
        ERROR_CODES.validation,
        `project "${project}": no projects are defined at this registry`,
      );
    return null;
  }
  if (project !== null) {
    const p = g.projectByName.get(project) as { id: number; name: string } | undefined;
    if (!p) throw new RegistryError(422, ERROR_CODES.validation, `unknown project "${project}"`);
    if (owner.role !== 'admin' && !g.isMember.get(p.id, owner.id))
      throw new RegistryError(403, ERROR_CODES.forbidden, `you are not a member of project "${project}"`);
    return { projectId: p.id, projectName: p.name };
  }
  const mine = g.projectsOf.all(owner.id) as { id: number; name: string }[];
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
export function projectSites(
  g: GovernanceStatements,
  projectId: number,
  projectName: string,
  named: { id: number; name: string }[] | null,
): number[] {
  if (named === null) {
    const ids = (g.enabledSitesOfProject.all(projectId) as { id: number }[]).map((r) => r.id);
    if (ids.length === 0)
      throw new RegistryError(422, ERROR_CODES.noSites, `project "${projectName}" has no enabled sites`);
    return ids;
  }
  const outside = named.filter((s) => !g.isMember.get(projectId, s.id)).map((s) => s.name);
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

export function postedByOf(g: GovernanceStatements, taskId: number): PostedBy {
  const row = g.postedBy.get(taskId) as PostedBy;
  return { researcher: row.researcher, organization: row.organization ?? null, project: row.project ?? null };
}

export function storeSignature(g: GovernanceStatements, postedBy: number, s: Omit<ImageSignature, 'createdAt'>): void {
  g.upsertSignature.run(s.digest, s.keyId, s.publicKey, s.signature, s.signer, postedBy, new Date().toISOString());
}

export function signaturesOf(g: GovernanceStatements, digest: string): ImageSignature[] {
  return g.signatures.all(digest) as ImageSignature[];
}
