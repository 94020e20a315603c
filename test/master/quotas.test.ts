import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { migrate, readMigrations } from '../../master/store/migrate.js';
import { startTestRegistry } from '../helpers/registry-fixture.js';
import { expectApiError, IMAGE, restart, world, type World } from './helpers.js';
import { testBackend } from '../helpers/postgres.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

/** The stored result files of the registry, by their storage names. */
function storedFiles(dataDir: string): string[] {
  return fs.readdirSync(path.join(dataDir, 'files')).sort();
}

/** A task of the researcher at site-a that ran, logged, sent two files and completed. */
async function finishedTask(w: World): Promise<{ taskId: number; runId: number }> {
  const task = await w.researcher.createTask({ sites: ['site-a'] });
  const site = w.sites[0]!;
  const run = await site.claimAndStart();
  await site.log(run.id, 'hello\n');
  await site.upload(run.id, 'result.json', Buffer.from('{"n":1}')).expect(201);
  await site.upload(run.id, 'plots/h.csv', Buffer.from('x\n')).expect(201);
  await site.finish(run.id, { state: 'completed', exitCode: 0 });
  return { taskId: task.id, runId: run.id };
}

describe('per-researcher quotas', () => {
  it('refuses a task past the open-task limit with 429 too_many_open_tasks, and counts finished tasks out', async () => {
    const w = await world({ siteCount: 1, overrides: { limits: { openTasksPerUser: 3 } } });
    const tasks = [await w.researcher.createTask(), await w.researcher.createTask(), await w.researcher.createTask()];
    const refused = await w.researcher.post('/api/v1/tasks', { image: IMAGE });
    expectApiError(refused, 429, 'too_many_open_tasks');
    expect(refused.body.details).toEqual({ open: 3, limit: 3 });
    // Another researcher has a quota of their own.
    await w.other.createTask();
    // A cancelled task is finished: room for one more.
    await w.researcher.post(`/api/v1/tasks/${tasks[0]!.id}/cancel`).expect(200);
    await w.researcher.createTask();
    expectApiError(await w.researcher.post('/api/v1/tasks', { image: IMAGE }), 429, 'too_many_open_tasks');
  });

  it('lets no more than the limit through when many tasks are posted at once', async () => {
    const w = await world({ siteCount: 1, overrides: { limits: { openTasksPerUser: 3 } } });
    const answers = await Promise.all(
      Array.from({ length: 12 }, () => w.researcher.post('/api/v1/tasks', { image: IMAGE, config: {} })),
    );
    expect(answers.filter((a) => a.status === 201)).toHaveLength(3);
    expect(answers.filter((a) => a.status === 429)).toHaveLength(9);
    expect((await w.admin.get('/api/v1/tasks').expect(200)).body.total).toBe(3);
  });

  it('refuses configs past the stored-bytes quota with 413 config_quota_exceeded; deleting a finished task makes room', async () => {
    const mb = 1024 * 1024;
    const w = await world({
      siteCount: 1,
      overrides: { limits: { jsonBodyBytes: 2 * mb, configBytes: 2 * mb, configBytesPerUser: 5 * mb } },
    });
    const config = 'x'.repeat(mb);
    // The database file's growth is measured on SQLite (on PostgreSQL the records are elsewhere).
    const sqlite = testBackend() === 'sqlite';
    const dbBefore = sqlite ? fs.statSync(path.join(w.reg.dataDir, 'registry.sqlite')).size : 0;
    // The attack of issue 14: 100 tasks with 1 MB configs. Four fit under 5 MB; the rest are refused.
    const created: number[] = [];
    for (let i = 0; i < 100; i++) {
      const res = await w.researcher.post('/api/v1/tasks', { image: IMAGE, config });
      if (res.status === 201) created.push(res.body.id as number);
      else expectApiError(res, 413, 'config_quota_exceeded');
    }
    expect(created).toHaveLength(4);
    const dbFiles = fs.readdirSync(w.reg.dataDir).filter((f) => f.startsWith('registry.sqlite'));
    const dbBytes = dbFiles.reduce((sum, f) => sum + fs.statSync(path.join(w.reg.dataDir, f)).size, 0);
    if (sqlite) expect(dbBytes - dbBefore).toBeLessThan(10 * mb);
    // Cancelled (finished) and deleted: its bytes no longer count.
    await w.researcher.post(`/api/v1/tasks/${created[0]!}/cancel`).expect(200);
    await w.researcher.method('DELETE', `/api/v1/tasks/${created[0]!}`).expect(200);
    await w.researcher.post('/api/v1/tasks', { image: IMAGE, config }).expect(201);
    expectApiError(await w.researcher.post('/api/v1/tasks', { image: IMAGE, config }), 413, 'config_quota_exceeded');
  });

  // Rewinds a SQLite file to before migration 0003; PostgreSQL's 0003 fills config_bytes the same way.
  it.skipIf(testBackend() === 'postgres')(
    'counts the configs of tasks stored before the quota existed (migration 0003)',
    async () => {
      const dataDir = makeTempDir('pht-quota-migration-');
      // A database as the registry left it before migration 0003, holding one 3000-byte config.
      const db = new Database(path.join(dataDir, 'registry.sqlite'));
      migrate(
        db,
        readMigrations().filter((m) => m.version < 3),
      );
      const now = new Date().toISOString();
      db.prepare(
        "INSERT INTO principals (id, kind, name, role, key_hash, created_at) VALUES (1, 'user', 'alice', 'researcher', 'h', ?)",
      ).run(now);
      db.prepare(
        "INSERT INTO tasks (owner_id, image, config, config_type, status, created_at, updated_at) VALUES (1, ?, ?, 'application/json', 'completed', ?, ?)",
      ).run(IMAGE, Buffer.alloc(3000, 0x31), now, now);
      db.close();

      const reg = await startTestRegistry({ limits: { configBytesPerUser: 4000 } }, { dataDir });
      try {
        const alice = (await reg.store.listPrincipals('user'))[0]!;
        const config = Buffer.from(JSON.stringify('y'.repeat(1500)));
        await expect(
          reg.store.createTask(
            alice,
            { name: null, image: IMAGE, config, configType: 'application/json', sites: null },
            { maxOpenTasks: 10, maxConfigBytes: 4000 },
          ),
        ).rejects.toMatchObject({ status: 413, code: 'config_quota_exceeded' });
      } finally {
        await reg.destroy();
      }
    },
  );
});

describe('DELETE /api/v1/tasks/:id', () => {
  it('deletes a finished task with its runs, logs and result files, on disk too', async () => {
    const w = await world({ siteCount: 1 });
    const kept = await finishedTask(w);
    const gone = await finishedTask(w);
    expect(storedFiles(w.reg.dataDir)).toHaveLength(4);
    const res = await w.researcher.method('DELETE', `/api/v1/tasks/${gone.taskId}`).expect(200);
    expect(res.body).toEqual({ id: gone.taskId, runs: 1, files: 2 });
    expectApiError(await w.researcher.get(`/api/v1/tasks/${gone.taskId}`), 404, 'not_found');
    expectApiError(await w.researcher.get(`/api/v1/runs/${gone.runId}`), 404, 'not_found');
    expectApiError(await w.researcher.get(`/api/v1/runs/${gone.runId}/log`), 404, 'not_found');
    expect(await w.reg.store.readLog(gone.runId)).toBe('');
    expect(await w.reg.store.listFiles(gone.runId)).toEqual([]);
    // Only the other task's two files are left, and they still serve.
    const left = storedFiles(w.reg.dataDir);
    expect(left).toHaveLength(2);
    expect([...(await w.reg.store.storedFileNames())].sort()).toEqual(left);
    await w.researcher.get(`/api/v1/runs/${kept.runId}/files/result.json`).expect(200);
    // Deleting again: it is not there any more.
    expectApiError(await w.researcher.method('DELETE', `/api/v1/tasks/${gone.taskId}`), 404, 'not_found');
  });

  it('refuses an unfinished task with 409 task_not_final and leaves it untouched', async () => {
    const w = await world({ siteCount: 1 });
    const task = await w.researcher.createTask();
    expectApiError(await w.researcher.method('DELETE', `/api/v1/tasks/${task.id}`), 409, 'task_not_final');
    const run = await w.sites[0]!.claimAndStart();
    expectApiError(await w.researcher.method('DELETE', `/api/v1/tasks/${task.id}`), 409, 'task_not_final');
    // Cancelled while running: not final until the site confirms.
    await w.researcher.post(`/api/v1/tasks/${task.id}/cancel`).expect(200);
    expectApiError(await w.researcher.method('DELETE', `/api/v1/tasks/${task.id}`), 409, 'task_not_final');
    await w.sites[0]!.finish(run.id, { state: 'cancelled' });
    await w.researcher.method('DELETE', `/api/v1/tasks/${task.id}`).expect(200);
  });

  it('lets only the owner or an admin delete: another researcher gets the same 404 as for a missing task', async () => {
    const w = await world({ siteCount: 1 });
    const a = await finishedTask(w);
    const b = await finishedTask(w);
    expectApiError(await w.other.method('DELETE', `/api/v1/tasks/${a.taskId}`), 404, 'not_found');
    expectApiError(await w.sites[0]!.method('DELETE', `/api/v1/tasks/${a.taskId}`), 403, 'forbidden');
    await w.researcher.get(`/api/v1/tasks/${a.taskId}`).expect(200);
    await w.admin.method('DELETE', `/api/v1/tasks/${a.taskId}`).expect(200);
    await w.researcher.method('DELETE', `/api/v1/tasks/${b.taskId}`).expect(200);
    expect(storedFiles(w.reg.dataDir)).toEqual([]);
  });

  // On PostgreSQL the files directory may be shared by several registries: a start removes only
  // unreferenced files older than 15 minutes (README, "Running a consortium registry").
  it.skipIf(testBackend() === 'postgres')(
    'leaves no orphan file when the registry dies between deleting the rows and the files',
    async () => {
      const w = await world({ siteCount: 1 });
      const { taskId } = await finishedTask(w);
      // What the route does before it removes the files: the rows go, the files are still on disk.
      const deleted = await w.reg.store.deleteTask(taskId);
      expect(deleted?.storedFiles).toHaveLength(2);
      expect(storedFiles(w.reg.dataDir)).toEqual([...deleted!.storedFiles].sort());
      const next = await restart(w.reg);
      expect(storedFiles(next.dataDir)).toEqual([]);
    },
  );
});
