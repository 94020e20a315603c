import type { PrincipalKind } from './store/registry-store.js';
import { SITE_NAME_PATTERN, USER_NAME_PATTERN } from '../shared/names.js';
import { openStore, type StoreLocation } from './store/open-store.js';
import { RegistryError } from './errors.js';
import {
  GOVERNANCE_USAGE,
  GovernanceUsageError,
  listGovernance,
  requireOrganization,
  runGovernanceCommand,
} from './governance-cli.js';
import { KEY_ADMIN_COMMANDS, KEY_ADMIN_USAGE, runKeyAdminCommand } from './key-admin.js';

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const ADMIN_USAGE = `Admin commands (all take --data-dir DIR, default ./data or PHT_DATA_DIR, or --database URL /
PHT_DATABASE_URL for a PostgreSQL registry; --json for scripts):
  node master create-site NAME                    create a site; prints its API key once
  node master create-user NAME --role researcher|admin
                                                  create a researcher or admin; prints the token once
  node master list [sites|users]                  list principals
  node master revoke site|user NAME               disable a site or user (its key stops working)
  node master enable site|user NAME               enable it again with a new key (printed once; the
                                                  revoked key never works again)
  node master rotate-key site|user NAME           issue a new key; the old one stops working
${GOVERNANCE_USAGE}
${KEY_ADMIN_USAGE}`;

type Print = (text: string) => void;

/**
 * The admin commands. They open the same database as the server (SQLite's WAL allows both at
 * once; PostgreSQL any number), so they work whether or not the registry is running.
 */
export async function runAdminCommand(
  command: string,
  args: string[],
  flags: Readonly<Record<string, unknown>>,
  location: StoreLocation,
  print: Print,
): Promise<void> {
  const asJson = flags.json === true;
  if (KEY_ADMIN_COMMANDS.includes(command))
    return runKeyAdminCommand(command, args, flags, location, print, (m) => new UsageError(m));
  const store = await openStore(location);
  try {
    switch (command) {
      case 'create-site': {
        const name = requireName(args[0], SITE_NAME_PATTERN, 'site name (lowercase letters, digits, "-" and "_")');
        const org = typeof flags.org === 'string' ? await requireOrganization(store, flags.org) : null;
        const { secret } = await store.createPrincipal('site', name, 'site');
        if (org) await store.setOrganization('site', name, org);
        print(
          asJson ? JSON.stringify({ name, apiKey: secret }) : `site "${name}" created\napi key (shown once): ${secret}`,
        );
        return;
      }
      case 'create-user': {
        const name = requireName(args[0], USER_NAME_PATTERN, 'user name');
        const role = flags.role ?? 'researcher';
        if (role !== 'researcher' && role !== 'admin') throw new UsageError('--role must be researcher or admin');
        const org = typeof flags.org === 'string' ? await requireOrganization(store, flags.org) : null;
        const { secret } = await store.createPrincipal('user', name, role);
        if (org) await store.setOrganization('user', name, org);
        print(
          asJson
            ? JSON.stringify({ name, role, token: secret })
            : `${role} "${name}" created\ntoken (shown once): ${secret}`,
        );
        return;
      }
      case 'list': {
        const which = args[0];
        if (which === 'orgs' || which === 'projects') return await listGovernance(which, asJson, store, print);
        if (which !== undefined && which !== 'sites' && which !== 'users')
          throw new UsageError('list takes "sites", "users", "orgs" or "projects"');
        const kind: PrincipalKind | null = which === 'sites' ? 'site' : which === 'users' ? 'user' : null;
        const principals = await store.listPrincipals(kind);
        if (asJson) print(JSON.stringify(principals.map(({ id: _id, ...p }) => p)));
        else
          for (const p of principals) {
            print(
              `${p.kind.padEnd(5)} ${p.name.padEnd(24)} ${p.role.padEnd(10)} ${p.enabled ? 'enabled ' : 'disabled'} last seen ${p.lastSeen ?? 'never'}`,
            );
          }
        return;
      }
      case 'revoke': {
        const kind = requireKind(args[0]);
        const name = requireName(args[1], kind === 'site' ? SITE_NAME_PATTERN : USER_NAME_PATTERN, `${kind} name`);
        const changed = await store.setPrincipalEnabled(kind, name, false);
        if (!changed) throw new UsageError(`no ${kind} named "${name}"`);
        print(asJson ? JSON.stringify({ kind, name, enabled: false }) : `${kind} "${name}" disabled`);
        return;
      }
      case 'enable': {
        const kind = requireKind(args[0]);
        const name = requireName(args[1], kind === 'site' ? SITE_NAME_PATTERN : USER_NAME_PATTERN, `${kind} name`);
        const principal = (await store.listPrincipals(kind)).find((p) => p.name === name);
        if (!principal) throw new UsageError(`no ${kind} named "${name}"`);
        if (principal.enabled) {
          print(asJson ? JSON.stringify({ kind, name, enabled: true }) : `${kind} "${name}" is already enabled`);
          return;
        }
        // A key was revoked because it may be in the wrong hands: enabling the principal must not
        // bring that key back. The key is replaced while the principal is still disabled, so there
        // is no moment at which the old key works again (a crash in between leaves it disabled).
        const secret = await store.rotateSecret(kind, name);
        if (!secret || !(await store.setPrincipalEnabled(kind, name, true)))
          throw new UsageError(`no ${kind} named "${name}"`);
        const keyField = kind === 'site' ? 'apiKey' : 'token';
        print(
          asJson
            ? JSON.stringify({ kind, name, enabled: true, [keyField]: secret })
            : `${kind} "${name}" enabled\nnew ${kind === 'site' ? 'api key' : 'token'} (shown once; the old one stays revoked): ${secret}`,
        );
        return;
      }
      case 'rotate-key': {
        const kind = requireKind(args[0]);
        const name = requireName(args[1], kind === 'site' ? SITE_NAME_PATTERN : USER_NAME_PATTERN, `${kind} name`);
        const secret = await store.rotateSecret(kind, name);
        if (!secret) throw new UsageError(`no ${kind} named "${name}"`);
        print(
          asJson
            ? JSON.stringify({ kind, name, [kind === 'site' ? 'apiKey' : 'token']: secret })
            : `new key for ${kind} "${name}" (shown once): ${secret}`,
        );
        return;
      }
      default:
        if (await runGovernanceCommand(command, args, asJson, store, print)) return;
        throw new UsageError(`unknown command "${command}"\n\n${ADMIN_USAGE}`);
    }
  } catch (e) {
    if (e instanceof RegistryError || e instanceof GovernanceUsageError) throw new UsageError(e.message);
    throw e;
  } finally {
    await store.close();
  }
}

function requireName(value: string | undefined, pattern: string, what: string): string {
  if (!value) throw new UsageError(`missing ${what}`);
  if (!new RegExp(pattern).test(value)) throw new UsageError(`invalid ${what}: "${value}"`);
  return value;
}

function requireKind(value: string | undefined): PrincipalKind {
  if (value !== 'site' && value !== 'user') throw new UsageError('expected "site" or "user" before the name');
  return value;
}
