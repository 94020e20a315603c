import { describe, expect, it } from 'vitest';
import type { SiteActivityList, TaskSummaryList } from '../../shared/types.js';
import { expectApiError, world } from './helpers.js';

describe('task summaries (the dashboard task list)', () => {
  it('filters by site and by text in the name or image, newest first, with the total', async () => {
    const w = await world({ siteCount: 3 });
    const a = await w.researcher.createTask({ name: 'cohort age stats', sites: ['site-a'] });
    const b = await w.researcher.createTask({ name: 'regression', sites: ['site-a', 'site-b'] });
    const c = await w.researcher.createTask({ image: '127.0.0.1:5050/pht/other-model:2', sites: ['site-c'] });
    await w.other.createTask({ name: 'regression of bob', sites: ['site-a'] });

    const bySite = (await w.researcher.get('/api/v1/task-summaries?site=site-a').expect(200)).body;
    expect(bySite.tasks.map((t: { id: number }) => t.id)).toEqual([b.id, a.id]);
    expect(bySite.total).toBe(2);
    const byText = (await w.researcher.get('/api/v1/task-summaries?q=REGRESS').expect(200)).body;
    expect(byText.tasks.map((t: { id: number }) => t.id)).toEqual([b.id]);
    const byImage = (await w.researcher.get('/api/v1/task-summaries?q=other-model').expect(200)).body;
    expect(byImage.tasks.map((t: { id: number }) => t.id)).toEqual([c.id]);
    // An admin sees bob's task too; the filters combine.
    const admin = (await w.admin.get('/api/v1/task-summaries?q=regression&site=site-a&status=queued').expect(200)).body;
    expect(admin.total).toBe(2);
    // LIKE wildcards in the text are literal characters.
    expect((await w.researcher.get('/api/v1/task-summaries?q=%25').expect(200)).body.total).toBe(0);
    expect((await w.researcher.get('/api/v1/task-summaries?q=_').expect(200)).body.total).toBe(0);
    expect((await w.researcher.get('/api/v1/task-summaries?site=no-such-site').expect(200)).body.total).toBe(0);
  });

  it('summarises each task by its run counts instead of its runs', async () => {
    const w = await world({ siteCount: 3 });
    const task = await w.researcher.createTask({ sites: ['site-a', 'site-b', 'site-c'] });
    const run = await w.sites[0]!.claimAndStart();
    await w.sites[0]!.finish(run.id, { state: 'completed', exitCode: 0 });
    const claimed = await w.sites[1]!.claim();
    await w.sites[1]!.finish(claimed.id, { state: 'rejected', reason: 'not allowed' });
    const body = (await w.researcher.get('/api/v1/task-summaries').expect(200)).body as TaskSummaryList;
    expect(body).toMatchObject({ total: 1, limit: 50, offset: 0 });
    expect(body.tasks).toEqual([
      {
        id: task.id,
        name: null,
        image: task.image,
        owner: 'alice',
        status: 'running',
        createdAt: task.createdAt,
        runCounts: { completed: 1, rejected: 1, queued: 1 },
        runTotal: 3,
      },
    ]);
  });

  it.each([
    ['status=done', 'an unknown status'],
    ['limit=501', 'a page over 500'],
    ['site=Site%20A', 'an invalid site name'],
    ['q=', 'an empty text'],
    [`q=${'x'.repeat(201)}`, 'a text over 200 characters'],
    ['q=a&q=b', 'a repeated parameter'],
  ])('refuses %s (%s)', async (qs) => {
    const w = await world({ siteCount: 1 });
    expectApiError(await w.researcher.get(`/api/v1/task-summaries?${qs}`), 400, 'validation_failed');
  });
});

describe('site activity (the dashboard sites screen)', () => {
  it('counts runs per site: all of them for an admin, their own for a researcher', async () => {
    const w = await world({ siteCount: 2 });
    await w.researcher.createTask({ sites: ['site-a', 'site-b'] });
    await w.other.createTask({ sites: ['site-a'] });
    await w.researcher.createTask({ sites: ['site-a'] });
    // site-a: alice's first run completes, bob's run fails, alice's second run is running.
    const r1 = await w.sites[0]!.claimAndStart();
    await w.sites[0]!.finish(r1.id, { state: 'completed', exitCode: 0 });
    const r2 = await w.sites[0]!.claimAndStart();
    await w.sites[0]!.finish(r2.id, { state: 'failed', exitCode: 1 });
    await w.sites[0]!.claimAndStart();

    const all = (await w.admin.get('/api/v1/sites/activity').expect(200)).body as SiteActivityList;
    expect(all).toEqual({
      total: 2,
      online: 1,
      limit: 50,
      offset: 0,
      sites: [
        {
          name: 'site-a',
          organization: null,
          enabled: true,
          lastSeen: expect.any(String),
          online: true,
          runs: { completed: 1, failed: 1, current: 1, queued: 0 },
        },
        {
          name: 'site-b',
          organization: null,
          enabled: true,
          lastSeen: null,
          online: false,
          runs: { completed: 0, failed: 0, current: 0, queued: 1 },
        },
      ],
    });
    const own = (await w.researcher.get('/api/v1/sites/activity').expect(200)).body as SiteActivityList;
    expect(own.sites.map((s) => [s.name, s.runs])).toEqual([
      ['site-a', { completed: 1, failed: 0, current: 1, queued: 0 }],
      ['site-b', { completed: 0, failed: 0, current: 0, queued: 1 }],
    ]);
  });

  it("names each site's organization, and none for a site outside every organization", async () => {
    const w = await world({ siteCount: 2 });
    await w.reg.store.createOrganization('umc-north');
    await w.reg.store.setOrganization('site', 'site-b', 'umc-north');
    await w.reg.store.setOrganization('user', 'alice', 'umc-north');
    const { sites } = (await w.researcher.get('/api/v1/sites/activity').expect(200)).body as SiteActivityList;
    expect(sites.map((s) => [s.name, s.organization])).toEqual([
      ['site-a', null],
      ['site-b', 'umc-north'],
    ]);
  });

  it('answers one page of sites by name, with the total and online count of every matching site', async () => {
    const w = await world({ siteCount: 5 });
    for (const site of [w.sites[1]!, w.sites[3]!]) await site.get('/api/v1/site/runs/next').expect(204);
    const page = async (qs: string) =>
      (await w.admin.get(`/api/v1/sites/activity?${qs}`).expect(200)).body as SiteActivityList;
    const first = await page('limit=2');
    expect(first.sites.map((s) => s.name)).toEqual(['site-a', 'site-b']);
    expect(first).toMatchObject({ total: 5, online: 2, limit: 2, offset: 0 });
    expect((await page('limit=2&offset=2')).sites.map((s) => s.name)).toEqual(['site-c', 'site-d']);
    expect((await page('limit=2&offset=4')).sites.map((s) => s.name)).toEqual(['site-e']);
    expect(await page('limit=2&offset=10')).toMatchObject({ sites: [], total: 5, online: 2 });
  });

  it('filters sites by text in their name or their organization, ignoring case', async () => {
    const w = await world({ siteCount: 4 });
    await w.reg.store.createOrganization('UMC-North');
    await w.reg.store.setOrganization('site', 'site-a', 'UMC-North');
    await w.reg.store.setOrganization('site', 'site-c', 'UMC-North');
    await w.sites[0]!.get('/api/v1/site/runs/next').expect(204);
    const names = async (q: string) => {
      const body = (await w.researcher.get(`/api/v1/sites/activity?q=${encodeURIComponent(q)}`).expect(200))
        .body as SiteActivityList;
      return { names: body.sites.map((s) => s.name), total: body.total, online: body.online };
    };
    expect(await names('umc-north')).toEqual({ names: ['site-a', 'site-c'], total: 2, online: 1 });
    expect(await names('-d')).toEqual({ names: ['site-d'], total: 1, online: 0 });
    expect(await names('nowhere')).toEqual({ names: [], total: 0, online: 0 });
  });

  it('is for researchers and admins only, and refuses unknown or out-of-range parameters', async () => {
    const w = await world({ siteCount: 1 });
    expectApiError(await w.sites[0]!.get('/api/v1/sites/activity'), 403, 'forbidden');
    for (const qs of ['all=1', 'limit=0', 'limit=501', 'offset=-1', 'q=', `q=${'x'.repeat(201)}`])
      expectApiError(await w.researcher.get(`/api/v1/sites/activity?${qs}`), 400, 'validation_failed');
  });

  it('shows a disabled site as offline', async () => {
    const w = await world({ siteCount: 1 });
    await w.sites[0]!.get('/api/v1/site/runs/next').expect(204);
    await w.admin.post('/api/v1/admin/sites/site-a/disable').expect(200);
    const [site] = ((await w.admin.get('/api/v1/sites/activity').expect(200)).body as SiteActivityList).sites;
    expect(site).toMatchObject({ name: 'site-a', enabled: false, online: false });
  });
});
