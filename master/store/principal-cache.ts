import { hashSecret } from './secrets.js';
import type { Principal, RegistryStore } from './registry-store.js';

/** How long an authenticated principal is reused without reading the database again. */
export const PRINCIPAL_CACHE_TTL_MS = 3000;
/**
 * The same with a PrincipalWatch (PostgreSQL): every change is notified, so the time bounds only
 * memory, not staleness. Behind a balancer a site's requests are spread over the processes, and
 * at 3 s most of them missed: 51,000 key lookups, one pooled round trip each, in a 10,000-site
 * broadcast (pg_stat_statements, bench:scale).
 */
export const WATCHED_PRINCIPAL_CACHE_TTL_MS = 5 * 60_000;
/** Bounds the memory a flood of distinct valid keys could take (one entry per key). */
const MAX_ENTRIES = 100_000;

/**
 * Methods known not to change any principal's key, role or enabled flag: they leave the cache
 * alone. Every other method (disable, rotate, and whatever a later version adds) empties it
 * before it runs and again when it settles, so a change made through this process applies to
 * the very next request. A change made by another process (`node master disable-site` on the
 * same database, or another registry process on PostgreSQL) applies at the next request: SQLite
 * through the store's externalVersion, PostgreSQL through a PrincipalWatch fed by a trigger's
 * NOTIFY (sent at commit, before the changing request is even answered). A store with neither
 * sees it within PRINCIPAL_CACHE_TTL_MS.
 */
const KEEPS_PRINCIPALS = new Set<string>([
  'externalVersion',
  'listPrincipals',
  'recordSeen',
  'listSites',
  'createTask',
  'getTask',
  'getTaskStatus',
  'listTasks',
  'listTaskSummaries',
  'siteRunCounts',
  'listOrganizations',
  'listProjects',
  'listImageSignatures',
  'countRunsByState',
  'cancelTask',
  'getTaskConfig',
  'deleteTask',
  'claimNextRun',
  'claimNextRuns',
  'releaseClaimedRuns',
  'getSiteRun',
  'listSiteRuns',
  'startRun',
  'reportProgress',
  'appendLog',
  'checkFileUpload',
  'recordFile',
  'finishRun',
  'getRun',
  'readLog',
  'listFiles',
  'getFile',
  'storedFileNames',
  'sweep',
]);

/**
 * Changes to principals made by other processes, where the store cannot tell synchronously
 * (PostgreSQL: a trigger's NOTIFY, master/store/postgres-events.ts). The cache is trusted only
 * while `watching`; every change, every loss and every return of the watch empties it.
 */
export class PrincipalWatch {
  private up = false;
  private version = 0;
  private barrierFn: (() => Promise<boolean>) | null = null;

  /**
   * `barrier` resolves once every notification committed before it was called has been
   * received (false when it cannot tell): a cached answer waits for it, so a change committed
   * before a request arrived is seen by that request, not one notification-delivery later.
   */
  useBarrier(barrier: () => Promise<boolean>): void {
    this.barrierFn = barrier;
  }

  /** See useBarrier; true without one. */
  barrier(): Promise<boolean> {
    return this.barrierFn ? this.barrierFn() : Promise.resolve(true);
  }

  /** Principals may have changed elsewhere. */
  changed(): void {
    this.version++;
  }

  /** Whether a change made elsewhere would be noticed (the LISTEN connection is up). */
  setWatching(up: boolean): void {
    this.up = up;
    this.version++;
  }

  watching(): boolean {
    return this.up;
  }

  /** Different after every change and every loss or return of the watch. */
  current(): number {
    return this.version;
  }
}

interface Entry {
  principal: Principal;
  expiresAt: number;
}

/**
 * The store, with `authenticate` answered from memory for a few seconds per key hash: a thousand
 * sites polling would otherwise each cost a SELECT (profile: 5 % of the registry's CPU under plain
 * polling). Unknown keys are never cached, so guessing keys cannot fill the cache.
 */
export function withPrincipalCache<S extends RegistryStore>(
  store: S,
  ttlMs = PRINCIPAL_CACHE_TTL_MS,
  watch?: PrincipalWatch,
): S {
  const cache = new Map<string, Entry>();
  // A lookup that overlapped a change must not put what it read before the change into the cache.
  let generation = 0;
  let changing = 0;
  let lastVersion = store.externalVersion?.();
  let lastWatched = watch?.current();
  const invalidate = () => {
    generation++;
    cache.clear();
  };

  const authenticate = async (secret: string): Promise<Principal | null> => {
    const version = store.externalVersion?.();
    if (version !== lastVersion) {
      lastVersion = version;
      invalidate();
    }
    const watched = watch?.current();
    if (watched !== lastWatched) {
      lastWatched = watched;
      invalidate();
    }
    // While another process's change could go unnoticed (LISTEN connection down), every
    // request reads the database, as without a cache.
    if (watch && !watch.watching()) return store.authenticate(secret);
    const hash = hashSecret(secret);
    const now = Date.now();
    const hit = cache.get(hash);
    if (hit && hit.expiresAt > now) {
      if (!watch) return { ...hit.principal };
      // A change committed before this request arrived may still be on its way to this process.
      if ((await watch.barrier()) && watch.current() === watched) return { ...hit.principal };
      return authenticate(secret);
    }
    if (hit) cache.delete(hash);
    const seenGeneration = generation;
    const principal = await store.authenticate(secret);
    // A change noticed while the lookup ran (or a loss of the watch) may postdate what it read.
    if (principal && changing === 0 && seenGeneration === generation && watch?.current() === watched) {
      if (cache.size >= MAX_ENTRIES) cache.clear();
      cache.set(hash, { principal: { ...principal }, expiresAt: now + ttlMs });
    }
    return principal;
  };

  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'authenticate') return authenticate;
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      let fn = wrapped.get(prop);
      if (fn) return fn;
      const method = value as (...args: unknown[]) => unknown;
      if (typeof prop === 'string' && KEEPS_PRINCIPALS.has(prop)) {
        fn = method.bind(target);
      } else {
        fn = (...args: unknown[]) => {
          invalidate();
          changing++;
          const settle = () => {
            changing--;
            invalidate();
          };
          let result: unknown;
          try {
            result = method.apply(target, args);
          } catch (e) {
            settle();
            throw e;
          }
          if (result instanceof Promise) return result.finally(settle);
          settle();
          return result;
        };
      }
      wrapped.set(prop, fn);
      return fn;
    },
  });
}
