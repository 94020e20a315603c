/**
 * A task list's `total` and the config quota stay true as tasks are created, change state, are
 * cancelled and deleted (on SQLite they come from counters kept by triggers, migration 0006).
 */
import { describe, expect, it } from 'vitest';
import { TASK_STATUSES } from '../../shared/run-state.js';
import { openRawReader } from '../helpers/registry-fixture.js';
import { testBackend } from '../helpers/postgres.js';
import { world } from './helpers.js';

describe('task counts', () => {
  it('answers the same totals as counting the tasks, for every owner and status, after every kind of change', async () => {
    const w = await world({ siteCount: 1 });
    const site = w.sites[0]!;
    const created = [];
    for (let i = 0; i < 4; i++) created.push(await w.researcher.createTask({ config: { i, pad: 'x'.repeat(i * 10) } }));
    await w.other.createTask();
    // One completed, one cancelled, one deleted after finishing, one left queued.
    const first = await site.claimAndStart();
    await site.finish(first.id, { state: 'completed', exitCode: 0 });
    await w.researcher.post(`/api/v1/tasks/${created[1]!.id}/cancel`).expect(200);
    const third = await site.claimAndStart();
    await site.finish(third.id, { state: 'failed', exitCode: 1 });
    await w.researcher.method('DELETE', `/api/v1/tasks/${third.taskId}`).expect(200);

    const db = openRawReader(w.reg.dataDir);
    try {
      const principals = await w.reg.store.listPrincipals('user');
      for (const owner of [...principals.map((p) => p.id), null]) {
        for (const status of [null, ...TASK_STATUSES]) {
          const { total } = await w.reg.store.listTasks({ ownerId: owner, status, limit: 1, offset: 0 });
          const where = [owner === null ? null : 'owner_id = ?', status === null ? null : 'status = ?'].filter(Boolean);
          const args = [owner, status].filter((v) => v !== null);
          const sql = `SELECT COUNT(*) AS n FROM tasks${where.length ? ` WHERE ${where.join(' AND ')}` : ''}`;
          const counted = (await db.row(sql, ...args)) as { n: number | string };
          expect(total, `owner ${owner}, status ${status}`).toBe(Number(counted.n));
        }
        if (owner !== null && testBackend() === 'sqlite') {
          const kept = (await db.row(
            'SELECT COALESCE(SUM(config_bytes), 0) AS b FROM task_counts WHERE owner_id = ?',
            owner,
          )) as { b: number };
          const summed = (await db.row(
            'SELECT COALESCE(SUM(config_bytes), 0) AS b FROM tasks WHERE owner_id = ?',
            owner,
          )) as { b: number };
          expect(kept.b, `config bytes of owner ${owner}`).toBe(summed.b);
        }
      }
    } finally {
      await db.close();
    }
  });
});
