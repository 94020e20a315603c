import { hashSecret } from './secrets.js';
import type { Principal, RegistryStore } from './registry-store.js';

/** How long an authenticated principal is reused without reading the database again. */
export const PRINCIPAL_CACHE_TTL_MS = 3000;
/** Bounds the memory a flood of distinct valid keys could take (one entry per key). */
const MAX_ENTRIES = 100_000;

/**
 * Methods known not to change any principal's key, role or enabled flag: they leave the cache
 * alone. Every other method (disable, rotate, and whatever a later version adds) empties it
 * before it runs and again when it settles, so a change made through this process applies to
 * the very next request. A change made by another process (`node master disable-site` on the
 * same database) applies at the next request where the store has externalVersion (SQLite), and
 * within PRINCIPAL_CACHE_TTL_MS otherwise.
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

interface Entry {
  principal: Principal;
  expiresAt: number;
}

/**
 * The store, with `authenticate` answered from memory for a few seconds per key hash: a thousand
 * sites polling would otherwise each cost a SELECT (profile: 5 % of the registry's CPU under plain
 * polling). Unknown keys are never cached, so guessing keys cannot fill the cache.
 */
export function withPrincipalCache<S extends RegistryStore>(store: S, ttlMs = PRINCIPAL_CACHE_TTL_MS): S {
  const cache = new Map<string, Entry>();
  // A lookup that overlapped a change must not put what it read before the change into the cache.
  let generation = 0;
  let changing = 0;
  let lastVersion = store.externalVersion?.();
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
    const hash = hashSecret(secret);
    const now = Date.now();
    const hit = cache.get(hash);
    if (hit && hit.expiresAt > now) return { ...hit.principal };
    if (hit) cache.delete(hash);
    const seenGeneration = generation;
    const principal = await store.authenticate(secret);
    if (principal && changing === 0 && seenGeneration === generation) {
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
