/**
 * Group commit of task creations (master/creation-batcher.ts) and its use by the SQLite store:
 * creations submitted together are written by one call, each lands once, a refused one fails
 * alone, a failing write fails its whole batch and nothing of it lands, and closing writes what
 * was accepted.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { CreationBatcher, CreationBatcherClosedError, type CreationOutcome } from '../../master/creation-batcher.js';
import { RegistryError } from '../../master/errors.js';
import type { NewTask, Principal } from '../../master/store/registry-store.js';
import { SqliteRegistryStore } from '../../master/store/sqlite-store.js';
import { testBackend } from '../helpers/postgres.js';
import { expectApiError, IMAGE, world } from './helpers.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

/** A batcher whose write records each batch; items below 0 are refused alone. */
function recordingBatcher(maxBatch?: number) {
  const batches: number[][] = [];
  const batcher = new CreationBatcher<number, string>((items) => {
    batches.push(items);
    return items.map((n): CreationOutcome<string> =>
      n < 0 ? { ok: false, error: new Error(`refused ${n}`) } : { ok: true, value: `task ${n}` },
    );
  }, maxBatch);
  return { batches, batcher };
}

describe('the creation batcher', () => {
  it('writes creations submitted in one turn in one batch and answers each with its own outcome', async () => {
    const { batches, batcher } = recordingBatcher();
    const answers = await Promise.all([1, 2, 3, 4].map((n) => batcher.submit(n)));
    expect(answers).toEqual(['task 1', 'task 2', 'task 3', 'task 4']);
    expect(batches).toEqual([[1, 2, 3, 4]]);
  });

  it('refuses one creation alone and answers the rest of its batch', async () => {
    const { batches, batcher } = recordingBatcher();
    const settled = await Promise.allSettled([1, -2, 3].map((n) => batcher.submit(n)));
    expect(settled.map((s) => (s.status === 'fulfilled' ? s.value : String(s.reason)))).toEqual([
      'task 1',
      'Error: refused -2',
      'task 3',
    ]);
    expect(batches).toHaveLength(1);
  });

  it('refuses every creation of a batch whose write throws, and writes the next batch', async () => {
    let fail = true;
    const batcher = new CreationBatcher<number, number>((items) => {
      if (fail) throw new Error('disk I/O error');
      return items.map((n) => ({ ok: true, value: n }));
    });
    const settled = await Promise.allSettled([1, 2].map((n) => batcher.submit(n)));
    expect(settled.map((s) => s.status === 'rejected' && String(s.reason))).toEqual([
      'Error: disk I/O error',
      'Error: disk I/O error',
    ]);
    fail = false;
    expect(await batcher.submit(3)).toBe(3);
  });

  it('splits a large burst into batches of at most maxBatch, in order', async () => {
    const { batches, batcher } = recordingBatcher(2);
    expect(await Promise.all([1, 2, 3, 4, 5].map((n) => batcher.submit(n)))).toHaveLength(5);
    expect(batches).toEqual([[1, 2], [3, 4], [5]]);
  });

  it('collects creations that arrive while an asynchronous write runs into the next batch', async () => {
    const batches: number[][] = [];
    let release: () => void = () => undefined;
    const batcher = new CreationBatcher<number, number>(async (items) => {
      batches.push(items);
      if (batches.length === 1) await new Promise<void>((r) => (release = r));
      return items.map((n) => ({ ok: true, value: n }));
    });
    const first = batcher.submit(1);
    await new Promise((r) => setImmediate(r));
    expect(batches).toEqual([[1]]);
    const later = [batcher.submit(2), batcher.submit(3)];
    await new Promise((r) => setImmediate(r));
    // The first write has not returned: the others wait for it.
    expect(batches).toEqual([[1]]);
    release();
    expect(await Promise.all([first, ...later])).toEqual([1, 2, 3]);
    expect(batches).toEqual([[1], [2, 3]]);
  });

  it('writes what was submitted before close, then refuses new creations', async () => {
    const { batches, batcher } = recordingBatcher();
    const pending = batcher.submit(7);
    await batcher.close();
    expect(batches).toEqual([[7]]);
    expect(await pending).toBe('task 7');
    await expect(batcher.submit(8)).rejects.toBeInstanceOf(CreationBatcherClosedError);
    await batcher.close();
  });
});

describe.skipIf(testBackend() === 'postgres')('task creation in the SQLite store', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function openStore() {
    const dir = makeTempDir('pht-creations-');
    dirs.push(dir);
    const file = path.join(dir, 'registry.sqlite');
    const store = new SqliteRegistryStore(file);
    for (const name of ['site-a', 'site-b']) await store.createPrincipal('site', name, 'site');
    const alice = (await store.createPrincipal('user', 'alice', 'researcher')).principal;
    return { store, file, alice };
  }

  const task = (sites: string[] | null, name: string | null = null): NewTask => ({
    name,
    image: IMAGE,
    config: Buffer.from('{}'),
    configType: 'application/json',
    sites,
  });

  /** Rows in the file, read through a connection of its own (what a restart would see). */
  function taskRows(file: string): { name: string | null }[] {
    const db = new Database(file, { readonly: true });
    try {
      return db.prepare('SELECT name FROM tasks ORDER BY id').all() as { name: string | null }[];
    } finally {
      db.close();
    }
  }

  /** The sizes of the batches the store writes, each in one transaction. */
  function batchSizes(store: SqliteRegistryStore): number[] {
    const internals = store as unknown as { insertTasks: (batch: unknown[]) => unknown };
    const write = internals.insertTasks;
    const sizes: number[] = [];
    internals.insertTasks = (batch) => {
      sizes.push(batch.length);
      return write(batch);
    };
    return sizes;
  }

  it('lands each of many concurrent creations once, in submission order, with the answer getTask gives', async () => {
    const { store, file, alice } = await openStore();
    const sizes = batchSizes(store);
    const created = await Promise.all(
      Array.from({ length: 40 }, (_, i) => store.createTask(alice, task([i % 2 ? 'site-a' : 'site-b'], `t${i}`))),
    );
    expect(created.map((t) => t.name)).toEqual(Array.from({ length: 40 }, (_, i) => `t${i}`));
    expect(sizes).toEqual([40]);
    expect(new Set(created.map((t) => t.id)).size).toBe(40);
    expect(created.map((t) => t.id)).toEqual([...created.map((t) => t.id)].sort((a, b) => a - b));
    for (const t of created) expect((await store.getTask(t.id))?.task).toEqual(t);
    await store.close();
    expect(taskRows(file).map((r) => r.name)).toEqual(Array.from({ length: 40 }, (_, i) => `t${i}`));
  });

  it('refuses a creation for an unknown site alone, with its precise error, and lands the others of its batch', async () => {
    const { store, file, alice } = await openStore();
    const settled = await Promise.allSettled([
      store.createTask(alice, task(['site-a'], 'first')),
      store.createTask(alice, task(['site-a', 'nowhere'], 'bad')),
      store.createTask(alice, task(['site-b'], 'last')),
    ]);
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const refusal = (settled[1] as PromiseRejectedResult).reason as RegistryError;
    expect(refusal).toBeInstanceOf(RegistryError);
    expect(refusal.status).toBe(422);
    expect(refusal.code).toBe('unknown_site');
    await store.close();
    // The refused task left no row and no run behind (its savepoint was rolled back).
    expect(taskRows(file).map((r) => r.name)).toEqual(['first', 'last']);
    const db = new Database(file, { readonly: true });
    expect(db.prepare('SELECT COUNT(*) FROM runs').pluck().get()).toBe(2);
    db.close();
  });

  it('applies the open-task quota within one batch: creations past it are refused, earlier ones counted', async () => {
    const { store, alice } = await openStore();
    const quota = { maxOpenTasks: 3, maxConfigBytes: 1_000_000 };
    const settled = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) => store.createTask(alice, task(['site-a'], `q${i}`), quota)),
    );
    expect(settled.map((s) => s.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'fulfilled',
      'rejected',
      'rejected',
      'rejected',
    ]);
    for (const s of settled.slice(3))
      expect(((s as PromiseRejectedResult).reason as RegistryError).code).toBe('too_many_open_tasks');
    await store.close();
  });

  it('fails every creation of a batch when the store fails inside it, and commits none of them', async () => {
    const { store, file, alice } = await openStore();
    // An owner that does not exist breaks the tasks table's foreign key: a store error, not a
    // refusal of the request.
    const ghost: Principal = { ...alice, id: 999_999, name: 'ghost' };
    const settled = await Promise.allSettled([
      store.createTask(alice, task(['site-a'], 'before')),
      store.createTask(ghost, task(['site-a'], 'ghost')),
      store.createTask(alice, task(['site-b'], 'after')),
    ]);
    expect(settled.map((s) => s.status)).toEqual(['rejected', 'rejected', 'rejected']);
    for (const s of settled) expect(String((s as PromiseRejectedResult).reason)).toMatch(/FOREIGN KEY/);
    // The next batch is written as usual.
    expect((await store.createTask(alice, task(['site-a'], 'next'))).name).toBe('next');
    await store.close();
    expect(taskRows(file).map((r) => r.name)).toEqual(['next']);
  });

  it('writes a creation accepted before close, and answers it, before the file is closed', async () => {
    const { store, file, alice } = await openStore();
    const pending = store.createTask(alice, task(['site-a'], 'at shutdown'));
    await store.close();
    expect((await pending).name).toBe('at shutdown');
    expect(taskRows(file).map((r) => r.name)).toEqual(['at shutdown']);
  });
});

describe('POST /api/v1/tasks under concurrent posts', () => {
  it('creates each of many concurrent tasks once and refuses the one for an unknown site alone, with its error', async () => {
    const w = await world({ siteCount: 2 });
    const answers = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        w.researcher.post('/api/v1/tasks', { image: IMAGE, name: `c${i}`, sites: [i === 5 ? 'nowhere' : 'site-a'] }),
      ),
    );
    expectApiError(answers[5]!, 422, 'unknown_site');
    const created = answers.filter((_, i) => i !== 5);
    for (const a of created) {
      expect(a.status).toBe(201);
      expect(a.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(a.headers.location).toBe(`/api/v1/tasks/${(a.body as { id: number }).id}`);
      // The answer is the task as the registry then shows it.
      expect((await w.researcher.get(a.headers.location!).expect(200)).body).toEqual(a.body);
    }
    expect(new Set(created.map((a) => (a.body as { id: number }).id)).size).toBe(11);
    expect((await w.researcher.get('/api/v1/tasks').expect(200)).body.total).toBe(11);
  });
});
