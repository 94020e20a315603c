/**
 * The file service against its own served OpenAPI document: real requests to every route, for its
 * success and each documented error, and every answer (status, content type, body) checked
 * against the document. The last test fails when a documented status was never seen, so a route
 * or status added to the document without a request here, or answered differently, is caught.
 */
import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FILE_SERVICE_ROUTES, statusesOf } from '../../fileservice/openapi.js';
import { createKeyFiles } from '../../shared/crypto/index.js';
import { validateFileEntryList, validateTtpPublicKey } from '../../shared/fileservice-schemas.js';
import { ServedDocument } from '../helpers/openapi-contract.js';
import { request, startTestFileService, type RawResponse, type TestFileService } from './harness.js';

/** Statuses documented but not provoked here, each with where it is tested instead. */
const NOT_PROVOKED: Record<string, string> = {
  // A full disk needs a small tmpfs mounted as root; here it would fill the machine's disk.
  'put /tasks/{taskId}/files/{name} 507': 'test/e2e/drills/fileservice-disk-full.test.ts',
};

const FILE_BYTES = 1000;
const FILES_PER_TASK = 2;
let fsvc: TestFileService;
let keys: { sender: string; reader: string; disabledSender: string; disabledReader: string };
let doc: ServedDocument;
const seen = new Set<string>();

beforeAll(async () => {
  fsvc = await startTestFileService({ limits: { fileBytes: FILE_BYTES, filesPerSenderAndTask: FILES_PER_TASK } });
  keys = {
    sender: fsvc.sender('hospital-a'),
    reader: fsvc.reader('ttp-worker'),
    disabledSender: fsvc.sender('hospital-off'),
    disabledReader: fsvc.reader('reader-off'),
  };
  fsvc.service.store.setEnabled('sender', 'hospital-off', false);
  fsvc.service.store.setEnabled('reader', 'reader-off', false);
});
afterAll(async () => {
  const errors = fsvc.lines.filter((l) => l.level === 'error');
  await fsvc.close();
  expect(errors, 'the file service logged errors').toEqual([]);
});

type Who = 'sender' | 'reader' | 'disabledSender' | 'disabledReader' | 'nobody';

interface Call {
  who?: Who;
  params?: Record<string, string | number>;
  body?: string | Buffer;
  headers?: Record<string, string>;
}

/**
 * One request to the route `method template`; its answer must be one the document lists for that
 * operation, with the documented content type and a body that its schema accepts.
 */
async function call(method: string, template: string, expected: number, c: Call = {}): Promise<RawResponse> {
  const path = template.replace(/\{(\w+)\}/g, (_m, name: string) => String(c.params?.[name] ?? ''));
  const route = FILE_SERVICE_ROUTES.find((r) => r.method === method && r.path === template)!;
  const who = c.who ?? (route.who === 'anyone' ? 'nobody' : route.who);
  const answer = await request(fsvc.service.url, method.toUpperCase(), `/api/v1${path}`, {
    ...(who !== 'nobody' ? { key: keys[who] } : {}),
    ...(c.body !== undefined ? { body: c.body } : {}),
    ...(c.headers ? { headers: c.headers } : {}),
  });
  const text = answer.body.toString('utf8');
  const what = `${method.toUpperCase()} ${path} answered ${answer.status} ${text.slice(0, 300)}`;
  expect(answer.status, what).toBe(expected);

  doc.check(
    method,
    template,
    { status: answer.status, contentType: String(answer.headers['content-type']), text, json: () => answer.json() },
    what,
  );
  seen.add(`${method} ${template} ${answer.status}`);
  return answer;
}

const sha = (b: string) => crypto.createHash('sha256').update(b).digest('hex');

describe('the file service against its served OpenAPI document', () => {
  it('serves a document a standard OpenAPI linter finds no error in', async () => {
    const res = await request(fsvc.service.url, 'GET', '/api/v1/openapi.json');
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const text = res.body.toString('utf8');
    doc = await ServedDocument.lint(text);
    seen.add('get /openapi.json 200');
  });

  it('documents exactly the route table the file service is built from, with the statuses of each', () => {
    const documented = doc.statuses();
    const table = FILE_SERVICE_ROUTES.flatMap((r) =>
      Object.keys(statusesOf(r)).map((s) => `${r.method} ${r.path} ${s}`),
    );
    expect(documented.sort()).toEqual(table.sort());
  });

  it('answers every route as documented', async () => {
    // Refused before any route: no key, a disabled principal, or the other kind of principal.
    const params = { taskId: 7, name: 'a.bin', sender: 'hospital-a' };
    for (const route of FILE_SERVICE_ROUTES.filter((r) => r.who !== 'anyone')) {
      await call(route.method, route.path, 401, { who: 'nobody', params });
      await call(route.method, route.path, 403, { who: route.who === 'sender' ? 'reader' : 'sender', params });
      await call(route.method, route.path, 403, {
        who: route.who === 'sender' ? 'disabledSender' : 'disabledReader',
        params,
      });
    }

    // GET /public-key: none yet, then the key file's.
    await call('get', '/public-key', 404);
    const key = createKeyFiles(fsvc.config.keyFile);
    const served = (await call('get', '/public-key', 200)).json() as unknown;
    expect(validateTtpPublicKey(served), validateTtpPublicKey.problems().join('; ')).toBe(true);
    expect((served as { fingerprint: string }).fingerprint).toBe(key.publicKey.fingerprint);

    // PUT /tasks/{taskId}/files/{name}
    const put = '/tasks/{taskId}/files/{name}';
    await call('put', put, 201, { params, body: 'first', headers: { 'x-content-sha256': sha('first') } });
    await call('put', put, 200, { params, body: 'first' });
    await call('put', put, 201, { params: { ...params, name: 'b.bin' }, body: 'second' });
    await call('put', put, 409, { params: { ...params, name: 'c.bin' }, body: 'third' });
    await call('put', put, 400, { params: { ...params, taskId: '0' }, body: 'x' });
    await call('put', put, 400, { params: { ...params, name: '.hidden' }, body: 'x' });
    await call('put', put, 400, { params, body: 'x', headers: { 'x-content-sha256': 'not-hex' } });
    await call('put', put, 400, { params, body: 'x', headers: { 'x-content-sha256': sha('y') } });
    await call('put', put, 413, { params, body: 'x'.repeat(FILE_BYTES + 1) });

    // GET /tasks/{taskId}/files
    const list = (await call('get', '/tasks/{taskId}/files', 200, { params })).json() as unknown;
    expect(validateFileEntryList(list)).toBe(true);
    expect((list as { name: string }[]).map((f) => f.name).sort()).toEqual(['a.bin', 'b.bin']);
    expect((await call('get', '/tasks/{taskId}/files', 200, { params: { taskId: 8 } })).json()).toEqual([]);
    await call('get', '/tasks/{taskId}/files', 400, { params: { taskId: 'x' } });

    // GET and DELETE /tasks/{taskId}/files/{sender}/{name}
    const one = '/tasks/{taskId}/files/{sender}/{name}';
    const bytes = await call('get', one, 200, { params });
    expect(bytes.body.toString('utf8')).toBe('first');
    expect(bytes.headers['x-content-sha256']).toBe(sha('first'));
    await call('get', one, 404, { params: { ...params, name: 'none.bin' } });
    await call('get', one, 400, { params: { ...params, sender: 'Bad..Sender' } });
    await call('delete', one, 204, { params });
    await call('delete', one, 404, { params });
    await call('delete', one, 400, { params: { ...params, taskId: '01' } });
  });

  it('saw every documented status of every route', () => {
    const documented = FILE_SERVICE_ROUTES.flatMap((r) =>
      Object.keys(statusesOf(r)).map((s) => `${r.method} ${r.path} ${s}`),
    );
    const missing = documented.filter((d) => !seen.has(d) && !(d in NOT_PROVOKED));
    expect(missing).toEqual([]);
  });
});
