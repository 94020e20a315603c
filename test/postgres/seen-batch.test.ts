/**
 * lastSeen on PostgreSQL is written in batches (one statement per tick for every principal seen),
 * by every registry process at once: the batches must not wait for nor deadlock with each other,
 * and a principal's time is never set back by a batch that carries an older one.
 */
import { afterEach, describe, expect, inject, it } from 'vitest';
import { PostgresRegistryStore } from '../../master/store/postgres-store.js';
import { storesOnFreshSchema } from '../helpers/postgres-stores.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

function openStores(count: number): Promise<PostgresRegistryStore[]> {
  return storesOnFreshSchema(inject('postgresUrl'), count, 4, cleanup);
}

describe('recordSeen batches on PostgreSQL', () => {
  it('records the latest time of every principal seen, from two processes writing the same rows in opposite orders', async () => {
    const [a, b] = await openStores(2);
    const ids: number[] = [];
    for (let i = 0; i < 30; i++) ids.push((await a!.createPrincipal('site', `site-${i}`, 'site')).principal.id);
    const base = Date.parse('2026-01-01T00:00:00Z');
    // Rounds of batches from both stores, one in id order, the other reversed; the last round
    // carries each principal's latest time, from store b for even ids and store a for odd ones.
    for (let round = 0; round < 5; round++) {
      const writes: Promise<void>[] = [];
      for (const id of ids) writes.push(a!.recordSeen(id, new Date(base + round * 1000 + (id % 2) * 500)));
      for (const id of [...ids].reverse())
        writes.push(b!.recordSeen(id, new Date(base + round * 1000 + ((id + 1) % 2) * 500)));
      await Promise.all(writes);
    }
    const sites = await a!.listSites();
    expect(sites).toHaveLength(30);
    // Rows held by the other store's batch are skipped (bookkeeping): each ends at its latest
    // time or at most one round before it, never earlier, and never unset.
    for (const s of sites) {
      const at = Date.parse(s.lastSeen!);
      expect(at).toBeGreaterThanOrEqual(base + 3 * 1000);
      expect(at).toBeLessThanOrEqual(base + 4 * 1000 + 500);
    }
  });

  it('never sets a time back: an older time seen later leaves the newer one', async () => {
    const [a] = await openStores(1);
    const { id } = (await a!.createPrincipal('site', 'site-x', 'site')).principal;
    await a!.recordSeen(id, new Date('2026-01-02T00:00:00Z'));
    await a!.recordSeen(id, new Date('2026-01-01T00:00:00Z'));
    // Two in one tick: the batch keeps the later one.
    await Promise.all([
      a!.recordSeen(id, new Date('2026-01-03T00:00:00Z')),
      a!.recordSeen(id, new Date('2026-01-02T12:00:00Z')),
    ]);
    expect((await a!.listSites())[0]!.lastSeen).toBe('2026-01-03T00:00:00.000Z');
  });
});
