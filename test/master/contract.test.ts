/**
 * The registry against its own served OpenAPI document: real requests to every route, for its
 * success and each documented error, and every answer (status, content type, body) checked
 * against the document. The last test fails when a documented status was never seen, so a route
 * or status added to the document without a request here, or answered differently, is caught.
 */
import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { ROUTES, statusesOf } from '../../master/http/openapi.js';
import { ResultFileStore } from '../../master/result-files.js';
import { expireDue } from '../../master/retention.js';
import { generateReviewerKeyPair, signDigest } from '../../shared/governance.js';
import { ServedDocument } from '../helpers/openapi-contract.js';
import { IMAGE, sharedWorld } from './helpers.js';

/** Statuses documented but not provoked here, each with where it is tested instead. */
const NOT_PROVOKED: Record<string, string> = {
  // A full disk is simulated in test/e2e/drills (tmpfs of a few MB); here it would fill the machine's.
  'put /site/runs/{id}/files/{name} 507': 'test/e2e/drills',
};

const JSON_BODY_BYTES = 4096;
const OPEN_TASKS = 4;
const shared = sharedWorld({
  siteCount: 1,
  overrides: {
    limits: { jsonBodyBytes: JSON_BODY_BYTES, configBytes: 512, resultFileBytes: 1000, openTasksPerUser: OPEN_TASKS },
  },
});

let doc: ServedDocument;
const seen = new Set<string>();

interface Answer {
  status: number;
  contentType: string | undefined;
  text: string;
  body: unknown;
}

type Who = 'researcher' | 'admin' | 'site' | 'nobody';

/** Sends a request exactly as given (the path is not normalised) and reads the whole answer. */
function send(method: string, path: string, headers: Record<string, string>, body?: string | Buffer): Promise<Answer> {
  const { hostname, port } = new URL(shared().reg.url);
  return new Promise((resolve, reject) => {
    const req = http.request({ hostname, port, path: `/api/v1${path}`, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown;
        try {
          parsed = text ? JSON.parse(text) : undefined;
        } catch {
          parsed = undefined;
        }
        resolve({ status: res.statusCode!, contentType: res.headers['content-type'], text, body: parsed });
      });
      res.on('error', reject);
    });
    // A refused upload is answered before its body is read, and the connection closed.
    req.on('error', (e: NodeJS.ErrnoException) =>
      e.code === 'EPIPE' || e.code === 'ECONNRESET' ? undefined : reject(e),
    );
    req.end(body);
  });
}

interface Call {
  who?: Who;
  params?: Record<string, string | number>;
  query?: string;
  json?: unknown;
  raw?: { body: string | Buffer; contentType: string; length?: number };
}

/**
 * One request to the route `method template`; its answer must be one the document lists for that
 * operation, with the documented content type and a body that its schema accepts.
 */
async function call(method: string, template: string, expected: number, c: Call = {}): Promise<Answer> {
  const path = template.replace(/\{(\w+)\}/g, (_m, name: string) => String(c.params?.[name] ?? ''));
  const w = shared();
  const who =
    c.who ?? (template.startsWith('/site/') ? 'site' : template.startsWith('/admin/') ? 'admin' : 'researcher');
  const headers: Record<string, string> = {};
  const keys = { site: w.sites[0]!.key!, researcher: w.researcher.key!, admin: w.admin.key! };
  if (who !== 'nobody') headers.authorization = `Bearer ${keys[who]}`;
  let body: string | Buffer | undefined;
  if (c.json !== undefined) {
    body = JSON.stringify(c.json);
    headers['content-type'] = 'application/json';
  } else if (c.raw) {
    body = c.raw.body;
    headers['content-type'] = c.raw.contentType;
  }
  if (body !== undefined) headers['content-length'] = String(c.raw?.length ?? Buffer.byteLength(body));
  const answer = await send(method.toUpperCase(), path + (c.query ?? ''), headers, body);
  const what = `${method.toUpperCase()} ${path}${c.query ?? ''} answered ${answer.status} ${answer.text.slice(0, 300)}`;
  expect(answer.status, what).toBe(expected);

  doc.check(
    method,
    template,
    { status: answer.status, contentType: answer.contentType, text: answer.text, json: () => answer.body },
    what,
  );
  seen.add(`${method} ${template} ${answer.status}`);
  return answer;
}

describe('the registry against its served OpenAPI document', () => {
  it('serves a document a standard OpenAPI linter finds no error in', async () => {
    const res = await fetch(`${shared().reg.url}/api/v1/openapi.json`);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const text = await res.text();
    doc = await ServedDocument.lint(text);
    seen.add('get /openapi.json 200');
  });

  it('documents exactly the route table the registry is built from, with the statuses of each', () => {
    const documented = doc.statuses();
    const table = ROUTES.flatMap((r) => Object.keys(statusesOf(r)).map((s) => `${r.method} ${r.path} ${s}`));
    expect(documented.sort()).toEqual(table.sort());
  });

  it('answers every researcher route as documented', async () => {
    const w = shared();
    // Refused before any route: no key, or the other kind of principal.
    for (const route of ROUTES.filter((r) => r.who !== 'anyone')) {
      const params = { id: 1, name: 'result.json', site: 'site-a', kind: 'site', principal: 'x' };
      await call(route.method, route.path, 401, { who: 'nobody', params });
      await call(route.method, route.path, 403, { who: route.who === 'site' ? 'researcher' : 'site', params });
    }

    // POST /tasks
    const created = await call('post', '/tasks', 201, { json: { image: IMAGE, config: { q: 1 }, name: 'contract' } });
    const task = created.body as { id: number; runs: { id: number }[] };
    await call('post', '/tasks', 400, { json: { config: {} } });
    await call('post', '/tasks', 400, { raw: { body: '{"image":', contentType: 'application/json' } });
    await call('post', '/tasks', 413, { json: { image: IMAGE, config: 'x'.repeat(600) } });
    await call('post', '/tasks', 413, { json: { image: IMAGE, config: 'x'.repeat(JSON_BODY_BYTES) } });
    await call('post', '/tasks', 415, { raw: { body: `{"image":"${IMAGE}"}`, contentType: 'text/plain' } });
    await call('post', '/tasks', 422, { json: { image: IMAGE, sites: ['nowhere'] } });
    // A sealed config for a site that registered no public key (site_without_key).
    const sealed = { format: 'pht-sealed-config', version: 1, envelope: 'AAAA' };
    const refusedSealed = await call('post', '/tasks', 422, {
      json: { image: IMAGE, config: sealed, sites: ['site-a'] },
    });
    expect(refusedSealed.body).toMatchObject({ code: 'site_without_key', details: { sites: ['site-a'] } });

    // GET /tasks
    await call('get', '/tasks', 200);
    await call('get', '/tasks', 200, { query: '?status=queued&limit=500&offset=0' });
    await call('get', '/tasks', 400, { query: '?limit=501' });

    // GET /tasks/{id}, /wait, /cancel
    await call('get', '/tasks/{id}', 200, { params: { id: task.id } });
    await call('get', '/tasks/{id}', 400, { params: { id: 'abc' } });
    await call('get', '/tasks/{id}', 404, { params: { id: 999999 } });
    await call('get', '/tasks/{id}/wait', 200, { params: { id: task.id }, query: '?timeout=0' });
    await call('get', '/tasks/{id}/wait', 400, { params: { id: task.id }, query: '?timeout=61' });
    await call('get', '/tasks/{id}/wait', 404, { params: { id: 999999 } });
    await call('get', '/tasks/{id}/events', 400, { params: { id: '0' } });
    await call('get', '/tasks/{id}/events', 404, { params: { id: 999999 } });
    await call('post', '/tasks/{id}/cancel', 400, { params: { id: task.id }, json: { now: true } });
    await call('post', '/tasks/{id}/cancel', 404, { params: { id: 999999 } });
    await call('post', '/tasks/{id}/cancel', 413, {
      params: { id: task.id },
      json: { pad: 'x'.repeat(JSON_BODY_BYTES) },
    });
    await call('post', '/tasks/{id}/cancel', 415, {
      params: { id: task.id },
      raw: { body: '{}', contentType: 'text/plain' },
    });
    await call('post', '/tasks/{id}/cancel', 200, { params: { id: task.id } });
    // Final now: the event stream sends the task once and ends; each event is a documented Task.
    const events = await call('get', '/tasks/{id}/events', 200, { params: { id: task.id } });
    const data = events.text.split('\n').filter((l) => l.startsWith('data: '));
    expect(data).toHaveLength(1);
    const validateTask = doc.ajv.getSchema('openapi.json#/components/schemas/Task')!;
    expect(validateTask(JSON.parse(data[0]!.slice(6))), JSON.stringify(validateTask.errors)).toBe(true);

    // Runs and their results (one finished with a file below, by the site).
    const done = await w.researcher.createTask();
    const site = w.sites[0]!;
    const runId = done.runs[0]!.id;
    const claim = await call('get', '/site/runs/next', 200);
    expect((claim.body as { id: number }).id).toBe(runId);
    await site.start(runId);
    await site.log(runId, 'hello\n');
    await site.upload(runId, 'result.json', Buffer.from('{"n":1}')).expect(201);
    await site.finish(runId, { state: 'completed', exitCode: 0 });

    await call('get', '/runs/{id}', 200, { params: { id: runId } });
    await call('get', '/runs/{id}', 400, { params: { id: '-1' } });
    await call('get', '/runs/{id}', 404, { params: { id: 999999 } });
    const log = await call('get', '/runs/{id}/log', 200, { params: { id: runId } });
    expect(log.text).toBe('hello\n');
    await call('get', '/runs/{id}/log', 400, { params: { id: 'x' } });
    await call('get', '/runs/{id}/log', 404, { params: { id: 999999 } });
    await call('get', '/runs/{id}/files', 200, { params: { id: runId } });
    await call('get', '/runs/{id}/files', 400, { params: { id: 'x' } });
    await call('get', '/runs/{id}/files', 404, { params: { id: 999999 } });
    const file = await call('get', '/runs/{id}/files/{name}', 200, { params: { id: runId, name: 'result.json' } });
    expect(file.text).toBe('{"n":1}');
    await call('get', '/runs/{id}/files/{name}', 400, { params: { id: runId, name: 'bad%20name' } });
    await call('get', '/runs/{id}/files/{name}', 404, { params: { id: runId, name: 'missing.json' } });

    await call('get', '/sites', 200);
    await call('get', '/me', 200);

    // DELETE /tasks/{id}: a finished task goes with its runs and files; an unfinished one stays.
    const open = [await w.researcher.createTask()];
    await call('delete', '/tasks/{id}', 409, { params: { id: open[0]!.id } });
    await call('delete', '/tasks/{id}', 400, { params: { id: 'x' } });
    await call('delete', '/tasks/{id}', 404, { params: { id: 999999 } });
    const deleted = await call('delete', '/tasks/{id}', 200, { params: { id: done.id } });
    expect(deleted.body).toEqual({ id: done.id, runs: 1, files: 1 });
    await call('get', '/runs/{id}', 404, { params: { id: runId } });

    // POST /tasks 429: as many unfinished tasks as allowed, then one more. Cancelled afterwards, so
    // that the site test below finds no run of these queued.
    while (open.length < OPEN_TASKS) open.push(await w.researcher.createTask());
    const refused = await call('post', '/tasks', 429, { json: { image: IMAGE } });
    expect((refused.body as { code: string }).code).toBe('too_many_open_tasks');
    for (const t of open) await w.researcher.post(`/api/v1/tasks/${t.id}/cancel`).expect(200);

    // 410: a run whose log and files retention removed (master/retention.ts).
    const aged = (await w.researcher.createTask()).runs[0]!.id;
    await site.claimAndStart();
    await site.log(aged, 'old\n');
    await site.upload(aged, 'old.json', Buffer.from('{}')).expect(201);
    await site.finish(aged, { state: 'completed', exitCode: 0 });
    const retention = { logsMs: 1, filesMs: 1, intervalMs: 60_000, batch: 10 };
    await expireDue(w.reg.store, new ResultFileStore(w.reg.dataDir), retention, new Date(Date.now() + 60_000));
    await call('get', '/runs/{id}/log', 410, { params: { id: aged } });
    await call('get', '/runs/{id}/files', 410, { params: { id: aged } });
    await call('get', '/runs/{id}/files/{name}', 410, { params: { id: aged, name: 'old.json' } });
  });

  it('answers every site route as documented', async () => {
    const w = shared();
    const task = await w.researcher.createTask();
    const runId = task.runs[0]!.id;
    const id = { id: runId };

    await call('get', '/site/me', 200);
    await call('get', '/site/runs/next', 400, { query: '?wait=abc' });
    await call('get', '/site/runs/next', 400, { query: '?wait=61' });
    await call('get', '/site/runs/next', 200, { query: '?wait=0' });
    await call('get', '/site/runs/next', 204, { query: '?wait=0' });
    await call('get', '/site/runs', 200);
    await call('get', '/site/runs/{id}', 200, { params: id });
    await call('get', '/site/runs/{id}', 400, { params: { id: '1.5' } });
    await call('get', '/site/runs/{id}', 404, { params: { id: 999999 } });

    // Not running yet: progress, log and files are refused.
    await call('post', '/site/runs/{id}/progress', 409, { params: id, json: { current: 1 } });
    await call('post', '/site/runs/{id}/log', 409, { params: id, json: { text: 'early' } });
    await call('put', '/site/runs/{id}/files/{name}', 409, {
      params: { id: runId, name: 'early.txt' },
      raw: { body: 'early', contentType: 'application/octet-stream' },
    });

    const tooBig = { pad: 'x'.repeat(JSON_BODY_BYTES) };
    const notJson = { body: '{}', contentType: 'text/plain' };
    const valid: Record<string, object> = {
      start: {},
      progress: { current: 1 },
      log: { text: 'x' },
      finish: { state: 'failed' },
    };
    for (const [action, body] of Object.entries(valid)) {
      const route = `/site/runs/{id}/${action}`;
      await call('post', route, 400, { params: { id: 'abc' }, json: body });
      await call('post', route, 400, { params: id, json: { unexpected: true } });
      await call('post', route, 404, { params: { id: 999999 }, json: body });
      await call('post', route, 413, { params: id, json: tooBig });
      await call('post', route, 415, { params: id, raw: notJson });
    }

    await call('post', '/site/runs/{id}/start', 200, { params: id });
    await call('post', '/site/runs/{id}/start', 409, { params: id });
    await call('post', '/site/runs/{id}/progress', 200, {
      params: id,
      json: { current: 1, total: 2, message: 'half' },
    });
    await call('post', '/site/runs/{id}/log', 200, { params: id, json: { text: 'line\n' } });

    const put = (name: string, body: string, expected: number, length?: number) =>
      call('put', '/site/runs/{id}/files/{name}', expected, {
        params: { id: runId, name },
        raw: { body, contentType: 'application/octet-stream', length },
      });
    await put('out.txt', 'result', 201);
    await put('bad%20name', 'x', 400);
    await put('big.bin', 'x', 413, 5000);
    await call('put', '/site/runs/{id}/files/{name}', 404, {
      params: { id: 999999, name: 'x.txt' },
      raw: { body: 'x', contentType: 'application/octet-stream' },
    });

    await call('post', '/site/runs/{id}/finish', 200, { params: id, json: { state: 'completed', exitCode: 0 } });
    await call('post', '/site/runs/{id}/finish', 200, { params: id, json: { state: 'completed', exitCode: 0 } });
    await call('post', '/site/runs/{id}/finish', 409, { params: id, json: { state: 'failed' } });
    await call('post', '/site/runs/{id}/progress', 409, { params: id, json: { current: 2 } });
    await call('post', '/site/runs/{id}/log', 409, { params: id, json: { text: 'late' } });
    await put('out.txt', 'result', 201);
    await put('out.txt', 'changed', 409);
  });

  it('answers every dashboard overview and admin route as documented', async () => {
    const w = shared();
    await call('get', '/task-summaries', 200);
    await call('get', '/task-summaries', 200, { query: '?status=queued&site=site-a&q=contract&limit=10&offset=0' });
    await call('get', '/task-summaries', 400, { query: '?site=Not%20A%20Site' });
    await call('get', '/sites/activity', 200);
    await call('get', '/sites/activity', 200, { query: '?q=site&limit=1&offset=0' });
    await call('get', '/sites/activity', 400, { query: '?all=1' });
    // A researcher is refused the admin routes as a site is.
    await call('get', '/admin/users', 403, { who: 'researcher' });

    await call('get', '/admin/users', 200);
    await call('get', '/admin/users', 400, { query: '?role=admin' });
    await call('post', '/admin/users', 201, { json: { name: 'contract-user', role: 'researcher' } });
    await call('post', '/admin/users', 400, { json: { name: 'contract-user' } });
    await call('post', '/admin/users', 409, { json: { name: 'contract-user', role: 'admin' } });
    await call('post', '/admin/users', 413, { json: { name: 'x'.repeat(JSON_BODY_BYTES), role: 'admin' } });
    await call('post', '/admin/users', 415, { raw: { body: '{}', contentType: 'text/plain' } });
    await call('post', '/admin/sites', 201, { json: { name: 'contract-site' } });
    await call('post', '/admin/sites', 400, { json: { name: '../x' } });
    await call('post', '/admin/sites', 409, { json: { name: 'contract-site' } });
    await call('post', '/admin/sites', 413, { json: { name: 'x'.repeat(JSON_BODY_BYTES) } });
    await call('post', '/admin/sites', 415, { raw: { body: '{}', contentType: 'text/plain' } });
    for (const action of ['disable', 'enable']) {
      const route = `/admin/sites/{site}/${action}`;
      await call('post', route, 200, { params: { site: 'contract-site' } });
      await call('post', route, 400, { params: { site: 'Contract%20Site' } });
      await call('post', route, 400, { params: { site: 'contract-site' }, json: { now: true } });
      await call('post', route, 404, { params: { site: 'no-such-site' } });
      await call('post', route, 413, { params: { site: 'contract-site' }, json: { pad: 'x'.repeat(JSON_BODY_BYTES) } });
      await call('post', route, 415, {
        params: { site: 'contract-site' },
        raw: { body: '{}', contentType: 'text/plain' },
      });
    }
    expect((await w.admin.get('/api/v1/sites').expect(200)).body).toContainEqual(
      expect.objectContaining({ name: 'contract-site', enabled: true }),
    );
  });

  it('answers the public-key routes as documented', async () => {
    const { generateKeyPair, publicKeyToJson, signRotation } = await import('../../shared/crypto/index.js');
    const first = generateKeyPair();
    const second = generateKeyPair();
    const body = { publicKey: publicKeyToJson(first.publicKey) };
    const tooBig = { publicKey: body.publicKey, pad: 'x'.repeat(JSON_BODY_BYTES) };
    for (const route of ['/site/public-key', '/public-key']) {
      await call('post', route, 400, { json: { publicKey: { format: 'pht-public-key' } } });
      await call('post', route, 413, { json: tooBig });
      await call('post', route, 415, { raw: { body: '{}', contentType: 'text/plain' } });
      await call('post', route, 201, { json: body });
      await call('post', route, 200, { json: body });
      await call('post', route, 409, { json: { publicKey: publicKeyToJson(second.publicKey) } });
      const rotation = signRotation(first, second.publicKey);
      await call('post', route, 201, { json: { publicKey: publicKeyToJson(second.publicKey), rotation } });
    }
    for (const route of ['/keys/{kind}/{principal}', '/site/keys/{kind}/{principal}']) {
      await call('get', route, 200, { params: { kind: 'site', principal: 'site-a' } });
      await call('get', route, 200, { params: { kind: 'user', principal: 'alice' } });
      await call('get', route, 404, { params: { kind: 'ttp', principal: 'nowhere' } });
      await call('get', route, 400, { params: { kind: 'robot', principal: 'x' } });
    }
    await shared().reg.keys.revoke('user', 'alice');
    await call('get', '/keys/{kind}/{principal}', 410, { params: { kind: 'user', principal: 'alice' } });
    await call('get', '/site/keys/{kind}/{principal}', 410, { params: { kind: 'user', principal: 'alice' } });
  });

  it('answers every governance route as documented', async () => {
    const digest = `sha256:${'ef'.repeat(32)}`;
    const key = generateReviewerKeyPair();
    const signed = signDigest(key.privateKeyPem, digest);
    await call('post', '/images/signatures', 201, { json: { digest, ...signed, signer: 'reviewer' } });
    await call('post', '/images/signatures', 400, { json: { digest: 'latest', ...signed, signer: 'reviewer' } });
    await call('post', '/images/signatures', 415, { raw: { body: '{}', contentType: 'text/plain' } });
    await call('post', '/images/signatures', 422, {
      json: { digest: `sha256:${'0'.repeat(64)}`, ...signed, signer: 'reviewer' },
    });
    await call('get', '/images/signatures', 200, { query: `?digest=${digest}` });
    await call('get', '/images/signatures', 400, { query: '?digest=latest' });
    await call('get', '/site/images/signatures', 200, { query: `?digest=${digest}` });
    await call('get', '/site/images/signatures', 400, { query: '' });

    const w = shared();
    const site = w.sites[0]!;
    // Other tests of this shared registry add sites and leave runs queued: target one site and
    // claim until this task's run comes up.
    const task = await w.researcher.createTask({ sites: [site.name] });
    const id = { id: task.runs[0]!.id };
    const route = '/site/runs/{id}/await-approval';
    await call('post', route, 409, { params: id });
    for (let claimed = await site.claim(); claimed.id !== id.id; claimed = await site.claim());
    await site.start(id.id);
    await call('post', route, 400, { params: { id: 'abc' } });
    await call('post', route, 404, { params: { id: 999999 } });
    await call('post', route, 413, { params: id, json: { pad: 'x'.repeat(JSON_BODY_BYTES) } });
    await call('post', route, 415, { params: id, raw: { body: '{}', contentType: 'text/plain' } });
    await call('post', route, 200, { params: id });
    await call('post', route, 200, { params: id, json: {} });
    await call('post', '/site/runs/{id}/finish', 200, { params: id, json: { state: 'rejected', reason: 'officer' } });
  });

  it('has seen every documented status of every route', () => {
    const documented = doc.statuses();
    const missing = documented.filter((key) => !seen.has(key) && !(key in NOT_PROVOKED));
    expect(missing).toEqual([]);
    // An exemption for a status that is no longer documented is stale.
    expect(Object.keys(NOT_PROVOKED).filter((key) => !documented.includes(key))).toEqual([]);
  });
});
