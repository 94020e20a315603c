import { beforeAll, describe, expect, it } from 'vitest';
import {
  Client,
  ensureBuilt,
  expectApiError,
  ResearcherClient,
  runMaster,
  sharedWorld,
  SiteClient,
  world,
  type World,
} from './helpers.js';

/** Every authenticated route, with a placeholder `:run` / `:task` for ids that exist. */
const RESEARCHER_ROUTES: [string, string][] = [
  ['POST', '/api/v1/tasks'],
  ['GET', '/api/v1/tasks'],
  ['GET', '/api/v1/tasks/:task'],
  ['GET', '/api/v1/tasks/:task/wait?timeout=0'],
  ['GET', '/api/v1/tasks/:task/events'],
  ['POST', '/api/v1/tasks/:task/cancel'],
  ['GET', '/api/v1/runs/:run'],
  ['GET', '/api/v1/runs/:run/log'],
  ['GET', '/api/v1/runs/:run/files'],
  ['GET', '/api/v1/runs/:run/files/out.csv'],
  ['GET', '/api/v1/sites'],
  ['GET', '/api/v1/me'],
];
const SITE_ROUTES: [string, string][] = [
  ['GET', '/api/v1/site/runs/next'],
  ['GET', '/api/v1/site/runs'],
  ['GET', '/api/v1/site/runs/:run'],
  ['POST', '/api/v1/site/runs/:run/start'],
  ['POST', '/api/v1/site/runs/:run/progress'],
  ['POST', '/api/v1/site/runs/:run/log'],
  ['POST', '/api/v1/site/runs/:run/finish'],
  ['PUT', '/api/v1/site/runs/:run/files/out.csv'],
  ['GET', '/api/v1/site/me'],
];
const ALL_ROUTES = [...RESEARCHER_ROUTES, ...SITE_ROUTES];

/** A task of alice's at site-a, with a running run that has a log line and a file. */
async function withRun(w: World): Promise<{ taskId: number; runId: number }> {
  const task = await w.researcher.createTask({ sites: ['site-a'] });
  const run = await w.sites[0]!.claimAndStart();
  await w.sites[0]!.log(run.id, 'hello\n');
  await w.sites[0]!.upload(run.id, 'out.csv', Buffer.from('a,b\n1,2\n')).expect(201);
  return { taskId: task.id, runId: run.id };
}

function call(client: Client, method: string, route: string, ids: { taskId: number; runId: number }) {
  const p = route.replace(':task', String(ids.taskId)).replace(':run', String(ids.runId));
  if (method === 'PUT') return client.put(p, Buffer.from('x'));
  if (method === 'POST') return client.method(method, p).send({});
  return client.method(method, p);
}

describe('authentication', () => {
  const shared = sharedWorld({ siteCount: 1 });
  let ids: { taskId: number; runId: number };
  beforeAll(async () => {
    ids = await withRun(shared());
  });

  it.each(ALL_ROUTES)('refuses %s %s without an Authorization header (401)', async (method, route) => {
    const res = await call(new Client(shared().reg.url, null), method, route, ids);
    expectApiError(res, 401, 'unauthorized');
    expect(res.headers['www-authenticate']).toBe('Bearer');
  });

  it.each([
    'Basic dXNlcjpwYXNz',
    'Bearer',
    'Bearer ',
    'bearer pht_user_abcdefghij',
    'Bearer short',
    'Bearer has space inside',
    'Token pht_user_abcdefghij',
  ])('refuses a malformed Authorization header %j (401)', async (header) => {
    const res = await new Client(shared().reg.url, null).get('/api/v1/tasks').set('Authorization', header);
    expectApiError(res, 401, 'unauthorized');
    expect(res.body.message).toMatch(/malformed|missing/);
  });

  it.each(ALL_ROUTES)('refuses %s %s with an unknown key (401)', async (method, route) => {
    const res = await call(new Client(shared().reg.url, 'pht_site_not-a-real-key-0123456789'), method, route, ids);
    expectApiError(res, 401, 'unauthorized');
  });

  it.each(SITE_ROUTES)('refuses %s %s to a researcher or admin (403)', async (method, route) => {
    expectApiError(await call(shared().researcher, method, route, ids), 403, 'forbidden');
    expectApiError(await call(shared().admin, method, route, ids), 403, 'forbidden');
  });

  it.each(RESEARCHER_ROUTES)('refuses %s %s to a site (403)', async (method, route) => {
    expectApiError(await call(shared().sites[0]!, method, route, ids), 403, 'forbidden');
  });

  // POST /tasks has a router of its own in front of the API router (app.ts): its refusals must
  // come in the same order as on every other JSON route.
  it('refuses POST /tasks in the API order: the key first, then the JSON body, then a site (403)', async () => {
    const post = (client: Client, body: string) =>
      client.post('/api/v1/tasks').set('Content-Type', 'application/json').send(body);
    const site = shared().sites[0]!;
    expectApiError(await post(new Client(shared().reg.url, null), '{'), 401, 'unauthorized');
    expectApiError(await post(site, '{'), 400, 'invalid_json');
    expectApiError(await post(site, '['.repeat(100) + ']'.repeat(100)), 400, 'nesting_too_deep');
    expectApiError(await post(site, '{"image":"x"}'), 403, 'forbidden');
    expect((await post(shared().researcher, '{').expect(400)).body.code).toBe('invalid_json');
  });

  it('tells each principal who it is', async () => {
    const w = shared();
    expect((await w.researcher.get('/api/v1/me').expect(200)).body).toEqual({
      name: 'alice',
      kind: 'user',
      role: 'researcher',
    });
    expect((await w.admin.get('/api/v1/me').expect(200)).body).toEqual({ name: 'root', kind: 'user', role: 'admin' });
    expect((await w.sites[0]!.get('/api/v1/site/me').expect(200)).body).toEqual({ name: 'site-a', kind: 'site' });
  });

  it('lists sites with their enabled flag and last contact', async () => {
    const w = await world({ siteCount: 2 });
    await w.sites[0]!.get('/api/v1/site/runs').expect(200);
    const res = await w.researcher.get('/api/v1/sites').expect(200);
    expect(res.body.map((s: { name: string; enabled: boolean }) => [s.name, s.enabled])).toEqual([
      ['site-a', true],
      ['site-b', true],
    ]);
    expect(res.body[0].lastSeen).toEqual(expect.any(String));
    expect(res.body[1].lastSeen).toBeNull();
  });
});

describe('revoked principals (node master revoke)', () => {
  beforeAll(() => ensureBuilt(), 180_000);

  it('refuses every site route to a revoked site (403), and enabling it issues a new key while the old one stays refused', async () => {
    const w = await world({ siteCount: 1 });
    const ids = await withRun(w);
    const revoked = await runMaster(['revoke', 'site', 'site-a', '--json', '--data-dir', w.reg.dataDir]);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(JSON.parse(revoked.stdout)).toEqual({ kind: 'site', name: 'site-a', enabled: false });
    for (const [method, route] of SITE_ROUTES) {
      const res = await call(w.sites[0]!, method, route, ids);
      expectApiError(res, 403, 'forbidden');
      expect(res.body.message).toContain('disabled');
    }
    const enabled = await runMaster(['enable', 'site', 'site-a', '--json', '--data-dir', w.reg.dataDir]);
    expect(enabled.code, enabled.stderr).toBe(0);
    const { apiKey, ...rest } = JSON.parse(enabled.stdout) as { apiKey: string };
    expect(rest).toEqual({ kind: 'site', name: 'site-a', enabled: true });
    expect(apiKey).toMatch(/^pht_site_/);
    expect(apiKey).not.toBe(w.sites[0]!.key);
    // The revoked key never works again (before the fix it was accepted once more).
    expectApiError(await w.sites[0]!.get('/api/v1/site/runs'), 401, 'unauthorized');
    await new SiteClient(w.reg.url, apiKey, 'site-a').get('/api/v1/site/runs').expect(200);
    // Enabling what is enabled changes nothing: the new key keeps working.
    const again = await runMaster(['enable', 'site', 'site-a', '--data-dir', w.reg.dataDir]);
    expect(again.stdout).toContain('already enabled');
    await new SiteClient(w.reg.url, apiKey, 'site-a').get('/api/v1/site/runs').expect(200);
  });

  it('enabling a revoked researcher prints a new token once; the revoked token stays refused', async () => {
    const w = await world({ siteCount: 1 });
    expect((await runMaster(['revoke', 'user', 'alice', '--data-dir', w.reg.dataDir])).code).toBe(0);
    const enabled = await runMaster(['enable', 'user', 'alice', '--data-dir', w.reg.dataDir]);
    expect(enabled.code, enabled.stderr).toBe(0);
    const token = /token \(shown once; the old one stays revoked\): (pht_user_\S+)/.exec(enabled.stdout)?.[1];
    expect(token).toBeDefined();
    expectApiError(await w.researcher.get('/api/v1/tasks'), 401, 'unauthorized');
    await new ResearcherClient(w.reg.url, token!).get('/api/v1/tasks').expect(200);
  });

  it('refuses every researcher route to a revoked researcher (403)', async () => {
    const w = await world({ siteCount: 1 });
    const ids = await withRun(w);
    expect((await runMaster(['revoke', 'user', 'alice', '--data-dir', w.reg.dataDir])).code).toBe(0);
    for (const [method, route] of RESEARCHER_ROUTES) {
      expectApiError(await call(w.researcher, method, route, ids), 403, 'forbidden');
    }
    // Revoking alice does not touch bob.
    await w.other.get('/api/v1/tasks').expect(200);
  });

  it('does not send new tasks to a revoked site, and refuses to target it by name (422)', async () => {
    const w = await world({ siteCount: 2 });
    expect((await runMaster(['revoke', 'site', 'site-b', '--data-dir', w.reg.dataDir])).code).toBe(0);
    const task = await w.researcher.createTask();
    expect(task.runs.map((r) => r.site)).toEqual(['site-a']);
    const res = await w.researcher.post('/api/v1/tasks', { image: 'pht/x:1', sites: ['site-b'] });
    expectApiError(res, 422, 'unknown_site');
    expect(res.body.message).toContain('disabled site(s): site-b');
  });

  it('stops accepting a rotated key at once and accepts the new one', async () => {
    const w = await world({ siteCount: 1 });
    const rotated = await runMaster(['rotate-key', 'site', 'site-a', '--json', '--data-dir', w.reg.dataDir]);
    expect(rotated.code, rotated.stderr).toBe(0);
    const { apiKey } = JSON.parse(rotated.stdout) as { apiKey: string };
    expectApiError(await w.sites[0]!.get('/api/v1/site/runs'), 401, 'unauthorized');
    await new SiteClient(w.reg.url, apiKey, 'site-a').get('/api/v1/site/runs').expect(200);
  });
});

describe('visibility', () => {
  it.each([
    '/api/v1/site/runs/:run',
    '/api/v1/site/runs/:run/start',
    '/api/v1/site/runs/:run/progress',
    '/api/v1/site/runs/:run/log',
    '/api/v1/site/runs/:run/finish',
    '/api/v1/site/runs/:run/files/out.csv',
  ])('answers 404 when a site touches another site’s run via %s', async (route) => {
    const w = await world({ siteCount: 2 });
    const ids = await withRun(w);
    const before = await w.admin.run(ids.runId);
    const bodies: Record<string, unknown> = {
      progress: { current: 1 },
      log: { text: 'x' },
      finish: { state: 'failed' },
    };
    const p = route.replace(':run', String(ids.runId));
    const last = p.split('/').pop()!;
    const site = w.sites[1]!;
    const res = route.endsWith('out.csv')
      ? await site.put(p, Buffer.from('evil'))
      : route.endsWith(':run')
        ? await site.get(p)
        : await site.post(p, bodies[last] ?? {});
    expectApiError(res, 404, 'not_found');
    expect(await w.admin.run(ids.runId)).toEqual(before);
  });

  it.each([
    '/api/v1/tasks/:task',
    '/api/v1/tasks/:task/wait?timeout=0',
    '/api/v1/tasks/:task/events',
    '/api/v1/runs/:run',
    '/api/v1/runs/:run/log',
    '/api/v1/runs/:run/files',
    '/api/v1/runs/:run/files/out.csv',
  ])('answers 404 when a researcher reads another researcher’s %s', async (route) => {
    const w = await world({ siteCount: 1 });
    const ids = await withRun(w);
    expectApiError(await call(w.other, 'GET', route, ids), 404, 'not_found');
  });

  it('answers 404 when a researcher cancels another researcher’s task, and leaves it alone', async () => {
    const w = await world({ siteCount: 1 });
    const task = await w.researcher.createTask();
    expectApiError(await w.other.post(`/api/v1/tasks/${task.id}/cancel`), 404, 'not_found');
    expect((await w.researcher.task(task.id)).status).toBe('queued');
  });

  it('lists only the researcher’s own tasks', async () => {
    const w = await world({ siteCount: 1 });
    const mine = await w.researcher.createTask();
    await w.other.createTask();
    const res = await w.researcher.get('/api/v1/tasks').expect(200);
    expect(res.body.total).toBe(1);
    expect(res.body.tasks.map((t: { id: number }) => t.id)).toEqual([mine.id]);
  });

  it('lets an admin see every task, run, log and file', async () => {
    const w = await world({ siteCount: 1 });
    const ids = await withRun(w);
    await w.other.createTask();
    const list = await w.admin.get('/api/v1/tasks').expect(200);
    expect(list.body.total).toBe(2);
    expect(list.body.tasks.map((t: { owner: string }) => t.owner).sort()).toEqual(['alice', 'bob']);
    expect((await w.admin.task(ids.taskId)).owner).toBe('alice');
    expect((await w.admin.run(ids.runId)).status).toBe('running');
    expect((await w.admin.get(`/api/v1/runs/${ids.runId}/log`).expect(200)).text).toBe('hello\n');
    expect((await w.admin.get(`/api/v1/runs/${ids.runId}/files`).expect(200)).body).toHaveLength(1);
    const file = await w.admin.get(`/api/v1/runs/${ids.runId}/files/out.csv`).buffer(true).expect(200);
    expect(Buffer.from(file.body).toString()).toBe('a,b\n1,2\n');
    await w.admin.get(`/api/v1/tasks/${ids.taskId}/wait?timeout=0`).expect(200);
  });

  it('lets an admin cancel another researcher’s task', async () => {
    const w = await world({ siteCount: 1 });
    const task = await w.researcher.createTask();
    const res = await w.admin.post(`/api/v1/tasks/${task.id}/cancel`).expect(200);
    expect(res.body.status).toBe('cancelled');
  });

  it('never shows the owner id of a task or run', async () => {
    const w = await world({ siteCount: 1 });
    const ids = await withRun(w);
    const task = await w.researcher.task(ids.taskId);
    expect(task).not.toHaveProperty('ownerId');
    expect(await w.researcher.run(ids.runId)).not.toHaveProperty('ownerId');
  });
});
