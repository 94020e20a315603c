import http from 'node:http';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Task } from '../../shared/types.js';
import { IMAGE, world, type World } from './helpers.js';

interface Sent {
  status: number;
  contentType: string | undefined;
  text: string;
}

/**
 * One request exactly as generated (path unnormalised, any method, any headers). An event stream
 * is cut off after its headers; the response body of anything else is read to the end.
 */
function send(
  url: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body: Buffer | null,
): Promise<Sent> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    // Framed explicitly: Node sends a GET's body unframed, which the server's parser refuses.
    const framing = body ? { 'content-length': String(body.length) } : {};
    const req = http.request(
      { hostname, port, path, method, headers: { connection: 'close', ...framing, ...headers }, agent: false },
      (res) => {
        const contentType = res.headers['content-type'];
        if (contentType === 'text/event-stream' || method === 'HEAD') {
          res.destroy();
          req.destroy();
          resolve({ status: res.statusCode!, contentType, text: '' });
          return;
        }
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode!, contentType, text }));
        res.on('error', reject);
      },
    );
    req.setTimeout(20_000, () => req.destroy(new Error(`no answer to ${method} ${path}`)));
    // The server may answer (413, 401) and close before it has read a large body.
    req.on('error', (e: NodeJS.ErrnoException) =>
      e.code === 'EPIPE' || e.code === 'ECONNRESET' ? undefined : reject(e),
    );
    req.end(body ?? undefined);
  });
}

/** Every route: its method, its path with {id}/{name} holes, and who may call it. */
const ROUTES: [string, string, 'site' | 'user' | 'anyone'][] = [
  ['POST', '/api/v1/tasks', 'user'],
  ['GET', '/api/v1/tasks', 'user'],
  ['GET', '/api/v1/tasks/{id}', 'user'],
  ['GET', '/api/v1/tasks/{id}/wait', 'user'],
  ['GET', '/api/v1/tasks/{id}/events', 'user'],
  ['POST', '/api/v1/tasks/{id}/cancel', 'user'],
  ['DELETE', '/api/v1/tasks/{id}', 'user'],
  ['GET', '/api/v1/runs/{id}', 'user'],
  ['GET', '/api/v1/runs/{id}/log', 'user'],
  ['GET', '/api/v1/runs/{id}/files', 'user'],
  ['GET', '/api/v1/runs/{id}/files/{name}', 'user'],
  ['GET', '/api/v1/sites', 'user'],
  ['GET', '/api/v1/me', 'user'],
  ['GET', '/api/v1/site/me', 'site'],
  ['GET', '/api/v1/site/runs', 'site'],
  ['GET', '/api/v1/site/runs/next', 'site'],
  ['GET', '/api/v1/site/runs/{id}', 'site'],
  ['POST', '/api/v1/site/runs/{id}/start', 'site'],
  ['POST', '/api/v1/site/runs/{id}/progress', 'site'],
  ['POST', '/api/v1/site/runs/{id}/log', 'site'],
  ['POST', '/api/v1/site/runs/{id}/finish', 'site'],
  ['PUT', '/api/v1/site/runs/{id}/files/{name}', 'site'],
  ['GET', '/api/v1/openapi.json', 'anyone'],
  ['GET', '/healthz', 'anyone'],
];

interface FuzzRequest {
  method: string;
  path: string;
  query: string;
  auth: string | null;
  contentType: string | null;
  contentEncoding: string | null;
  body: Buffer | null;
}

/**
 * Requests that mostly fit a route (its method, a key of the right kind, a body of roughly the
 * right shape, real ids) so they get past the outer checks, mixed with junk of every kind.
 */
function requestArbitrary(ids: number[], keys: { site: string[]; user: string[] }): fc.Arbitrary<FuzzRequest> {
  const allKeys = [...keys.site, ...keys.user];
  const segment = fc.stringMatching(/^[A-Za-z0-9._~%-]{0,12}$/);
  const id = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...ids.map(String)) },
    fc.constantFrom('0', '-1', 'abc', '1.5', '1e3', '0x1', '99999999999999999999', '%ZZ', '%00', '%2F', '..', ''),
    fc.nat().map(String),
  );
  const name = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom('out.csv', 'a/b.csv', 'deep/er/c.txt') },
    fc.constantFrom('..', '%2E%2E/x', '', 'a%20b', '%ZZ', 'x'.repeat(300), '.', 'a//b'),
    fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => s.join('/')),
  );
  const randomPath = fc
    .tuple(
      fc.constantFrom('', '/api/v1', '/api/v1/site', '/api/v1/tasks/1', '/api'),
      fc.array(segment, { maxLength: 5 }),
    )
    .map(([prefix, segs]) => `${prefix}/${segs.join('/')}`);
  // Waits are kept short or invalid: a long poll is a valid request, not a slow fuzz run.
  const query = fc.oneof(
    { weight: 6, arbitrary: fc.constant('') },
    fc.constantFrom(
      '?wait=0',
      '?timeout=0',
      '?wait=0.05',
      '?timeout=0.05',
      '?wait=abc',
      '?timeout=-1',
      '?wait=0&wait=0',
      '?status=queued',
      '?status=nope',
      '?limit=2&offset=1',
      '?limit=abc',
      '?offset=99999999999999',
    ),
    fc
      .tuple(fc.stringMatching(/^[a-z[\]]{1,6}$/), fc.stringMatching(/^[A-Za-z0-9%]{0,6}$/))
      .filter(([k]) => !k.startsWith('wait') && !k.startsWith('timeout'))
      .map(([k, v]) => `?${k}=${v}`),
  );
  const junkAuth = fc.oneof(
    fc.constant(null),
    fc.constantFrom(...allKeys.map((k) => `Bearer ${k}`)),
    fc.constantFrom('Bearer', 'Basic abc', 'Bearer pht_site_0000000000000000', `Bearer ${allKeys[0]}x`),
    fc.stringMatching(/^[ -~]{0,40}$/),
  );
  const contentType = fc.oneof(
    { weight: 2, arbitrary: fc.constant(null) },
    { weight: 6, arbitrary: fc.constant('application/json') },
    fc.constantFrom(
      'application/json; charset=utf-8',
      'application/json; charset=latin1',
      'text/plain',
      'application/octet-stream',
      'application/merge-patch+json',
      'multipart/form-data',
    ),
    fc.stringMatching(/^[ -~]{0,30}$/),
  );
  const contentEncoding = fc.oneof(
    { weight: 15, arbitrary: fc.constant(null) },
    fc.constantFrom('gzip', 'deflate', 'br', 'identity', 'bogus'),
  );
  const json = (v: unknown) => Buffer.from(JSON.stringify(v));
  const shapedBody = fc.oneof(
    fc
      .record(
        {
          image: fc.constantFrom(IMAGE, 'Bad Image', ''),
          config: fc.jsonValue({ maxDepth: 2 }),
          sites: fc.constantFrom(['site-a'], ['site-b'], ['nowhere'], []),
          name: fc.string(),
        },
        { requiredKeys: [] },
      )
      .map(json),
    fc
      .record(
        {
          state: fc.constantFrom('completed', 'failed', 'rejected', 'cancelled', 'timed_out', 'running', 'x'),
          exitCode: fc.oneof(fc.integer(), fc.double()),
          reason: fc.string(),
          durationMs: fc.integer(),
        },
        { requiredKeys: [] },
      )
      .map(json),
    fc
      .record(
        { current: fc.oneof(fc.double(), fc.integer()), total: fc.option(fc.integer()), message: fc.string() },
        { requiredKeys: [] },
      )
      .map(json),
    fc.record({ text: fc.oneof(fc.string(), fc.constant('x'.repeat(3000))) }, { requiredKeys: [] }).map(json),
    fc.constant(json({})),
  );
  // Values nested far deeper than any real body, up to the body size limit: one crashed the
  // registry's validation with a stack overflow (500) before depth was limited (issue 14).
  const deep = fc
    .tuple(fc.integer({ min: 1, max: 30_000 }), fc.boolean())
    .map(([depth, arrays]) =>
      arrays ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth),
    );
  const deepBody = fc
    .tuple(
      deep,
      fc.constantFrom(
        `{"image": "${IMAGE}", "config": D}`,
        `{"image": "${IMAGE}", "config": {"x": D}, "sites": ["site-a"]}`,
        '{"state": "failed", "reason": D}',
        '{"current": 1, "message": D}',
        '{"text": D}',
        'D',
      ),
    )
    .map(([value, template]) => Buffer.from(template.replace('D', value)));
  // Inputs that trip up JSON handling elsewhere: prototype keys, lone surrogates, numbers out of
  // range, duplicate keys, and a body over the size limit.
  const trickyBody = fc.constantFrom(
    ...[
      `{"__proto__": {"admin": true}, "image": "${IMAGE}", "config": {}}`,
      `{"constructor": {"prototype": {"x": 1}}, "image": "${IMAGE}"}`,
      `{"image": "${IMAGE}", "config": {"__proto__": null}, "name": "\ud800"}`,
      '{"text": "\udfff\ud800"}',
      '{"state": "failed", "reason": "\u0000\u001b[2J"}',
      '{"current": 1e309, "total": -1e309}',
      '{"current": 1, "total": 1e400, "message": "x"}',
      '{"state": "completed", "exitCode": 1e21, "durationMs": 1e300}',
      '{"state": "completed", "exitCode": -0, "durationMs": -1}',
      `{"image": "${IMAGE}", "image": "Bad Image"}`,
      `{"image": "${IMAGE}", "sites": ["site-a", "site-a", "site-a"]}`,
      `{"image": "${IMAGE}", "sites": "site-a"}`,
      `{"image": "${IMAGE}", "config": "${'x'.repeat(70_000)}"}`,
    ].map((t) => Buffer.from(t)),
  );
  const body = fc.oneof(
    { weight: 3, arbitrary: fc.constant(null) },
    { weight: 6, arbitrary: shapedBody },
    { weight: 4, arbitrary: deepBody },
    { weight: 2, arbitrary: trickyBody },
    fc.jsonValue({ maxDepth: 3 }).map(json),
    fc.uint8Array({ maxLength: 3000 }).map((a) => Buffer.from(a)),
    fc.string({ maxLength: 200 }).map((s) => Buffer.from(s)),
  );
  const anyMethod = fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS');

  const fitting = fc.constantFrom(...ROUTES).chain(([method, template, who]) =>
    fc.record({
      method: fc.oneof({ weight: 8, arbitrary: fc.constant(method) }, anyMethod),
      path: fc
        .tuple(id, name, fc.oneof({ weight: 8, arbitrary: fc.constant('') }, fc.constant('/')))
        .map(([i, n, slash]) => template.replace('{id}', i).replace('{name}', n) + slash),
      query,
      auth: fc.oneof(
        {
          weight: 8,
          arbitrary: fc.constantFrom(...(who === 'site' ? keys.site : keys.user)).map((k) => `Bearer ${k}`),
        },
        junkAuth,
      ),
      contentType: method === 'PUT' ? fc.oneof(fc.constant('application/octet-stream'), contentType) : contentType,
      contentEncoding,
      body: method === 'GET' ? fc.oneof({ weight: 6, arbitrary: fc.constant(null) }, body) : body,
    }),
  );
  const junk = fc.record({
    method: anyMethod,
    path: randomPath,
    query,
    auth: junkAuth,
    contentType,
    contentEncoding,
    body,
  });
  return fc.oneof({ weight: 5, arbitrary: fitting }, junk);
}

/**
 * The task and run rows as the admin sees them through the API, plus every run's files and log
 * read straight from the store (one request per run for each would make the fuzz slow).
 */
async function state(w: World): Promise<unknown> {
  const res = await w.admin.get('/api/v1/tasks?limit=500').expect(200);
  const tasks = res.body.tasks as Task[];
  const runs: Record<number, unknown> = {};
  for (const r of tasks.flatMap((t) => t.runs))
    runs[r.id] = { files: await w.reg.store.listFiles(r.id), log: await w.reg.store.readLog(r.id) };
  return { tasks, runs };
}

/** Tasks in several states, so that requests with real ids reach every branch. */
async function seed(w: World): Promise<number[]> {
  const [a, b] = w.sites as [World['sites'][0], World['sites'][0]];
  const ids: number[] = [];
  const t1 = await w.researcher.createTask();
  const running = await a.claimAndStart();
  await a.log(running.id, 'log line\n');
  await a.upload(running.id, 'out.csv', Buffer.from('a,b\n')).expect(201);
  await a.upload(running.id, 'a/b.csv', Buffer.from('nested\n')).expect(201);
  const assigned = await b.claim();
  const t2 = await w.other.createTask({ sites: ['site-a'] });
  const done = await a.claimAndStart();
  await a.upload(done.id, 'out.csv', Buffer.from('done\n')).expect(201);
  await a.finish(done.id, { state: 'completed', exitCode: 0 });
  const t3 = await w.researcher.createTask({ sites: ['site-b'] });
  const t4 = await w.researcher.createTask({ sites: ['site-a'] });
  await w.researcher.post(`/api/v1/tasks/${t4.id}/cancel`).expect(200);
  ids.push(t1.id, t2.id, t3.id, t4.id, running.id, assigned.id, done.id, t3.runs[0]!.id);
  return [...new Set(ids)];
}

// FUZZ_RUNS=5000 npx vitest run test/master/fuzz.test.ts for a longer hunt.
const RUNS = Number(process.env.FUZZ_RUNS ?? 200);

describe('fuzzing every route', () => {
  it(
    'never answers 5xx, always answers errors as JSON, and a refused request changes nothing',
    async () => {
      const w = await world({
        siteCount: 2,
        overrides: { limits: { jsonBodyBytes: 65536, resultFileBytes: 2000, logBytes: 4096 } },
      });
      const ids = await seed(w);
      const keys = {
        site: [w.sites[0]!.key!, w.sites[1]!.key!],
        user: [w.researcher.key!, w.other.key!, w.admin.key!],
      };
      let before = await state(w);

      await fc.assert(
        fc.asyncProperty(requestArbitrary(ids, keys), async (r) => {
          let path = r.path + r.query;
          // A task wait without a timeout would wait 30 s: the fuzz asks for an immediate answer.
          if (/\/wait\/?$/.test(r.path) && !r.query.includes('timeout=')) path += r.query ? '&timeout=0' : '?timeout=0';
          const headers: Record<string, string> = {};
          if (r.auth !== null) headers.authorization = r.auth;
          if (r.contentType !== null) headers['content-type'] = r.contentType;
          if (r.contentEncoding !== null) headers['content-encoding'] = r.contentEncoding;
          const res = await send(w.reg.url, r.method, path, headers, r.body);

          expect(res.status, `${r.method} ${path} → ${res.status} ${res.text}`).toBeLessThan(500);
          if (res.status >= 400 && r.method !== 'HEAD') {
            expect(res.contentType, `${r.method} ${path}`).toMatch(/^application\/json/);
            const err = JSON.parse(res.text) as { code: unknown; message: unknown };
            expect(typeof err.code).toBe('string');
            expect(typeof err.message).toBe('string');
            expect(res.text).not.toMatch(/\n\s+at /);
          }
          const health = await send(w.reg.url, 'GET', '/healthz', {}, null);
          expect(health.status).toBe(200);

          const after = await state(w);
          if (res.status >= 400)
            expect(after, `refused ${r.method} ${path} (${res.status}) changed the registry`).toEqual(before);
          before = after;
        }),
        { numRuns: RUNS },
      );
    },
    Math.max(180_000, RUNS * 400),
  );
});

describe('bodies nested too deep', () => {
  const nested = (depth: number, arrays: boolean) =>
    arrays ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);

  it('answers 400 nesting_too_deep on every JSON route, however deep, and logs no error', async () => {
    const w = await world({ siteCount: 1 });
    const ids = await seed1(w);
    const routes = ROUTES.filter(([method]) => method === 'POST');
    for (const [method, template, who] of routes) {
      const path = template.replace('{id}', String(who === 'site' ? ids.run : ids.task));
      const key = who === 'site' ? w.sites[0]!.key! : w.researcher.key!;
      for (const depth of [65, 5_000, 50_000]) {
        for (const arrays of [true, false]) {
          // The deep value under every field a route reads, and as the whole body.
          const value = nested(depth, arrays);
          for (const text of [value, `{"image": "${IMAGE}", "config": ${value}, "reason": ${value}}`]) {
            const res = await send(
              w.reg.url,
              method,
              path,
              { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
              Buffer.from(text),
            );
            expect(res.status, `${method} ${path} depth ${depth}: ${res.text}`).toBe(400);
            expect(JSON.parse(res.text)).toMatchObject({ code: 'nesting_too_deep' });
          }
        }
      }
    }
    // A config as deep as the limit allows is accepted.
    const ok = await send(
      w.reg.url,
      'POST',
      '/api/v1/tasks',
      { authorization: `Bearer ${w.researcher.key!}`, 'content-type': 'application/json' },
      Buffer.from(`{"image": "${IMAGE}", "config": ${nested(63, false)}}`),
    );
    expect(ok.status, ok.text).toBe(201);
  }, 60_000);
});

/** One task with a running run, for routes that need real ids. */
async function seed1(w: World): Promise<{ task: number; run: number }> {
  const task = await w.researcher.createTask();
  const run = await w.sites[0]!.claimAndStart();
  return { task: task.id, run: run.id };
}
