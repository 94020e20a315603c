import { describe, expect, it } from 'vitest';
import { eventually, world } from './helpers.js';

/**
 * A run held for the site's officer (awaiting_approval) is open work on both backends: every
 * rule that treats a running run as unfinished treats it the same way.
 */
describe('a run awaiting approval is still open', () => {
  it('is flagged by a cancel, and the task ends cancelled once the site confirms', async () => {
    const { researcher, sites } = await world({ siteCount: 1 });
    const task = await researcher.createTask();
    const site = sites[0]!;
    const run = await site.claimAndStart();
    await site.post(`/api/v1/site/runs/${run.id}/await-approval`).expect(200);

    const res = await researcher.post(`/api/v1/tasks/${task.id}/cancel`).expect(200);
    expect(res.body.status).toBe('running');
    expect(res.body.runs[0]).toMatchObject({ status: 'awaiting_approval', cancelRequested: true });
    expect((await site.get(`/api/v1/site/runs/${run.id}`).expect(200)).body).toEqual({
      id: run.id,
      taskId: task.id,
      status: 'awaiting_approval',
      cancelRequested: true,
    });
    await site.finish(run.id, { state: 'cancelled', reason: 'stopped on request' });
    expect((await researcher.task(task.id)).status).toBe('cancelled');
  });

  it('is ended by the sweep when a flagged cancel is never confirmed', async () => {
    const { researcher, sites } = await world({ siteCount: 1, overrides: { lease: '300ms' } });
    const task = await researcher.createTask();
    const run = await sites[0]!.claimAndStart();
    await sites[0]!.post(`/api/v1/site/runs/${run.id}/await-approval`).expect(200);
    await researcher.post(`/api/v1/tasks/${task.id}/cancel`).expect(200);
    const ended = await eventually(
      () => researcher.run(run.id),
      (r) => r.status === 'cancelled',
      'the unconfirmed cancel to be swept',
    );
    expect(ended.reason).toMatch(/did not confirm/);
    expect((await researcher.task(task.id)).status).toBe('cancelled');
  });

  it('fails when its site is disabled, so the task ends', async () => {
    const w = await world({ siteCount: 1 });
    const task = await w.researcher.createTask();
    const run = await w.sites[0]!.claimAndStart();
    await w.sites[0]!.post(`/api/v1/site/runs/${run.id}/await-approval`).expect(200);
    await w.admin.post(`/api/v1/admin/sites/${w.sites[0]!.name}/disable`).expect(200);
    const after = await w.researcher.task(task.id);
    expect(after.status).toBe('failed');
    expect(after.runs[0]).toMatchObject({ status: 'failed', reason: 'the site was disabled at the registry' });
  });

  it('keeps its task running while another run finishes, and the task ends with the held run', async () => {
    const { researcher, sites } = await world({ siteCount: 2 });
    const task = await researcher.createTask();
    const held = await sites[0]!.claimAndStart();
    const other = await sites[1]!.claimAndStart();
    await sites[0]!.post(`/api/v1/site/runs/${held.id}/await-approval`).expect(200);
    await sites[1]!.finish(other.id, { state: 'completed', exitCode: 0 });
    expect((await researcher.task(task.id)).status).toBe('running');
    await sites[0]!.finish(held.id, { state: 'completed', exitCode: 0 });
    expect((await researcher.task(task.id)).status).toBe('completed');
  });

  it('refuses to delete the task while the run is held', async () => {
    const { researcher, sites } = await world({ siteCount: 1 });
    const task = await researcher.createTask();
    const run = await sites[0]!.claimAndStart();
    await sites[0]!.post(`/api/v1/site/runs/${run.id}/await-approval`).expect(200);
    await researcher.method('DELETE', `/api/v1/tasks/${task.id}`).expect(409);
    expect((await researcher.task(task.id)).runs[0]!.status).toBe('awaiting_approval');
  });
});
