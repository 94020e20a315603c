/**
 * Authenticated principals are reused for a few seconds, but a key that is disabled or rotated
 * stops working at the very next request: through this process (the store the server holds) and
 * through another connection to the same database (what `node master revoke` does).
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openStore } from '../../master/store/open-store.js';
import { PRINCIPAL_CACHE_TTL_MS, PrincipalWatch, withPrincipalCache } from '../../master/store/principal-cache.js';
import { SqliteRegistryStore } from '../../master/store/sqlite-store.js';
import type { Principal, RegistryStore } from '../../master/store/registry-store.js';
import { storeLocation } from '../helpers/registry-fixture.js';
import { expectApiError, SiteClient, world } from './helpers.js';

/** The real SQLite store, with `authenticate` calls counted. */
function countingStore(file: string): { store: SqliteRegistryStore; lookups: () => number } {
  const store = new SqliteRegistryStore(file);
  let n = 0;
  const original = store.authenticate.bind(store);
  store.authenticate = async (secret: string) => {
    n++;
    return original(secret);
  };
  return { store, lookups: () => n };
}

describe('the principal cache in front of the store', () => {
  it('answers a known key from memory and reads the database again for an unknown one', async () => {
    const w = await world({ siteCount: 1 });
    const { store, lookups } = countingStore(path.join(w.reg.dataDir, 'registry.sqlite'));
    try {
      const { secret } = await store.createPrincipal('site', 'cached', 'site');
      const cached = withPrincipalCache(store);
      const first = await cached.authenticate(secret);
      const second = await cached.authenticate(secret);
      expect(second).toEqual(first);
      expect(first?.name).toBe('cached');
      expect(lookups()).toBe(1);
      // Guessing keys must cost a lookup every time, never an entry in memory.
      expect(await cached.authenticate('pht_site_not-a-key')).toBeNull();
      expect(await cached.authenticate('pht_site_not-a-key')).toBeNull();
      expect(lookups()).toBe(3);
    } finally {
      await store.close();
    }
  });

  it('expires an entry after its time to live', async () => {
    const w = await world({ siteCount: 1 });
    const { store, lookups } = countingStore(path.join(w.reg.dataDir, 'registry.sqlite'));
    try {
      const { secret } = await store.createPrincipal('site', 'short', 'site');
      const cached = withPrincipalCache(store, 0);
      await cached.authenticate(secret);
      await cached.authenticate(secret);
      expect(lookups()).toBe(2);
    } finally {
      await store.close();
    }
  });

  it('does not keep what a lookup read while a change was being made', async () => {
    let release: (p: Principal | null) => void = () => undefined;
    let lookups = 0;
    const principal: Principal = {
      id: 1,
      kind: 'site',
      name: 'racing',
      role: 'site',
      enabled: true,
      createdAt: '2026-01-01T00:00:00.000Z',
      lastSeen: null,
    };
    const fake = {
      authenticate: () => {
        lookups++;
        return lookups === 1 ? new Promise<Principal | null>((resolve) => (release = resolve)) : Promise.resolve(null);
      },
      setPrincipalEnabled: async () => true,
    } as unknown as RegistryStore;
    const cached = withPrincipalCache(fake);
    const slow = cached.authenticate('pht_site_racing-key');
    await cached.setPrincipalEnabled('site', 'racing', false);
    release(principal);
    expect((await slow)?.enabled).toBe(true);
    // The value read before the change is not served afterwards.
    expect(await cached.authenticate('pht_site_racing-key')).toBeNull();
    expect(lookups).toBe(2);
  });
});

describe('the principal cache with a watch on other processes (PostgreSQL)', () => {
  const site: Principal = {
    id: 1,
    kind: 'site',
    name: 'watched',
    role: 'site',
    enabled: true,
    createdAt: '2026-01-01T00:00:00.000Z',
    lastSeen: null,
  };
  function fakeStore(): { store: RegistryStore; lookups: () => number } {
    let n = 0;
    const store = {
      authenticate: async () => {
        n++;
        return { ...site };
      },
    } as unknown as RegistryStore;
    return { store, lookups: () => n };
  }

  it('reads the database on every request while the watch is down, and caches once it is up', async () => {
    const { store, lookups } = fakeStore();
    const watch = new PrincipalWatch();
    const cached = withPrincipalCache(store, PRINCIPAL_CACHE_TTL_MS, watch);
    await cached.authenticate('pht_site_k');
    await cached.authenticate('pht_site_k');
    expect(lookups()).toBe(2);
    watch.setWatching(true);
    await cached.authenticate('pht_site_k');
    await cached.authenticate('pht_site_k');
    expect(lookups()).toBe(3);
    // Lost: what was cached is not served, and nothing is cached until it is back.
    watch.setWatching(false);
    await cached.authenticate('pht_site_k');
    await cached.authenticate('pht_site_k');
    expect(lookups()).toBe(5);
  });

  it('forgets every entry when a change is notified, and when the watch comes back', async () => {
    const { store, lookups } = fakeStore();
    const watch = new PrincipalWatch();
    watch.setWatching(true);
    const cached = withPrincipalCache(store, PRINCIPAL_CACHE_TTL_MS, watch);
    await cached.authenticate('pht_site_k');
    watch.changed();
    await cached.authenticate('pht_site_k');
    await cached.authenticate('pht_site_k');
    expect(lookups()).toBe(2);
    // A loss and return between two requests: changes may have been missed in between.
    watch.setWatching(false);
    watch.setWatching(true);
    await cached.authenticate('pht_site_k');
    expect(lookups()).toBe(3);
  });

  it('does not keep what a lookup read when a change was notified while it ran', async () => {
    let release: (p: Principal | null) => void = () => undefined;
    let n = 0;
    const store = {
      authenticate: () => {
        n++;
        return new Promise<Principal | null>((resolve) => (release = resolve));
      },
    } as unknown as RegistryStore;
    const watch = new PrincipalWatch();
    watch.setWatching(true);
    const cached = withPrincipalCache(store, PRINCIPAL_CACHE_TTL_MS, watch);
    const slow = cached.authenticate('pht_site_k');
    watch.changed();
    release({ ...site });
    await slow;
    const again = cached.authenticate('pht_site_k');
    release({ ...site, enabled: false });
    expect((await again)?.enabled).toBe(false);
    expect(n).toBe(2);
  });
});

describe('a cached key stops working at once', () => {
  it('refuses a site disabled through the running registry at its next request', async () => {
    const w = await world({ siteCount: 1 });
    const site = w.sites[0]!;
    await site.get('/api/v1/site/runs').expect(200);
    await site.get('/api/v1/site/runs').expect(200);
    expect(await w.reg.store.setPrincipalEnabled('site', 'site-a', false)).toBe(true);
    expectApiError(await site.get('/api/v1/site/runs'), 403, 'forbidden');
    expect(await w.reg.store.setPrincipalEnabled('site', 'site-a', true)).toBe(true);
    await site.get('/api/v1/site/runs').expect(200);
  });

  it('refuses the old key of a site rotated through the running registry, and accepts the new one', async () => {
    const w = await world({ siteCount: 1 });
    const site = w.sites[0]!;
    await site.get('/api/v1/site/runs').expect(200);
    const fresh = await w.reg.store.rotateSecret('site', 'site-a');
    expect(fresh).not.toBeNull();
    expectApiError(await site.get('/api/v1/site/runs'), 401, 'unauthorized');
    await new SiteClient(w.reg.url, fresh!, 'site-a').get('/api/v1/site/runs').expect(200);
  });

  it('refuses a researcher disabled by another connection to the database at the next request', async () => {
    const w = await world({ siteCount: 1 });
    await w.researcher.get('/api/v1/tasks').expect(200);
    await w.researcher.get('/api/v1/tasks').expect(200);
    // The registry's own database, on either backend (what `node master revoke` opens).
    const admin = await openStore(storeLocation(w.reg.dataDir));
    try {
      expect(await admin.setPrincipalEnabled('user', 'alice', false)).toBe(true);
    } finally {
      await admin.close();
    }
    expectApiError(await w.researcher.get('/api/v1/tasks'), 403, 'forbidden');
  });

  it('refuses the old key of a site rotated by another connection to the database', async () => {
    const w = await world({ siteCount: 1 });
    const site = w.sites[0]!;
    await site.get('/api/v1/site/runs').expect(200);
    // The registry's own database, on either backend (what `node master revoke` opens).
    const admin = await openStore(storeLocation(w.reg.dataDir));
    let fresh: string | null;
    try {
      fresh = await admin.rotateSecret('site', 'site-a');
    } finally {
      await admin.close();
    }
    expectApiError(await site.get('/api/v1/site/runs'), 401, 'unauthorized');
    await new SiteClient(w.reg.url, fresh!, 'site-a').get('/api/v1/site/runs').expect(200);
  });
});
