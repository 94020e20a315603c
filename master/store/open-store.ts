import fs from 'node:fs';
import path from 'node:path';
import type { RegistryEvents } from '../events.js';
import { PublicKeyStore, type PublicKeys } from '../public-keys.js';
import { PostgresPublicKeys } from './postgres-public-keys.js';
import { PostgresEventBus } from './postgres-events.js';
import { PostgresRegistryStore } from './postgres-store.js';
import type { PrincipalWatch } from './principal-cache.js';
import type { RegistryStore } from './registry-store.js';
import { SqliteRegistryStore } from './sqlite-store.js';

export interface StoreLocation {
  /** Holds registry.sqlite when no database URL is given (and the result files in any case). */
  dataDir: string;
  /** A postgres:// URL selects the PostgreSQL backend; null keeps the embedded SQLite file. */
  database?: string | null;
  /** Connections per process for PostgreSQL. */
  poolSize?: number;
  onIdleError?: (e: Error) => void;
}

/** Opens the registry's database (created if missing, migrated on open). */
export async function openStore(location: StoreLocation): Promise<RegistryStore> {
  if (location.database) {
    return PostgresRegistryStore.open({
      connectionString: location.database,
      ...(location.poolSize !== undefined ? { poolSize: location.poolSize } : {}),
      ...(location.onIdleError ? { onIdleError: location.onIdleError } : {}),
    });
  }
  return openSqliteStore(location.dataDir);
}

/** The embedded default: one SQLite file in the data directory. */
export function openSqliteStore(dataDir: string): SqliteRegistryStore {
  fs.mkdirSync(dataDir, { recursive: true });
  return new SqliteRegistryStore(path.join(dataDir, 'registry.sqlite'));
}

/**
 * With PostgreSQL, several registry processes may serve one database: carry `events` to and from
 * the others (LISTEN/NOTIFY). Returns null for SQLite, whose file has one registry process.
 */
export async function connectEvents(
  store: RegistryStore,
  location: StoreLocation,
  events: RegistryEvents,
  onError: (message: string, error: Error) => void,
  principals?: PrincipalWatch,
  handOut?: (sites: Set<string>) => Promise<Set<string>>,
): Promise<PostgresEventBus | null> {
  if (!(store instanceof PostgresRegistryStore) || !location.database) return null;
  // A task posted on another process arrives as one notification per site, all in one read:
  // with `handOut`, the sites of one tick are offered to this process's parked polls in one batch
  // claim (master/hand-out.ts); only the sites it did not serve are woken to claim for themselves.
  let sites: Set<string> | null = null;
  const deliverSite = (site: string) => {
    if (!handOut) return events.deliver('site', site);
    // At once, though the batch hand-out comes later: a poll of the site asks the database again.
    events.markSite(site);
    if (sites) return void sites.add(site);
    const batch = (sites = new Set([site]));
    setImmediate(() => {
      sites = null;
      void handOut(batch)
        .catch((e: unknown) => {
          onError('batch hand-out failed; waking the sites instead', e instanceof Error ? e : new Error(String(e)));
          return new Set<string>();
        })
        .then((handed) => {
          for (const s of batch) if (!handed.has(s)) events.deliver('site', s);
        });
    });
  };
  const bus = await PostgresEventBus.start({
    connectionString: location.database,
    pool: store.pool,
    onEvent: (kind, key) => (kind === 'site' ? deliverSite(key) : events.deliver(kind, key)),
    onReconnect: () => events.wakeEverything(),
    ...(principals ? { principals } : {}),
    onError,
  });
  events.attach(bus);
  principals?.useBarrier(() => bus.barrier());
  return bus;
}

/** The public keys the registry relays, in the same database as `store` (migrated by it). */
export function openPublicKeys(store: RegistryStore, location: StoreLocation): PublicKeys {
  return store instanceof PostgresRegistryStore
    ? new PostgresPublicKeys(store.pool)
    : new PublicKeyStore(location.dataDir);
}
