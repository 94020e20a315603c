/**
 * The registry store as a domain: its answers are wire shapes (nothing to strip), reads do not
 * write, the run-state rules it enforces are the shared ones a second backend uses too, and the
 * limits of results and logs hold under concurrency and in bytes.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  FINISH_STATES,
  RUN_STATES,
  siteActionRefusal,
  type RunState,
  type SiteAction,
} from '../../shared/run-state.js';
import { runDetailSchema, siteRunViewSchema, taskSchema } from '../../shared/schemas.js';
import { compile } from '../../shared/validation.js';
import { openRawReader } from '../helpers/registry-fixture.js';
import { IMAGE, world } from './helpers.js';

// Strict: an extra field (such as the owner's id) fails.
const isTask = compile(taskSchema, 'task');
const isRun = compile(runDetailSchema, 'run');
const isSiteView = compile(siteRunViewSchema, 'run');

describe('the store answers in wire shapes', () => {
  it('returns tasks and runs without fields the wire does not have', async () => {
    const w = await world({ siteCount: 1 });
    const store = w.reg.store;
    const alice = (await store.listPrincipals('user')).find((p) => p.name === 'alice')!;
    const created = await store.createTask(alice, {
      name: null,
      image: IMAGE,
      config: Buffer.from('{}'),
      configType: 'application/json',
      sites: null,
    });
    const shapes: [string, unknown, (v: unknown) => boolean][] = [
      ['createTask', created, isTask],
      ['getTask', (await store.getTask(created.id))?.task, isTask],
      ['listTasks', (await store.listTasks({ ownerId: null, status: null, limit: 10, offset: 0 })).tasks[0], isTask],
      ['getRun', (await store.getRun(created.runs[0]!.id))?.run, isRun],
      ['cancelTask', await store.cancelTask(created.id), isTask],
    ];
    for (const [what, value, valid] of shapes) expect(valid(value), `${what}: ${JSON.stringify(value)}`).toBe(true);
    // The owner is kept beside the task, for the visibility check, not inside it.
    expect((await store.getTask(created.id))?.ownerId).toBe(alice.id);
    expect((await store.getRun(created.runs[0]!.id))?.ownerId).toBe(alice.id);
  });

  it('does not write when a site reads its run', async () => {
    const w = await world({ siteCount: 1 });
    await w.researcher.createTask();
    const run = await w.sites[0]!.claimAndStart();
    const db = openRawReader(w.reg.dataDir);
    try {
      const row = () => db.row('SELECT * FROM runs WHERE id = ?', run.id);
      const before = await row();
      const siteId = (await w.reg.store.listPrincipals('site'))[0]!.id;
      const view = await w.reg.store.getSiteRun(siteId, run.id);
      expect(isSiteView(view)).toBe(true);
      await w.sites[0]!.get(`/api/v1/site/runs/${run.id}`).expect(200);
      expect(await row()).toEqual(before);
    } finally {
      await db.close();
    }
  });
});

describe('run-state rules shared by every backend', () => {
  const ACTIONS: SiteAction[] = ['start', 'progress', 'log', ...FINISH_STATES.map((s) => ({ finish: s }) as const)];

  /** Puts a fresh run of a one-site task in `state`, through the API. */
  async function runIn(w: Awaited<ReturnType<typeof world>>, state: RunState): Promise<number> {
    const task = await w.researcher.createTask();
    const runId = task.runs[0]!.id;
    const site = w.sites[0]!;
    if (state === 'queued') return runId;
    await site.claim();
    if (state === 'assigned') return runId;
    if (state === 'rejected') {
      await site.finish(runId, { state: 'rejected', reason: 'not allowed' });
      return runId;
    }
    if (state === 'cancelled') {
      await w.researcher.post(`/api/v1/tasks/${task.id}/cancel`).expect(200);
      return runId;
    }
    await site.start(runId);
    if (state === 'awaiting_approval') {
      await site.post(`/api/v1/site/runs/${runId}/await-approval`, {}).expect(200);
      return runId;
    }
    if (state !== 'running') await site.finish(runId, { state, exitCode: state === 'completed' ? 0 : 1 });
    return runId;
  }

  it('lets a site do exactly what shared/run-state.ts allows, in every state', async () => {
    const w = await world({ siteCount: 1 });
    const site = w.sites[0]!;
    const verdicts: string[] = [];
    for (const state of RUN_STATES) {
      for (const action of ACTIONS) {
        const runId = await runIn(w, state);
        const name = typeof action === 'string' ? action : 'finish';
        const body =
          typeof action === 'string'
            ? action === 'progress'
              ? { current: 1 }
              : action === 'log'
                ? { text: 'x' }
                : {}
            : { state: action.finish };
        const res = await site.post(`/api/v1/site/runs/${runId}/${name}`, body);
        const expected = siteActionRefusal(action, state) === null ? 200 : 409;
        if (res.status !== expected)
          verdicts.push(`${JSON.stringify(action)} on a ${state} run: ${res.status}, rules say ${expected}`);
      }
    }
    expect(verdicts).toEqual([]);
  });
});

describe('result files', () => {
  it("keeps a run's result bytes within the limit when many uploads arrive at once", async () => {
    const w = await world({ siteCount: 1, overrides: { limits: { runResultBytes: 10_000, resultFileBytes: 5_000 } } });
    await w.researcher.createTask();
    const run = await w.sites[0]!.claimAndStart();
    const bytes = Buffer.alloc(2_250, 'x');
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => w.sites[0]!.upload(run.id, `part-${i}.bin`, bytes).then((r) => r.status)),
    );
    const stored = (await w.researcher.get(`/api/v1/runs/${run.id}/files`).expect(200)).body as { size: number }[];
    const total = stored.reduce((sum, f) => sum + f.size, 0);
    expect(total).toBeLessThanOrEqual(10_000);
    expect(stored).toHaveLength(4);
    expect(answers.filter((s) => s === 201)).toHaveLength(4);
    expect(answers.filter((s) => s === 413)).toHaveLength(16);
    // Refused uploads leave nothing on disk.
    expect(fs.readdirSync(path.join(w.reg.dataDir, 'files'))).toHaveLength(4);
    expect(fs.readdirSync(path.join(w.reg.dataDir, 'files-tmp'))).toEqual([]);
  });
});

describe('log appends', () => {
  it('limits one append in UTF-8 bytes, not characters', async () => {
    const w = await world({ siteCount: 1, overrides: { limits: { jsonBodyBytes: 2_000_000 } } });
    await w.researcher.createTask();
    const run = await w.sites[0]!.claimAndStart();
    // 100,000 characters, 300,000 bytes: over the 262,144-byte limit of one append.
    const res = await w.sites[0]!.post(`/api/v1/site/runs/${run.id}/log`, { text: '€'.repeat(100_000) });
    expect(res.status).toBe(413);
    expect(res.body).toMatchObject({ code: 'payload_too_large' });
    await w.sites[0]!.log(run.id, '€'.repeat(80_000));
    expect((await w.researcher.run(run.id)).logBytes).toBe(240_000);
  });
});
