import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { populate, registry, restart, snapshot, SiteClient, ResearcherClient, type World } from './helpers.js';

type RunIdsByState = Record<
  | 'completed'
  | 'failed'
  | 'timed_out'
  | 'cancelled'
  | 'rejected'
  | 'running'
  | 'cancelRequested'
  | 'assigned'
  | 'queued',
  number
>;

/** Puts one run in every state (and one running run flagged for cancellation). */
async function runsInEveryState(w: World): Promise<RunIdsByState> {
  const site = w.sites[0]!;
  const ids: Partial<RunIdsByState> = {};
  const next = async () => {
    await w.researcher.createTask({ sites: ['site-a'] });
    return site.claim();
  };
  for (const state of ['completed', 'failed', 'timed_out', 'cancelled'] as const) {
    const run = await next();
    await site.start(run.id);
    await site.log(run.id, `${state} run says hello\n`);
    await site.post(`/api/v1/site/runs/${run.id}/progress`, { current: 10, total: 10, message: 'done' }).expect(200);
    await site.upload(run.id, `out/${state}.csv`, Buffer.from(`state,${state}\n`)).expect(201);
    await site.finish(run.id, {
      state,
      exitCode: state === 'completed' ? 0 : 1,
      reason: `ended ${state}`,
      durationMs: 5,
    });
    ids[state] = run.id;
  }
  const rejected = await next();
  await site.finish(rejected.id, { state: 'rejected', reason: 'image not allowed' });
  ids.rejected = rejected.id;

  const running = await next();
  await site.start(running.id);
  await site.log(running.id, 'half way\n');
  await site.post(`/api/v1/site/runs/${running.id}/progress`, { current: 0.5, total: 1, message: 'half' }).expect(200);
  await site.upload(running.id, 'partial.bin', crypto.randomBytes(5000)).expect(201);
  ids.running = running.id;

  const cancelling = await next();
  await site.start(cancelling.id);
  await w.researcher.post(`/api/v1/tasks/${(await w.researcher.run(cancelling.id)).taskId}/cancel`).expect(200);
  ids.cancelRequested = cancelling.id;

  ids.assigned = (await next()).id;
  ids.queued = (await w.researcher.createTask({ sites: ['site-a'] })).runs[0]!.id;
  return ids as RunIdsByState;
}

describe('registry restart', () => {
  it('keeps every run’s state, progress, log and files, and the keys keep working', async () => {
    let reg = await registry();
    const w = await populate(reg, 1);
    const ids = await runsInEveryState(w);
    const before = await snapshot(w.admin);
    const partial = (await w.researcher.get(`/api/v1/runs/${ids.running}/files/partial.bin`).buffer(true).expect(200))
      .body as Buffer;

    reg = await restart(reg);
    // Same port, same keys: the old clients simply go on.
    const admin = new ResearcherClient(reg.url, w.admin.key);
    const researcher = new ResearcherClient(reg.url, w.researcher.key);
    const site = new SiteClient(reg.url, w.sites[0]!.key!, 'site-a');
    expect(await snapshot(admin)).toEqual(before);
    const states = Object.fromEntries(
      await Promise.all(Object.entries(ids).map(async ([k, id]) => [k, (await researcher.run(id)).status])),
    );
    expect(states).toEqual({
      completed: 'completed',
      failed: 'failed',
      timed_out: 'timed_out',
      cancelled: 'cancelled',
      rejected: 'rejected',
      running: 'running',
      cancelRequested: 'running',
      assigned: 'assigned',
      queued: 'queued',
    });
    const again = (await researcher.get(`/api/v1/runs/${ids.running}/files/partial.bin`).buffer(true).expect(200))
      .body as Buffer;
    expect(Buffer.compare(again, partial)).toBe(0);

    // Work goes on where it stopped.
    expect((await site.get(`/api/v1/site/runs/${ids.cancelRequested}`).expect(200)).body.cancelRequested).toBe(true);
    await site.log(ids.running, 'after restart\n');
    expect((await researcher.get(`/api/v1/runs/${ids.running}/log`).expect(200)).text).toBe(
      'half way\nafter restart\n',
    );
    await site.finish(ids.running, { state: 'completed', exitCode: 0 });
    await site.start(ids.assigned);
    expect((await site.claim()).id).toBe(ids.queued);
  });

  it('requeues a run whose lease ran out while the registry was down', async () => {
    let reg = await registry({ lease: '300ms' });
    const w = await populate(reg, 1);
    await w.researcher.createTask();
    const run = await w.sites[0]!.claim();
    await reg.close();
    // Wait out the lease with the registry down (the sweeper is not running).
    await new Promise((r) => setTimeout(r, 400));
    reg = await restart(reg);
    const site = new SiteClient(reg.url, w.sites[0]!.key!, 'site-a');
    const researcher = new ResearcherClient(reg.url, w.researcher.key);
    const again = await site.get('/api/v1/site/runs/next?wait=30').expect(200);
    expect(again.body).toMatchObject({ id: run.id, attempt: 2 });
    expect((await researcher.run(run.id)).attempt).toBe(2);
  });
});
