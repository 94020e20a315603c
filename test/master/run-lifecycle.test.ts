import { describe, expect, it } from 'vitest';
import { eventually, expectApiError, IMAGE, world } from './helpers.js';

const DIGEST = `${IMAGE}@sha256:${'a'.repeat(64)}`;

describe('run lifecycle', () => {
  it('creates one queued run per target site and a queued task', async () => {
    const { researcher, sites } = await world({ siteCount: 3 });
    const task = await researcher.createTask({ name: 'count patients', sites: ['site-a', 'site-c'] });
    expect(task).toMatchObject({ name: 'count patients', image: IMAGE, owner: 'alice', status: 'queued' });
    expect(task.runs.map((r) => [r.site, r.status])).toEqual([
      ['site-a', 'queued'],
      ['site-c', 'queued'],
    ]);
    // site-b was not targeted: it has nothing to do.
    await sites[1]!.get('/api/v1/site/runs/next').expect(204);
  });

  it('targets every enabled site when no sites are named', async () => {
    const { researcher } = await world({ siteCount: 3 });
    const task = await researcher.createTask();
    expect(task.runs.map((r) => r.site).sort()).toEqual(['site-a', 'site-b', 'site-c']);
  });

  it('moves a run queued → assigned → running → completed and records the result', async () => {
    const { researcher, sites } = await world({ siteCount: 1 });
    const site = sites[0]!;
    const task = await researcher.createTask({ config: { query: 'SELECT ?s WHERE { ?s ?p ?o }' } });
    const runId = task.runs[0]!.id;

    const assignment = await site.claim();
    expect(assignment).toEqual({
      id: runId,
      taskId: task.id,
      image: IMAGE,
      config: { query: 'SELECT ?s WHERE { ?s ?p ?o }' },
      attempt: 1,
      postedBy: { researcher: 'alice', organization: null, project: null },
    });
    expect((await researcher.run(runId)).status).toBe('assigned');

    expect(await site.start(runId)).toEqual({ id: runId, taskId: task.id, status: 'running', cancelRequested: false });
    const running = await researcher.run(runId);
    expect(running.status).toBe('running');
    expect(running.startedAt).not.toBeNull();

    await site.post(`/api/v1/site/runs/${runId}/progress`, { current: 3, total: 10, message: 'querying' }).expect(200);
    expect((await researcher.run(runId)).progress).toEqual({ current: 3, total: 10, message: 'querying' });

    const view = await site.finish(runId, { state: 'completed', exitCode: 0, digest: DIGEST, durationMs: 1234 });
    expect(view.status).toBe('completed');
    const done = await researcher.run(runId);
    expect(done).toMatchObject({ status: 'completed', exitCode: 0, digest: DIGEST, durationMs: 1234, reason: null });
    expect(done.finishedAt).not.toBeNull();
    expect((await researcher.task(task.id)).status).toBe('completed');
  });

  it.each(['failed', 'timed_out', 'cancelled'] as const)('lets a running run end as %s', async (state) => {
    const { researcher, sites } = await world({ siteCount: 1 });
    const task = await researcher.createTask();
    const run = await sites[0]!.claimAndStart();
    await sites[0]!.finish(run.id, { state, exitCode: 3, reason: `ended ${state}` });
    expect(await researcher.run(run.id)).toMatchObject({ status: state, exitCode: 3, reason: `ended ${state}` });
    // The researcher did not cancel the task, so a run the site cancelled counts as not completed.
    expect((await researcher.task(task.id)).status).toBe('failed');
  });

  it('lets a site reject a queued or assigned run before starting it', async () => {
    const { researcher, sites } = await world({ siteCount: 2 });
    const task = await researcher.createTask();
    const [a, b] = sites as [(typeof sites)[0], (typeof sites)[0]];
    const assigned = await a.claim();
    await a.finish(assigned.id, { state: 'rejected', reason: 'image not allowed' });
    const queued = task.runs.find((r) => r.site === 'site-b')!;
    await b.finish(queued.id, { state: 'rejected', reason: 'image not allowed' });
    const after = await researcher.task(task.id);
    expect(after.runs.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(after.status).toBe('failed');
  });

  it('lets a site reject the results of a run that ran (its output policy), but not a run that ended (409)', async () => {
    const { researcher, sites } = await world({ siteCount: 1 });
    await researcher.createTask();
    const run = await sites[0]!.claimAndStart();
    await sites[0]!.finish(run.id, { state: 'rejected', reason: 'output policy: too many files' });
    expect(await researcher.run(run.id)).toMatchObject({ status: 'rejected', reason: 'output policy: too many files' });
    await researcher.createTask();
    const done = await sites[0]!.claimAndStart();
    await sites[0]!.finish(done.id, { state: 'completed', exitCode: 0 });
    const res = await sites[0]!.post(`/api/v1/site/runs/${done.id}/finish`, { state: 'rejected' });
    expectApiError(res, 409, 'conflict');
  });

  it.each(['completed', 'timed_out'] as const)('refuses %s for a run that never started (409)', async (state) => {
    const { researcher, sites } = await world({ siteCount: 1 });
    await researcher.createTask();
    const run = await sites[0]!.claim();
    expectApiError(await sites[0]!.post(`/api/v1/site/runs/${run.id}/finish`, { state }), 409, 'conflict');
    expect((await researcher.run(run.id)).status).toBe('assigned');
  });

  it('refuses to start a run twice, or a finished run (409)', async () => {
    const { researcher, sites } = await world({ siteCount: 1 });
    await researcher.createTask();
    const site = sites[0]!;
    const run = await site.claimAndStart();
    expectApiError(await site.post(`/api/v1/site/runs/${run.id}/start`), 409, 'conflict');
    await site.finish(run.id, { state: 'completed', exitCode: 0 });
    expectApiError(await site.post(`/api/v1/site/runs/${run.id}/start`), 409, 'conflict');
    expect((await researcher.run(run.id)).status).toBe('completed');
  });

  it('answers a repeated finish with the same state as success and changes nothing', async () => {
    const { researcher, sites } = await world({ siteCount: 1 });
    await researcher.createTask();
    const site = sites[0]!;
    const run = await site.claimAndStart();
    await site.finish(run.id, { state: 'completed', exitCode: 0, durationMs: 10 });
    const first = await researcher.run(run.id);
    const again = await site.finish(run.id, { state: 'completed', exitCode: 0, durationMs: 10 });
    expect(again.status).toBe('completed');
    expect(await researcher.run(run.id)).toEqual(first);
  });

  it('refuses a second finish with a different state (409) and keeps the first', async () => {
    const { researcher, sites } = await world({ siteCount: 1 });
    await researcher.createTask();
    const site = sites[0]!;
    const run = await site.claimAndStart();
    await site.finish(run.id, { state: 'failed', exitCode: 1 });
    const res = await site.post(`/api/v1/site/runs/${run.id}/finish`, { state: 'completed', exitCode: 0 });
    expectApiError(res, 409, 'conflict');
    expect(await researcher.run(run.id)).toMatchObject({ status: 'failed', exitCode: 1 });
  });

  it('refuses progress and log lines for a run that is not running (409)', async () => {
    const { researcher, sites } = await world({ siteCount: 1 });
    await researcher.createTask();
    const site = sites[0]!;
    const run = await site.claim();
    expectApiError(await site.post(`/api/v1/site/runs/${run.id}/progress`, { current: 1 }), 409, 'conflict');
    expectApiError(await site.post(`/api/v1/site/runs/${run.id}/log`, { text: 'x' }), 409, 'conflict');
    await site.start(run.id);
    await site.finish(run.id, { state: 'completed' });
    expectApiError(await site.post(`/api/v1/site/runs/${run.id}/progress`, { current: 1 }), 409, 'conflict');
    expectApiError(await site.post(`/api/v1/site/runs/${run.id}/log`, { text: 'x' }), 409, 'conflict');
  });

  it('requeues an assigned run whose lease expires, and hands it out again as attempt 2', async () => {
    const { researcher, sites } = await world({ siteCount: 1, overrides: { lease: '300ms' } });
    const task = await researcher.createTask();
    const site = sites[0]!;
    const first = await site.claim();
    expect(first.attempt).toBe(1);
    await eventually(
      () => researcher.run(first.id),
      (r) => r.status === 'queued',
      'the lease to expire',
    );
    expect((await researcher.task(task.id)).status).toBe('queued');
    const second = await site.claim();
    expect(second).toMatchObject({ id: first.id, attempt: 2 });
  });

  it('lets a slow site start a run whose lease expired; a second claimer’s start then gets 409', async () => {
    const { researcher, sites } = await world({ siteCount: 1, overrides: { lease: '300ms' } });
    await researcher.createTask();
    const site = sites[0]!;
    const slow = await site.claim();
    await eventually(
      () => researcher.run(slow.id),
      (r) => r.status === 'queued',
      'the lease to expire',
    );
    const again = await site.claim();
    expect(again).toMatchObject({ id: slow.id, attempt: 2 });
    // First start wins; the other poller learns it must not run the image.
    await site.start(slow.id);
    expectApiError(await site.post(`/api/v1/site/runs/${again.id}/start`), 409, 'conflict');
    expect((await researcher.run(slow.id)).status).toBe('running');
  });

  it('does not requeue a run once it is running, whatever the lease', async () => {
    const { researcher, sites } = await world({ siteCount: 1, overrides: { lease: '300ms' } });
    await researcher.createTask();
    const run = await sites[0]!.claimAndStart();
    // Another run whose lease does expire tells us the sweeper has had its chance.
    await researcher.createTask();
    const other = await sites[0]!.claim();
    await eventually(
      () => researcher.run(other.id),
      (r) => r.status === 'queued',
      'the other lease to expire',
    );
    expect((await researcher.run(run.id)).status).toBe('running');
  });

  it('lists the site’s assigned and running runs, not queued or finished ones', async () => {
    const { researcher, sites } = await world({ siteCount: 1 });
    for (let i = 0; i < 4; i++) await researcher.createTask();
    const site = sites[0]!;
    const finished = await site.claimAndStart();
    await site.finish(finished.id, { state: 'completed' });
    const running = await site.claimAndStart();
    const assigned = await site.claim();
    const res = await site.get('/api/v1/site/runs').expect(200);
    expect(res.body.map((r: { id: number; status: string }) => [r.id, r.status])).toEqual([
      [running.id, 'running'],
      [assigned.id, 'assigned'],
    ]);
  });
});

describe('derived task status', () => {
  it('is queued until a run is picked up, then running until every run is final', async () => {
    const { researcher, sites } = await world({ siteCount: 2 });
    const task = await researcher.createTask();
    expect(task.status).toBe('queued');
    const a = await sites[0]!.claim();
    expect((await researcher.task(task.id)).status).toBe('running');
    await sites[0]!.start(a.id);
    await sites[0]!.finish(a.id, { state: 'completed' });
    // One run done, one still queued: the task is under way.
    expect((await researcher.task(task.id)).status).toBe('running');
    const b = await sites[1]!.claimAndStart();
    await sites[1]!.finish(b.id, { state: 'completed' });
    expect((await researcher.task(task.id)).status).toBe('completed');
  });

  it('is failed when every run is final and one did not complete', async () => {
    const { researcher, sites } = await world({ siteCount: 2 });
    const task = await researcher.createTask();
    const a = await sites[0]!.claimAndStart();
    await sites[0]!.finish(a.id, { state: 'completed' });
    const b = await sites[1]!.claimAndStart();
    await sites[1]!.finish(b.id, { state: 'failed', exitCode: 2 });
    expect((await researcher.task(task.id)).status).toBe('failed');
  });

  it('is cancelled once a cancelled task’s runs are all final', async () => {
    const { researcher } = await world({ siteCount: 2 });
    const task = await researcher.createTask();
    const res = await researcher.post(`/api/v1/tasks/${task.id}/cancel`).expect(200);
    expect(res.body.status).toBe('cancelled');
  });

  it('filters the task list by derived status', async () => {
    const { researcher, sites } = await world({ siteCount: 1 });
    const done = await researcher.createTask();
    const run = await sites[0]!.claimAndStart();
    await sites[0]!.finish(run.id, { state: 'completed' });
    const waiting = await researcher.createTask();
    const completed = await researcher.get('/api/v1/tasks?status=completed').expect(200);
    expect(completed.body.tasks.map((t: { id: number }) => t.id)).toEqual([done.id]);
    const queued = await researcher.get('/api/v1/tasks?status=queued').expect(200);
    expect(queued.body).toMatchObject({ total: 1, limit: 50, offset: 0 });
    expect(queued.body.tasks.map((t: { id: number }) => t.id)).toEqual([waiting.id]);
  });

  it('pages the task list newest first with limit and offset', async () => {
    const { researcher } = await world({ siteCount: 1 });
    const ids: number[] = [];
    for (let i = 0; i < 5; i++) ids.push((await researcher.createTask()).id);
    const page = await researcher.get('/api/v1/tasks?limit=2&offset=1').expect(200);
    expect(page.body).toMatchObject({ total: 5, limit: 2, offset: 1 });
    expect(page.body.tasks.map((t: { id: number }) => t.id)).toEqual([ids[3], ids[2]]);
  });
});

describe('disabling a site', () => {
  it('fails its unfinished runs so the task can end, and leaves finished runs alone', async () => {
    const { researcher, sites, reg } = await world({ siteCount: 3 });
    const task = await researcher.createTask();
    const [a, b] = sites;
    const runA = await a!.claimAndStart();
    await a!.finish(runA.id, { state: 'completed', exitCode: 0 });
    await b!.claimAndStart();
    expect(await reg.store.setPrincipalEnabled('site', 'site-b', false)).toBe(true);
    expect(await reg.store.setPrincipalEnabled('site', 'site-c', false)).toBe(true);
    const after = await researcher.task(task.id);
    expect(after.runs.map((r) => [r.site, r.status])).toEqual([
      ['site-a', 'completed'],
      ['site-b', 'failed'],
      ['site-c', 'failed'],
    ]);
    expect(after.runs[2]!.reason).toBe('the site was disabled at the registry');
    expect(after.status).toBe('failed');
  });
});
