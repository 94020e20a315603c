import { ORGANIZATION_NAME_PATTERN, PROJECT_NAME_PATTERN } from '../shared/governance.js';
import { SITE_NAME_PATTERN, USER_NAME_PATTERN } from '../shared/names.js';
import type { PrincipalKind, RegistryStore } from './store/registry-store.js';

export const GOVERNANCE_USAGE = `  node master create-org NAME                     create an organization
  node master set-org site|user NAME ORG          put a site or user in an organization
                                                  (or --org ORG on create-site / create-user)
  node master create-project NAME                 create a project; once one exists, researchers
                                                  reach only the sites of their projects
  node master add-to-project PROJECT site|user NAME
  node master list orgs|projects                  with their members`;

export class GovernanceUsageError extends Error {
  override readonly name = 'GovernanceUsageError';
}

function name(value: string | undefined, pattern: string, what: string): string {
  if (!value) throw new GovernanceUsageError(`missing ${what}`);
  if (!new RegExp(pattern).test(value)) throw new GovernanceUsageError(`invalid ${what}: "${value.slice(0, 80)}"`);
  return value;
}

function member(kindArg: string | undefined, nameArg: string | undefined): { kind: PrincipalKind; name: string } {
  if (kindArg !== 'site' && kindArg !== 'user')
    throw new GovernanceUsageError('expected "site" or "user" before the name');
  return {
    kind: kindArg,
    name: name(nameArg, kindArg === 'site' ? SITE_NAME_PATTERN : USER_NAME_PATTERN, `${kindArg} name`),
  };
}

function noMore(args: string[], n: number): void {
  if (args.length > n) throw new GovernanceUsageError(`unexpected argument "${args[n]!.slice(0, 80)}"`);
}

/** An organization name given with --org, checked to exist before anything is created. */
export async function requireOrganization(store: RegistryStore, org: string): Promise<string> {
  const valid = name(org, ORGANIZATION_NAME_PATTERN, 'organization name');
  if (!(await store.listOrganizations()).some((o) => o.name === valid))
    throw new GovernanceUsageError(
      `no organization named "${valid}" (create it with "node master create-org ${valid}")`,
    );
  return valid;
}

/**
 * The governance admin commands; returns false for a command that is not one of them.
 * Errors of the store (unknown project, duplicate name) reach the caller as RegistryErrors.
 */
export async function runGovernanceCommand(
  command: string,
  args: string[],
  asJson: boolean,
  store: RegistryStore,
  print: (text: string) => void,
): Promise<boolean> {
  switch (command) {
    case 'create-org': {
      noMore(args, 1);
      const org = name(args[0], ORGANIZATION_NAME_PATTERN, 'organization name (lowercase letters, digits, "-", "_")');
      await store.createOrganization(org);
      print(asJson ? JSON.stringify({ organization: org }) : `organization "${org}" created`);
      return true;
    }
    case 'set-org': {
      noMore(args, 3);
      const m = member(args[0], args[1]);
      const org = name(args[2], ORGANIZATION_NAME_PATTERN, 'organization name');
      await store.setOrganization(m.kind, m.name, org);
      print(asJson ? JSON.stringify({ ...m, organization: org }) : `${m.kind} "${m.name}" is in organization "${org}"`);
      return true;
    }
    case 'create-project': {
      noMore(args, 1);
      const project = name(args[0], PROJECT_NAME_PATTERN, 'project name (lowercase letters, digits, "-", "_")');
      await store.createProject(project);
      print(asJson ? JSON.stringify({ project }) : `project "${project}" created`);
      return true;
    }
    case 'add-to-project': {
      noMore(args, 3);
      const project = name(args[0], PROJECT_NAME_PATTERN, 'project name');
      const m = member(args[1], args[2]);
      const added = await store.addToProject(project, m.kind, m.name);
      print(
        asJson
          ? JSON.stringify({ project, ...m, added })
          : `${m.kind} "${m.name}" ${added ? 'added to' : 'was already in'} project "${project}"`,
      );
      return true;
    }
    default:
      return false;
  }
}

/** `node master list orgs|projects`. */
export async function listGovernance(
  which: 'orgs' | 'projects',
  asJson: boolean,
  store: RegistryStore,
  print: (text: string) => void,
): Promise<void> {
  const rows = which === 'orgs' ? await store.listOrganizations() : await store.listProjects();
  if (asJson) print(JSON.stringify(rows));
  else for (const r of rows) print(`${r.name.padEnd(24)} ${r.members.length ? r.members.join(' ') : '(no members)'}`);
}
