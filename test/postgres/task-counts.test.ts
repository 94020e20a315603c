/**
 * The task_counts counters on PostgreSQL (migration 0008): kept by triggers in the transaction
 * that changes a task, they must equal a count of the tasks after creations, status changes,
 * cancels and deletes made at the same time by two registry processes (two stores on one schema).
 */
import { afterEach, describe, expect, inject, it } from 'vitest';
import { PostgresRegistryStore } from '../../master/store/postgres-store.js';
import type { Principal } from '../../master/store/registry-store.js';
import { storesOnFreshSchema } from '../helpers/postgres-stores.js';
import { IMAGE } from '../master/helpers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

function openStores(count: number): Promise<PostgresRegistryStore[]> {
  return storesOnFreshSchema(inject('postgresUrl'), count, 6, cleanup);
}

/** The counters and a count of the tasks, both as "owner/status" → [tasks, config bytes]. */
async function countersAndCount(store: PostgresRegistryStore): Promise<{ counters: object; counted: object }> {
  const read = async (sql: string) => {
    const { rows } = await store.pool.query<{ owner_id: number; status: string; n: number; bytes: string }>(sql);
    return Object.fromEntries(
      rows.filter((r) => r.n > 0).map((r) => [`${r.owner_id}/${r.status}`, [r.n, Number(r.bytes)]]),
    );
  };
  return {
    counters: await read(
      'SELECT owner_id, status, SUM(n)::int AS n, SUM(config_bytes) AS bytes FROM task_counts GROUP BY 1, 2 ORDER BY 1, 2',
    ),
    counted: await read(
      'SELECT owner_id, status, COUNT(*)::int AS n, SUM(config_bytes) AS bytes FROM tasks GROUP BY 1, 2 ORDER BY 1, 2',
    ),
  };
}

describe('task_counts on PostgreSQL', () => {
  it('equals a count of the tasks after concurrent creations, runs, cancels and deletes on two processes', async () => {
    const [a, b] = await openStores(2);
    const owners: Principal[] = [];
    for (const name of ['alice', 'bob']) owners.push((await a!.createPrincipal('user', name, 'researcher')).principal);
    const sites = ['s1', 's2'];
    const siteIds: number[] = [];
    for (const s of sites) siteIds.push((await a!.createPrincipal('site', s, 'site')).principal.id);
    const quota = { maxOpenTasks: 1000, maxConfigBytes: 10_000_000 };

    // Both processes create tasks for both owners at once (the quota's path, which reads the counters).
    const created = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        (i % 2 ? a! : b!).createTask(
          owners[i % 2]!,
          { name: null, image: IMAGE, config: Buffer.from(`{"i":${i}}`), configType: 'application/json', sites },
          quota,
        ),
      ),
    );
    expect(new Set(created.map((t) => t.id)).size).toBe(40);
    const mid = await countersAndCount(a!);
    expect(mid.counters).toEqual(mid.counted);

    // At once: runs claimed, started and finished on both processes (tasks go running, then
    // completed), a third of the tasks cancelled, and then finished ones deleted.
    const work = async (store: PostgresRegistryStore, siteId: number) => {
      for (;;) {
        const run = await store.claimNextRun(siteId, 60_000);
        if (!run) return;
        await store.startRun(siteId, run.id).catch(() => undefined); // cancelled meanwhile
        await store.finishRun(siteId, run.id, { state: 'completed', exitCode: 0 }).catch(() => undefined);
      }
    };
    await Promise.all([
      work(a!, siteIds[0]!),
      work(b!, siteIds[1]!),
      ...created.filter((_, i) => i % 3 === 0).map((t, k) => (k % 2 ? a! : b!).cancelTask(t.id)),
    ]);
    // Runs left running by a cancel are stopped by their site.
    for (const [k, siteId] of siteIds.entries())
      for (const run of await a!.listSiteRuns(siteId, ['running']))
        await [a!, b!][k]!.finishRun(siteId, run.id, { state: 'cancelled' });
    const after = await countersAndCount(a!);
    expect(after.counters).toEqual(after.counted);
    expect(Object.keys(after.counted).some((k) => k.endsWith('/completed'))).toBe(true);
    expect(Object.keys(after.counted).some((k) => k.endsWith('/cancelled'))).toBe(true);

    await Promise.all(created.filter((_, i) => i % 4 !== 1).map((t, k) => (k % 2 ? a! : b!).deleteTask(t.id)));
    const end = await countersAndCount(b!);
    expect(end.counters).toEqual(end.counted);
    expect(Object.values(end.counted).reduce((n, [tasks]) => n + (tasks as number), 0)).toBe(10);

    // The listing's total and the quota read the counters.
    const alice = owners[0]!;
    const { total } = await a!.listTasks({ ownerId: alice.id, status: null, limit: 5, offset: 0 });
    const { rows } = await a!.pool.query<{ n: number }>('SELECT COUNT(*)::int AS n FROM tasks WHERE owner_id = $1', [
      alice.id,
    ]);
    expect(total).toBe(rows[0]!.n);
    await a!.createTask(
      alice,
      { name: null, image: IMAGE, config: Buffer.from('{}'), configType: 'application/json', sites },
      quota,
    );
    await expect(
      a!.createTask(
        alice,
        { name: null, image: IMAGE, config: Buffer.from('{}'), configType: 'application/json', sites },
        { ...quota, maxOpenTasks: 1 },
      ),
    ).rejects.toMatchObject({ status: 429 });
  });
});
