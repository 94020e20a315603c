import http from 'node:http';
import { beforeAll, describe, expect, it } from 'vitest';
import { expectApiError, IMAGE, sharedWorld } from './helpers.js';

/** Sends a request exactly as given: path unnormalised, body and headers untouched. */
function raw(
  url: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string | Buffer,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string; body: any }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ hostname, port, path, method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        let parsed: unknown = null;
        try {
          parsed = JSON.parse(text);
        } catch {
          // not JSON: the assertions below say so
        }
        resolve({ status: res.statusCode!, headers: res.headers, text, body: parsed });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const shared = sharedWorld({ siteCount: 1, overrides: { limits: { jsonBodyBytes: 4096, configBytes: 512 } } });
/** A queued task of alice's whose run site-a has started (nothing below may change it). */
let taskId: number;
let runId: number;
beforeAll(async () => {
  const w = shared();
  taskId = (await w.researcher.createTask()).id;
  runId = (await w.sites[0]!.claimAndStart()).id;
});

const ID_ROUTES: { who: 'researcher' | 'site'; method: string; path: (id: string) => string; body?: unknown }[] = [
  { who: 'researcher', method: 'GET', path: (id) => `/api/v1/tasks/${id}` },
  { who: 'researcher', method: 'GET', path: (id) => `/api/v1/tasks/${id}/wait?timeout=0` },
  { who: 'researcher', method: 'GET', path: (id) => `/api/v1/tasks/${id}/events` },
  { who: 'researcher', method: 'POST', path: (id) => `/api/v1/tasks/${id}/cancel` },
  { who: 'researcher', method: 'GET', path: (id) => `/api/v1/runs/${id}` },
  { who: 'researcher', method: 'GET', path: (id) => `/api/v1/runs/${id}/log` },
  { who: 'researcher', method: 'GET', path: (id) => `/api/v1/runs/${id}/files` },
  { who: 'researcher', method: 'GET', path: (id) => `/api/v1/runs/${id}/files/out.csv` },
  { who: 'site', method: 'GET', path: (id) => `/api/v1/site/runs/${id}` },
  { who: 'site', method: 'POST', path: (id) => `/api/v1/site/runs/${id}/start` },
  { who: 'site', method: 'POST', path: (id) => `/api/v1/site/runs/${id}/progress`, body: { current: 1 } },
  { who: 'site', method: 'POST', path: (id) => `/api/v1/site/runs/${id}/log`, body: { text: 'x' } },
  { who: 'site', method: 'POST', path: (id) => `/api/v1/site/runs/${id}/finish`, body: { state: 'failed' } },
  { who: 'site', method: 'PUT', path: (id) => `/api/v1/site/runs/${id}/files/out.csv`, body: 'bytes' },
];

function send(route: (typeof ID_ROUTES)[number], id: string) {
  const w = shared();
  const client = route.who === 'site' ? w.sites[0]! : w.researcher;
  if (route.method === 'PUT') return client.put(route.path(id), Buffer.from(String(route.body)));
  if (route.method === 'POST') return client.post(route.path(id), route.body ?? {});
  return client.get(route.path(id));
}

describe('ids in the URL', () => {
  const routes = ID_ROUTES.map((r) => [`${r.method} ${r.path(':id')}`, r] as const);

  it.each(routes)('%s answers 400 for ids that are not positive integers', async (_name, route) => {
    for (const id of ['abc', '0', '-1', '1.5', '0x10', '1e3', '99999999999999999999', '%20']) {
      const res = await send(route, id);
      expectApiError(res, 400, 'bad_request');
    }
  });

  it.each(routes)('%s answers 404 for an id that does not exist', async (_name, route) => {
    expectApiError(await send(route, '999999999'), 404, 'not_found');
  });
});

describe('request bodies', () => {
  const POST_ROUTES: [string, 'researcher' | 'site', () => string][] = [
    ['POST /tasks', 'researcher', () => '/api/v1/tasks'],
    ['POST /tasks/:id/cancel', 'researcher', () => `/api/v1/tasks/${taskId}/cancel`],
    ['POST /site/runs/:id/start', 'site', () => `/api/v1/site/runs/${runId}/start`],
    ['POST /site/runs/:id/progress', 'site', () => `/api/v1/site/runs/${runId}/progress`],
    ['POST /site/runs/:id/log', 'site', () => `/api/v1/site/runs/${runId}/log`],
    ['POST /site/runs/:id/finish', 'site', () => `/api/v1/site/runs/${runId}/finish`],
  ];
  const keyOf = (who: 'researcher' | 'site') => (who === 'site' ? shared().sites[0]!.key! : shared().researcher.key!);

  it.each(POST_ROUTES)('%s answers 400 for malformed JSON', async (_name, who, path) => {
    for (const body of ['{', '{"state": }', "{'a': 1}", '[1,]', '\u0000']) {
      const res = await raw(
        shared().reg.url,
        'POST',
        path(),
        { authorization: `Bearer ${keyOf(who)}`, 'content-type': 'application/json' },
        body,
      );
      expect(res.status, res.text).toBe(400);
      expect(res.body.code).toBe('invalid_json');
      expect(res.text).not.toMatch(/\n\s+at /);
    }
  });

  it.each(POST_ROUTES)('%s answers 415 for a body that is not declared as JSON', async (_name, who, path) => {
    for (const type of [
      'text/plain',
      'application/x-www-form-urlencoded',
      'application/octet-stream',
      'multipart/form-data; boundary=x',
    ]) {
      const res = await raw(
        shared().reg.url,
        'POST',
        path(),
        { authorization: `Bearer ${keyOf(who)}`, 'content-type': type },
        '{"state":"failed"}',
      );
      expect(res.status, `${type}: ${res.text}`).toBe(415);
      expect(res.body.code).toBe('unsupported_media_type');
    }
    const noType = await raw(shared().reg.url, 'POST', path(), { authorization: `Bearer ${keyOf(who)}` }, '{}');
    expect(noType.status).toBe(415);
  });

  it.each(POST_ROUTES)('%s answers 415 for a JSON body in an unsupported charset', async (_name, who, path) => {
    const res = await raw(
      shared().reg.url,
      'POST',
      path(),
      { authorization: `Bearer ${keyOf(who)}`, 'content-type': 'application/json; charset=latin1' },
      '{}',
    );
    expect(res.status).toBe(415);
    expect(res.body.code).toBe('unsupported_media_type');
  });

  it.each(POST_ROUTES)('%s answers 413 for a body above limits.jsonBodyBytes', async (_name, who, path) => {
    const body = JSON.stringify({ text: 'x'.repeat(5000) });
    const res = await raw(
      shared().reg.url,
      'POST',
      path(),
      { authorization: `Bearer ${keyOf(who)}`, 'content-type': 'application/json' },
      body,
    );
    expect(res.status).toBe(413);
    expect(res.body.code).toBe('payload_too_large');
  });

  it.each(POST_ROUTES)('%s answers 400 for a JSON value that is not an object', async (_name, who, path) => {
    for (const body of ['null', '[]', '"text"', '42', 'true']) {
      const res = await raw(
        shared().reg.url,
        'POST',
        path(),
        { authorization: `Bearer ${keyOf(who)}`, 'content-type': 'application/json' },
        body,
      );
      expect(res.status, `${body}: ${res.text}`).toBe(400);
      expect(res.body.code).toBe('validation_failed');
    }
  });

  it.each(POST_ROUTES)('%s answers 400 for an unknown field', async (_name, who, path) => {
    const res = await raw(
      shared().reg.url,
      'POST',
      path(),
      { authorization: `Bearer ${keyOf(who)}`, 'content-type': 'application/json' },
      JSON.stringify({ image: IMAGE, current: 1, text: 'x', state: 'failed', surprise: 1 }),
    );
    expect(res.status, res.text).toBe(400);
    expect(res.body.code).toBe('validation_failed');
    expect(res.body.message).toContain('unknown field "');
  });

  it.each([
    ['a missing body', undefined],
    ['a missing image', { config: {} }],
    ['an image that is not a string', { image: 42 }],
    ['an image with upper-case letters in the path', { image: '127.0.0.1:5050/PHT/x:1' }],
    ['an image with a space', { image: 'pht/x 1' }],
    ['an empty image', { image: '' }],
    ['sites that is not an array', { image: IMAGE, sites: 'site-a' }],
    ['an empty site list', { image: IMAGE, sites: [] }],
    ['a site named twice', { image: IMAGE, sites: ['site-a', 'site-a'] }],
    ['a site name with a slash', { image: IMAGE, sites: ['../site-a'] }],
    ['a name that is not a string', { image: IMAGE, name: ['x'] }],
    ['an empty name', { image: IMAGE, name: '' }],
    ['a name that is too long', { image: IMAGE, name: 'n'.repeat(201) }],
  ])('POST /tasks answers 400 for %s', async (_what, body) => {
    const res = await shared().researcher.post('/api/v1/tasks', body);
    expectApiError(res, 400);
    expect(['validation_failed', 'bad_request']).toContain(res.body.code);
  });

  it('POST /tasks answers 413 for a config above limits.configBytes', async () => {
    const res = await shared().researcher.post('/api/v1/tasks', { image: IMAGE, config: { blob: 'x'.repeat(600) } });
    expectApiError(res, 413, 'payload_too_large');
  });

  it('POST /tasks answers 422 naming the site for an unknown site', async () => {
    const res = await shared().researcher.post('/api/v1/tasks', { image: IMAGE, sites: ['site-a', 'nowhere'] });
    expectApiError(res, 422, 'unknown_site');
    expect(res.body.message).toContain('nowhere');
  });

  it.each([
    ['progress', { current: -1 }],
    ['progress', { current: 'half' }],
    ['progress', { current: 1, total: -5 }],
    ['progress', { current: 1, message: 'm'.repeat(1001) }],
    ['progress', {}],
    ['log', { text: 42 }],
    ['log', {}],
    ['finish', { state: 'exploded' }],
    ['finish', { state: 'running' }],
    ['finish', { state: 'completed', exitCode: 1.5 }],
    ['finish', { state: 'completed', exitCode: 2 ** 40 }],
    ['finish', { state: 'completed', durationMs: -1 }],
    ['finish', { state: 'completed', digest: 'sha256:xyz' }],
    ['finish', { state: 'completed', reason: 7 }],
    ['finish', {}],
    ['start', { now: true }],
  ])('POST /site/runs/:id/%s answers 400 for %j and leaves the run alone', async (action, body) => {
    const w = shared();
    const before = await w.admin.run(runId);
    expectApiError(await w.sites[0]!.post(`/api/v1/site/runs/${runId}/${action}`, body), 400, 'validation_failed');
    expect(await w.admin.run(runId)).toEqual(before);
  });
});

describe('query strings', () => {
  it.each([
    '/api/v1/tasks?status=done',
    '/api/v1/tasks?limit=abc',
    '/api/v1/tasks?limit=-1',
    '/api/v1/tasks?offset=1.5',
    '/api/v1/tasks?colour=red',
    '/api/v1/tasks?status=queued&status=running',
    '/api/v1/tasks/TASK?x=1',
    '/api/v1/tasks/TASK/wait?timeout=abc',
    '/api/v1/tasks/TASK/wait?timeout=-1',
    '/api/v1/tasks/TASK/wait?timeout=1e3',
    '/api/v1/tasks/TASK/wait?timeout=0&timeout=1',
  ])('GET %s answers 400', async (path) => {
    expectApiError(await shared().researcher.get(path.replace('TASK', String(taskId))), 400, 'validation_failed');
  });

  it.each(['?wait=abc', '?wait=-1', '?wait=1&wait=2', '?wait=Infinity', '?sleep=1'])(
    'GET /site/runs/next%s answers 400',
    async (q) => {
      expectApiError(await shared().sites[0]!.get(`/api/v1/site/runs/next${q}`), 400, 'validation_failed');
    },
  );

  it('refuses a page size outside the documented bounds and accepts the bounds themselves', async () => {
    for (const q of ['?limit=501&offset=0', '?limit=0', '?limit=1e2', '?timeout=60.5']) {
      const path = q.includes('timeout') ? `/api/v1/tasks/${taskId}/wait${q}` : `/api/v1/tasks${q}`;
      expectApiError(await shared().researcher.get(path), 400, 'validation_failed');
    }
    expect((await shared().researcher.get('/api/v1/tasks?limit=500').expect(200)).body.limit).toBe(500);
    expect((await shared().researcher.get('/api/v1/tasks?limit=1').expect(200)).body.limit).toBe(1);
  });
});

describe('paths', () => {
  it.each([
    ['GET', '/api/v1/nothing-here'],
    ['PATCH', '/api/v1/tasks/TASK'],
    ['PATCH', '/api/v1/tasks'],
    ['GET', '/api/v1/runs'],
    ['GET', '/api/v2/tasks'],
    ['GET', '/nothing-here'],
  ])('%s %s answers 404 with a JSON error', async (method, path) => {
    expectApiError(await shared().researcher.method(method, path.replace('TASK', String(taskId))), 404, 'not_found');
  });

  it.each([
    ['GET', '/api/v1/site/nothing-here'],
    ['GET', '/api/v1/site/runs/RUN/nothing'],
    ['POST', '/api/v1/site/runs/RUN/explode'],
    ['DELETE', '/api/v1/site/runs/RUN'],
  ])('%s %s answers a site 404, not a researcher-only 403', async (method, path) => {
    const res = await shared().sites[0]!.method(method, path.replace('RUN', String(runId)));
    expectApiError(res, 404, 'not_found');
  });

  it('answers 400 for a malformed percent-encoding in a path parameter', async () => {
    const res = await raw(shared().reg.url, 'GET', '/api/v1/tasks/%E0%A4%A', {
      authorization: `Bearer ${shared().researcher.key}`,
    });
    expect(res.status, res.text).toBe(400);
    expect(res.body.code).toBe('bad_request');
  });
});

describe('unauthenticated endpoints', () => {
  it('answers /healthz without a key', async () => {
    const w = shared();
    const res = await raw(w.reg.url, 'GET', '/healthz', {});
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: 'ok', waiting: { sites: 0, tasks: 0 } });
  });

  it('serves the OpenAPI document without a key', async () => {
    const res = await raw(shared().reg.url, 'GET', '/api/v1/openapi.json', {});
    expect(res.status).toBe(200);
    expect(res.body.openapi).toBe('3.1.0');
  });

  it('left the task and run of these tests as they were', async () => {
    const w = shared();
    expect((await w.admin.run(runId)).status).toBe('running');
    expect((await w.admin.task(taskId)).status).toBe('running');
    expect((await w.admin.get('/api/v1/tasks').expect(200)).body.total).toBe(1);
  });
});
