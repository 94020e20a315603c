import { describe, expect, it } from 'vitest';
import { eventually, expectApiError, world } from './helpers.js';

describe('cancelling a task', () => {
  it('ends queued and assigned runs as cancelled at once', async () => {
    const { researcher, sites } = await world({ siteCount: 2 });
    const task = await researcher.createTask();
    const assigned = await sites[0]!.claim();
    const res = await researcher.post(`/api/v1/tasks/${task.id}/cancel`).expect(200);
    expect(res.body.status).toBe('cancelled');
    expect(res.body.runs.map((r: { status: string }) => r.status)).toEqual(['cancelled', 'cancelled']);
    expect(res.body.runs[0].reason).toMatch(/cancelled/);
    // The site that held the assigned run learns it is over; the other site gets nothing.
    expect((await sites[0]!.get(`/api/v1/site/runs/${assigned.id}`).expect(200)).body.status).toBe('cancelled');
    await sites[1]!.get('/api/v1/site/runs/next').expect(204);
  });

  it('flags a running run for the site, which sees cancelRequested, and ends the task once the site confirms', async () => {
    const { researcher, sites } = await world({ siteCount: 1 });
    const task = await researcher.createTask();
    const site = sites[0]!;
    const run = await site.claimAndStart();

    const res = await researcher.post(`/api/v1/tasks/${task.id}/cancel`).expect(200);
    expect(res.body.status).toBe('running');
    expect(res.body.runs[0]).toMatchObject({ status: 'running', cancelRequested: true });

    const view = await site.get(`/api/v1/site/runs/${run.id}`).expect(200);
    expect(view.body).toEqual({ id: run.id, taskId: task.id, status: 'running', cancelRequested: true });

    await site.finish(run.id, { state: 'cancelled', reason: 'stopped on request' });
    const after = await researcher.task(task.id);
    expect(after.status).toBe('cancelled');
    expect(after.runs[0]).toMatchObject({ status: 'cancelled', reason: 'stopped on request' });
  });

  it('counts the task as cancelled even when a flagged run completes before the site stops it', async () => {
    const { researcher, sites } = await world({ siteCount: 1 });
    const task = await researcher.createTask();
    const run = await sites[0]!.claimAndStart();
    await researcher.post(`/api/v1/tasks/${task.id}/cancel`).expect(200);
    await sites[0]!.finish(run.id, { state: 'completed', exitCode: 0 });
    expect((await researcher.task(task.id)).status).toBe('cancelled');
  });

  it('ends a flagged run the site never confirms after one lease', async () => {
    const { researcher, sites } = await world({ siteCount: 1, overrides: { lease: '300ms' } });
    const task = await researcher.createTask();
    const run = await sites[0]!.claimAndStart();
    await researcher.post(`/api/v1/tasks/${task.id}/cancel`).expect(200);
    const ended = await eventually(
      () => researcher.run(run.id),
      (r) => r.status === 'cancelled',
      'the unconfirmed cancel to be swept',
    );
    expect(ended.reason).toMatch(/did not confirm/);
    expect((await researcher.task(task.id)).status).toBe('cancelled');
  });

  it('is idempotent, and changes nothing on a task that has already ended', async () => {
    const { researcher, sites } = await world({ siteCount: 1 });
    const task = await researcher.createTask();
    const run = await sites[0]!.claimAndStart();
    await sites[0]!.finish(run.id, { state: 'completed' });
    const before = await researcher.task(task.id);
    const res = await researcher.post(`/api/v1/tasks/${task.id}/cancel`).expect(200);
    expect(res.body).toEqual(before);
    await researcher.post(`/api/v1/tasks/${task.id}/cancel`, {}).expect(200);
    expect(await researcher.task(task.id)).toEqual(before);
  });

  it('does not hand out a cancelled task’s runs', async () => {
    const { researcher, sites } = await world({ siteCount: 1 });
    const task = await researcher.createTask();
    await researcher.post(`/api/v1/tasks/${task.id}/cancel`).expect(200);
    await sites[0]!.get('/api/v1/site/runs/next').expect(204);
    expectApiError(await sites[0]!.post(`/api/v1/site/runs/${task.runs[0]!.id}/start`), 409, 'conflict');
  });

  it('refuses a body with fields (400)', async () => {
    const { researcher } = await world({ siteCount: 1 });
    const task = await researcher.createTask();
    expectApiError(await researcher.post(`/api/v1/tasks/${task.id}/cancel`, { force: true }), 400, 'validation_failed');
    expect((await researcher.task(task.id)).status).toBe('queued');
  });
});
