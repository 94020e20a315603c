import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { request, startTestFileService, truncatedUpload, type LogLine, type TestFileService } from './harness.js';

let fsvc: TestFileService | null = null;
afterEach(async () => {
  // No request may have ended in an internal error.
  const errors = fsvc?.lines.filter((l) => l.level === 'error') ?? [];
  await fsvc?.close();
  fsvc = null;
  expect(errors).toEqual([]);
});

async function start(raw: Record<string, unknown> = {}) {
  fsvc = await startTestFileService(raw);
  const sender = fsvc.sender('hospital-a');
  const reader = fsvc.reader('ttp-worker');
  return { f: fsvc, url: fsvc.service.url, sender, reader };
}

const sha = (b: Buffer | string) => crypto.createHash('sha256').update(b).digest('hex');

/** Everything stored for a task, as the reader sees it. */
async function listed(url: string, reader: string, taskId = '7'): Promise<unknown[]> {
  const r = await request(url, 'GET', `/api/v1/tasks/${taskId}/files`, { key: reader });
  expect(r.status).toBe(200);
  return r.json() as unknown[];
}

function nextRefusal(f: TestFileService): Promise<LogLine> {
  return new Promise((resolve) => {
    const onLine = (line: LogLine) => {
      if (line.message === 'request refused' && line.method === 'PUT') {
        f.log.off('line', onLine);
        resolve(line);
      }
    };
    f.log.on('line', onLine);
  });
}

describe('file service: the happy path', () => {
  it('serves /healthz and its OpenAPI document without a key', async () => {
    const { url } = await start();
    expect((await request(url, 'GET', '/healthz')).json()).toEqual({ status: 'ok' });
    const doc = (await request(url, 'GET', '/api/v1/openapi.json')).json();
    expect(Object.keys(doc.paths)).toEqual([
      '/public-key',
      '/tasks/{taskId}/files/{name}',
      '/tasks/{taskId}/files',
      '/tasks/{taskId}/files/{sender}/{name}',
      '/openapi.json',
    ]);
  });

  it('stores a sender upload that a reader lists, reads and deletes', async () => {
    const { f, url, sender, reader } = await start();
    const body = Buffer.from('sealed bytes would go here');
    const put = await request(url, 'PUT', '/api/v1/tasks/7/files/ages.bin', {
      key: sender,
      body,
      headers: { 'x-content-sha256': sha(body) },
    });
    expect(put.status).toBe(201);
    expect(put.json()).toEqual({ sender: 'hospital-a', name: 'ages.bin', size: body.length, sha256: sha(body) });
    expect(await listed(url, reader)).toEqual([
      { sender: 'hospital-a', name: 'ages.bin', size: body.length, sha256: sha(body) },
    ]);
    const get = await request(url, 'GET', '/api/v1/tasks/7/files/hospital-a/ages.bin', { key: reader });
    expect(get.status).toBe(200);
    expect(get.body.equals(body)).toBe(true);
    expect(get.headers['x-content-sha256']).toBe(sha(body));
    expect((await request(url, 'DELETE', '/api/v1/tasks/7/files/hospital-a/ages.bin', { key: reader })).status).toBe(
      204,
    );
    expect(await listed(url, reader)).toEqual([]);
    expect(f.diskFiles()).toEqual({ stored: [], tmp: [] });
    expect((await request(url, 'GET', '/api/v1/tasks/7/files/hospital-a/ages.bin', { key: reader })).status).toBe(404);
  });

  it('treats the same upload twice as harmless, and lets a sender replace its own file', async () => {
    const { f, url, sender, reader } = await start();
    const first = await request(url, 'PUT', '/api/v1/tasks/7/files/a.bin', { key: sender, body: 'one' });
    const again = await request(url, 'PUT', '/api/v1/tasks/7/files/a.bin', { key: sender, body: 'one' });
    expect([first.status, again.status]).toEqual([201, 200]);
    expect(f.diskFiles().stored).toHaveLength(1);
    expect((await request(url, 'PUT', '/api/v1/tasks/7/files/a.bin', { key: sender, body: 'two' })).status).toBe(201);
    expect(f.diskFiles().stored).toHaveLength(1);
    expect((await request(url, 'GET', '/api/v1/tasks/7/files/hospital-a/a.bin', { key: reader })).body.toString()).toBe(
      'two',
    );
  });

  it('deletes files past the retention and keeps younger ones', async () => {
    const { f, url, sender, reader } = await start({ retention: '1h' });
    await request(url, 'PUT', '/api/v1/tasks/7/files/a.bin', { key: sender, body: 'x' });
    expect(f.service.sweep(new Date(Date.now() + 59 * 60_000))).toBe(0);
    expect(await listed(url, reader)).toHaveLength(1);
    expect(f.service.sweep(new Date(Date.now() + 61 * 60_000))).toBe(1);
    expect(await listed(url, reader)).toEqual([]);
    expect(f.diskFiles()).toEqual({ stored: [], tmp: [] });
  });
});

describe('file service: bad input stores nothing and leaks nothing', () => {
  it.each([
    ['a parent-folder name', '..'],
    ['an encoded traversal', '..%2F..%2Fetc%2Fpasswd'],
    ['an encoded absolute path', '%2Fetc%2Fpasswd'],
    ['a hidden name', '.bashrc'],
    ['a NUL byte', 'a%00b'],
    ['a newline', 'a%0Ab'],
    ['a backslash traversal', '..%5C..%5Cx'],
    ['a name of 256 characters', 'a'.repeat(256)],
    ['a broken percent-encoding', '%ZZ'],
    ['a space', 'a%20b'],
  ])('refuses %s with 400', async (_what, name) => {
    const { f, url, sender, reader } = await start();
    const r = await request(url, 'PUT', `/api/v1/tasks/7/files/${name}`, { key: sender, body: 'payload' });
    expect(r.status).toBe(400);
    expect(r.json().code).toBe('bad_request');
    expect(await listed(url, reader)).toEqual([]);
    expect(f.diskFiles()).toEqual({ stored: [], tmp: [] });
  });

  it('refuses bad task ids and routes that try to climb out', async () => {
    const { f, url, sender } = await start();
    for (const p of ['/api/v1/tasks/0/files/a', '/api/v1/tasks/abc/files/a', '/api/v1/tasks/..%2F1/files/a']) {
      const r = await request(url, 'PUT', p, { key: sender, body: 'x' });
      expect(r.status, p).toBe(400);
    }
    const climb = await request(url, 'PUT', '/api/v1/tasks/7/files/../../../../etc/passwd', { key: sender, body: 'x' });
    expect(climb.status).toBe(404);
    expect(f.diskFiles()).toEqual({ stored: [], tmp: [] });
  });

  it('answers a body announced over the limit with 413 before reading it', async () => {
    const { f, url, sender, reader } = await start({ limits: { fileBytes: 1000 } });
    const r = await request(url, 'PUT', '/api/v1/tasks/7/files/big.bin', {
      key: sender,
      headers: { 'content-length': String(10 * 1024 ** 3) },
    });
    expect(r.status).toBe(413);
    expect(r.json().code).toBe('payload_too_large');
    expect(await listed(url, reader)).toEqual([]);
    expect(f.diskFiles()).toEqual({ stored: [], tmp: [] });
  });

  it('answers a chunked body that grows over the limit with 413 and keeps nothing', async () => {
    const { f, url, sender, reader } = await start({ limits: { fileBytes: 1000 } });
    const r = await request(url, 'PUT', '/api/v1/tasks/7/files/big.bin', {
      key: sender,
      body: Buffer.alloc(5000, 1),
      headers: { 'transfer-encoding': 'chunked' },
    }).catch((e: unknown) => ({ status: -1, error: e }));
    // The server may close the socket before the whole body is written: a reset is also a refusal.
    if (r.status !== -1) expect(r.status).toBe(413);
    expect(await listed(url, reader)).toEqual([]);
    expect(f.diskFiles()).toEqual({ stored: [], tmp: [] });
  });

  it('refuses a missing, malformed, unknown or revoked credential', async () => {
    const { f, url, sender } = await start();
    const put = (key?: string, headers: Record<string, string> = {}) =>
      request(url, 'PUT', '/api/v1/tasks/7/files/a.bin', { key, body: 'x', headers });
    expect((await put()).status).toBe(401);
    expect((await put(undefined, { authorization: 'Basic abc' })).status).toBe(401);
    const unknown = await put('pht_fssender_' + 'A'.repeat(43));
    expect(unknown.status).toBe(401);
    expect(unknown.body.toString()).not.toContain('AAAA');
    f.service.store.setEnabled('sender', 'hospital-a', false);
    const revoked = await put(sender);
    expect(revoked.status).toBe(403);
    expect(revoked.body.toString()).not.toContain(sender);
    expect(f.diskFiles()).toEqual({ stored: [], tmp: [] });
  });

  it('keeps senders and readers to their own routes', async () => {
    const { url, sender, reader } = await start();
    await request(url, 'PUT', '/api/v1/tasks/7/files/a.bin', { key: sender, body: 'x' });
    expect((await request(url, 'PUT', '/api/v1/tasks/7/files/b.bin', { key: reader, body: 'x' })).status).toBe(403);
    for (const [method, p] of [
      ['GET', '/api/v1/tasks/7/files'],
      ['GET', '/api/v1/tasks/7/files/hospital-a/a.bin'],
      ['DELETE', '/api/v1/tasks/7/files/hospital-a/a.bin'],
    ] as const) {
      const r = await request(url, method, p, { key: sender });
      expect(r.status, `${method} ${p}`).toBe(403);
      expect(r.body.toString()).not.toContain('x');
    }
  });

  it("never lets a sender list, read or overwrite another sender's file", async () => {
    const { f, url, sender, reader } = await start();
    const other = f.sender('hospital-b');
    await request(url, 'PUT', '/api/v1/tasks/7/files/ages.bin', { key: sender, body: 'from a' });
    // The same name from b lands beside a's file, never on it.
    expect((await request(url, 'PUT', '/api/v1/tasks/7/files/ages.bin', { key: other, body: 'from b' })).status).toBe(
      201,
    );
    expect((await request(url, 'GET', '/api/v1/tasks/7/files/hospital-a/ages.bin', { key: other })).status).toBe(403);
    expect((await request(url, 'GET', '/api/v1/tasks/7/files', { key: other })).status).toBe(403);
    expect(
      (await request(url, 'GET', '/api/v1/tasks/7/files/hospital-a/ages.bin', { key: reader })).body.toString(),
    ).toBe('from a');
    expect(
      (await request(url, 'GET', '/api/v1/tasks/7/files/hospital-b/ages.bin', { key: reader })).body.toString(),
    ).toBe('from b');
  });

  it('keeps nothing of a truncated upload', async () => {
    const { f, url, sender, reader } = await start();
    const refused = nextRefusal(f);
    await truncatedUpload(url, '/api/v1/tasks/7/files/half.bin', sender, 100_000, 40_000);
    await refused;
    expect(await listed(url, reader)).toEqual([]);
    expect(f.diskFiles()).toEqual({ stored: [], tmp: [] });
  });

  it('refuses a checksum mismatch, and a malformed checksum header, storing nothing', async () => {
    const { f, url, sender, reader } = await start();
    const mismatch = await request(url, 'PUT', '/api/v1/tasks/7/files/a.bin', {
      key: sender,
      body: 'actual bytes',
      headers: { 'x-content-sha256': sha('other bytes') },
    });
    expect(mismatch.status).toBe(400);
    expect(mismatch.json().code).toBe('checksum_mismatch');
    const malformed = await request(url, 'PUT', '/api/v1/tasks/7/files/a.bin', {
      key: sender,
      body: 'actual bytes',
      headers: { 'x-content-sha256': 'abc' },
    });
    expect(malformed.status).toBe(400);
    expect(await listed(url, reader)).toEqual([]);
    expect(f.diskFiles()).toEqual({ stored: [], tmp: [] });
    // An upper-case checksum of the right bytes is fine.
    const ok = await request(url, 'PUT', '/api/v1/tasks/7/files/a.bin', {
      key: sender,
      body: 'actual bytes',
      headers: { 'x-content-sha256': sha('actual bytes').toUpperCase() },
    });
    expect(ok.status).toBe(201);
  });

  it('caps the number of files a sender may leave for one task', async () => {
    const { f, url, sender } = await start({ limits: { filesPerSenderAndTask: 2 } });
    for (const n of ['a', 'b'])
      expect((await request(url, 'PUT', `/api/v1/tasks/7/files/${n}`, { key: sender, body: n })).status).toBe(201);
    expect((await request(url, 'PUT', '/api/v1/tasks/7/files/c', { key: sender, body: 'c' })).status).toBe(409);
    // Replacing an existing file is still allowed, and other tasks are counted apart.
    expect((await request(url, 'PUT', '/api/v1/tasks/7/files/a', { key: sender, body: 'a2' })).status).toBe(201);
    expect((await request(url, 'PUT', '/api/v1/tasks/8/files/c', { key: sender, body: 'c' })).status).toBe(201);
    expect(f.diskFiles().stored).toHaveLength(3);
  });

  it('answers reader paths with bad sender or file names with 400, unknown files with 404', async () => {
    const { url, reader } = await start();
    expect((await request(url, 'GET', '/api/v1/tasks/7/files/..%2Fx/a', { key: reader })).status).toBe(400);
    expect((await request(url, 'GET', '/api/v1/tasks/7/files/hospital-a/..', { key: reader })).status).toBe(400);
    expect((await request(url, 'GET', '/api/v1/tasks/7/files/hospital-a/nope', { key: reader })).status).toBe(404);
    expect((await request(url, 'DELETE', '/api/v1/tasks/7/files/hospital-a/nope', { key: reader })).status).toBe(404);
  });

  it('never writes a key or token into its log', async () => {
    const { f, url, sender, reader } = await start();
    await request(url, 'PUT', '/api/v1/tasks/7/files/a.bin', { key: sender, body: 'x' });
    await request(url, 'GET', '/api/v1/tasks/7/files', { key: reader });
    await request(url, 'GET', '/api/v1/tasks/7/files', { key: 'pht_fsreader_' + 'B'.repeat(43) });
    const text = JSON.stringify(f.lines);
    expect(text).toContain('file received');
    for (const secret of [sender, reader, 'BBBBBBBB']) expect(text).not.toContain(secret);
  });
});

describe('file service: the public key', () => {
  it('answers 404 until a key exists, then serves the key file beside the private key', async () => {
    const { f, url } = await start();
    expect((await request(url, 'GET', '/api/v1/public-key')).status).toBe(404);
    const { createKeyFiles } = await import('../../shared/crypto/index.js');
    const key = createKeyFiles(f.config.keyFile);
    expect(fs.statSync(f.config.keyFile).mode & 0o777).toBe(0o600);
    expect(path.dirname(f.config.keyFile)).toBe(path.join(f.dataDir, 'keys'));
    const r = (await request(url, 'GET', '/api/v1/public-key')).json();
    expect(r.fingerprint).toBe(key.publicKey.fingerprint);
    expect(r.rotations).toEqual([]);
    expect(JSON.stringify(r)).not.toContain(String(key.x25519.export({ format: 'jwk' }).d));
  });
});
