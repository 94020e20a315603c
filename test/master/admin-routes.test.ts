import { describe, expect, it, vi } from 'vitest';
import { Client, expectApiError, ResearcherClient, sharedWorld, SiteClient, world } from './helpers.js';

const ADMIN_ROUTES: [string, string, unknown?][] = [
  ['GET', '/api/v1/admin/users'],
  ['POST', '/api/v1/admin/users', { name: 'mallory2', role: 'admin' }],
  ['POST', '/api/v1/admin/sites', { name: 'evil-site' }],
  ['POST', '/api/v1/admin/sites/site-a/disable', {}],
  ['POST', '/api/v1/admin/sites/site-a/enable', {}],
];

function send(client: Client, method: string, path: string, body?: unknown) {
  return method === 'POST' ? client.post(path, body ?? {}) : client.get(path);
}

describe('admin routes: who may call them', () => {
  const shared = sharedWorld({ siteCount: 1 });

  it.each(ADMIN_ROUTES)('refuses %s %s to a researcher, a site and an anonymous caller', async (method, path, body) => {
    const w = shared();
    expectApiError(await send(w.researcher, method, path, body), 403, 'forbidden');
    expectApiError(await send(w.sites[0]!, method, path, body), 403, 'forbidden');
    expectApiError(await send(new Client(w.reg.url, null), method, path, body), 401, 'unauthorized');
    // Nothing was created or changed by the refused calls.
    const users = (await w.admin.get('/api/v1/admin/users').expect(200)).body as { name: string }[];
    expect(users.map((u) => u.name).sort()).toEqual(['alice', 'bob', 'root']);
    const sites = (await w.admin.get('/api/v1/sites').expect(200)).body as { name: string; enabled: boolean }[];
    expect(sites).toEqual([expect.objectContaining({ name: 'site-a', enabled: true })]);
  });

  it('refuses a disabled admin', async () => {
    const w = shared();
    const key = await w.reg.createUser('old-admin', 'admin');
    await w.reg.store.setPrincipalEnabled('user', 'old-admin', false);
    expectApiError(await new ResearcherClient(w.reg.url, key).get('/api/v1/admin/users'), 403, 'forbidden');
  });
});

describe('admin routes: what they do', () => {
  it('creates a site whose key, shown once, works at once and is not stored in clear', async () => {
    const w = await world({ siteCount: 0 });
    const res = await w.admin.post('/api/v1/admin/sites', { name: 'hospital-x' }).expect(201);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body).toEqual({ name: 'hospital-x', apiKey: expect.stringMatching(/^pht_site_/) });
    const site = new SiteClient(w.reg.url, res.body.apiKey as string, 'hospital-x');
    await site.get('/api/v1/site/runs/next').expect(204);
    // The listing never shows a key.
    const again = await w.admin.get('/api/v1/sites').expect(200);
    expect(JSON.stringify(again.body)).not.toContain(res.body.apiKey as string);
    expectApiError(await w.admin.post('/api/v1/admin/sites', { name: 'hospital-x' }), 409, 'conflict');
  });

  it('creates a researcher and an admin whose tokens work with their role', async () => {
    const w = await world({ siteCount: 1 });
    const r = await w.admin.post('/api/v1/admin/users', { name: 'carol', role: 'researcher' }).expect(201);
    expect(r.body).toEqual({ name: 'carol', role: 'researcher', token: expect.stringMatching(/^pht_user_/) });
    const carol = new ResearcherClient(w.reg.url, r.body.token as string);
    expect((await carol.get('/api/v1/me').expect(200)).body).toEqual({
      name: 'carol',
      kind: 'user',
      role: 'researcher',
    });
    expectApiError(await carol.get('/api/v1/admin/users'), 403, 'forbidden');
    const a = await w.admin.post('/api/v1/admin/users', { name: 'dana', role: 'admin' }).expect(201);
    await new ResearcherClient(w.reg.url, a.body.token as string).get('/api/v1/admin/users').expect(200);
    const users = (await w.admin.get('/api/v1/admin/users').expect(200)).body as { name: string; role: string }[];
    expect(users.find((u) => u.name === 'dana')).toMatchObject({ role: 'admin', enabled: true });
    expect(JSON.stringify(users)).not.toMatch(/pht_user_|key_hash|keyHash/);
  });

  it('disables a site: its key stops working and its open runs fail so their tasks end', async () => {
    const w = await world({ siteCount: 2 });
    const task = await w.researcher.createTask({ sites: ['site-a', 'site-b'] });
    const res = await w.admin.post('/api/v1/admin/sites/site-a/disable').expect(200);
    expect(res.body).toEqual({ name: 'site-a', enabled: false });
    expectApiError(await w.sites[0]!.get('/api/v1/site/runs/next'), 403, 'forbidden');
    const after = await w.researcher.task(task.id);
    expect(after.runs.find((r) => r.site === 'site-a')).toMatchObject({
      status: 'failed',
      reason: 'the site was disabled at the registry',
    });
    // New tasks cannot target it; enabling brings it back.
    expectApiError(await w.researcher.post('/api/v1/tasks', { image: 'a/b:1', sites: ['site-a'] }), 422);
    // Enabling it again issues a new key, shown once; the revoked key stays revoked.
    const enabled = await w.admin.post('/api/v1/admin/sites/site-a/enable').expect(200);
    expect(enabled.headers['cache-control']).toBe('no-store');
    expect(enabled.body).toEqual({ name: 'site-a', enabled: true, apiKey: expect.stringMatching(/^pht_site_/) });
    expectApiError(await w.sites[0]!.get('/api/v1/site/runs/next'), 401, 'unauthorized');
    await new SiteClient(w.reg.url, enabled.body.apiKey as string, 'site-a').get('/api/v1/site/runs/next').expect(204);
    // Enabling an enabled site changes nothing and shows no key.
    const again = await w.admin.post('/api/v1/admin/sites/site-a/enable').expect(200);
    expect(again.body).toEqual({ name: 'site-a', enabled: true });
  });

  it("wakes the watchers of the tasks whose runs failed when a site is disabled, and the site's long poll", async () => {
    const w = await world({ siteCount: 2 });
    const task = await w.researcher.createTask({ sites: ['site-a'] });
    const other = await w.researcher.createTask({ sites: ['site-b'] });
    const notifyTask = vi.spyOn(w.reg.events, 'notifyTask');
    const notifySite = vi.spyOn(w.reg.events, 'notifySite');
    await w.admin.post('/api/v1/admin/sites/site-a/disable').expect(200);
    expect(notifyTask.mock.calls).toEqual([[task.id]]);
    expect(notifySite.mock.calls).toEqual([['site-a']]);
    expect((await w.researcher.task(other.id)).status).toBe('queued');
  });
});

describe('admin routes: bad input', () => {
  const shared = sharedWorld({ siteCount: 1 });

  it.each([
    ['a missing body', '/api/v1/admin/sites', undefined, 400],
    ['an invalid site name', '/api/v1/admin/sites', { name: '../etc' }, 400],
    ['an upper-case site name', '/api/v1/admin/sites', { name: 'Hospital' }, 400],
    ['a site name that is not a string', '/api/v1/admin/sites', { name: ['a'] }, 400],
    ['an unknown field', '/api/v1/admin/sites', { name: 'ok-site', organization: 'x' }, 400],
    ['a user without a role', '/api/v1/admin/users', { name: 'eve' }, 400],
    ['a user with an unknown role', '/api/v1/admin/users', { name: 'eve', role: 'site' }, 400],
    ['a user name with a slash', '/api/v1/admin/users', { name: 'eve/../root', role: 'researcher' }, 400],
    ['a user name that exists', '/api/v1/admin/users', { name: 'alice', role: 'admin' }, 409],
    ['an invalid site in the path', '/api/v1/admin/sites/..%2F..%2Fx/disable', {}, 400],
    ['an unknown site', '/api/v1/admin/sites/no-such-site/disable', {}, 404],
    ['a body on disable', '/api/v1/admin/sites/site-a/disable', { force: true }, 400],
  ])('answers %s with a precise error and changes nothing', async (_what, path, body, status) => {
    const w = shared();
    const res = body === undefined ? await w.admin.post(path) : await w.admin.post(path, body);
    expectApiError(res, status);
    const users = (await w.admin.get('/api/v1/admin/users').expect(200)).body as { name: string; role: string }[];
    expect(users.map((u) => `${u.name}:${u.role}`).sort()).toEqual([
      'alice:researcher',
      'bob:researcher',
      'root:admin',
    ]);
    const sites = (await w.admin.get('/api/v1/sites').expect(200)).body as { name: string; enabled: boolean }[];
    expect(sites.map((s) => `${s.name}:${s.enabled}`)).toEqual(['site-a:true']);
  });

  it('refuses a non-JSON body', async () => {
    const w = shared();
    const res = await w.admin.post('/api/v1/admin/sites').set('Content-Type', 'text/plain').send('name=hospital');
    expectApiError(res, 415);
  });
});
