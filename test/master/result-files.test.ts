import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { eventually, expectApiError, world, type World } from './helpers.js';

const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

async function runningRun(w: World): Promise<number> {
  await w.researcher.createTask({ sites: ['site-a'] });
  return (await w.sites[0]!.claimAndStart()).id;
}

/** How many files the registry keeps on disk, finished or in progress. */
function filesOnDisk(w: World): number {
  return (
    fs.readdirSync(path.join(w.reg.dataDir, 'files')).length +
    fs.readdirSync(path.join(w.reg.dataDir, 'files-tmp')).length
  );
}

/** Downloads a result file as raw bytes. */
function download(w: World, runId: number, name: string) {
  return w.researcher
    .get(`/api/v1/runs/${runId}/files/${name}`)
    .buffer(true)
    .parse((res, done) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => done(null, Buffer.concat(chunks)));
    });
}

/**
 * A PUT whose path goes on the wire exactly as given (no URL normalisation) and whose body is
 * streamed in chunks without a Content-Length.
 */
function rawPut(
  url: string,
  key: string,
  path: string,
  chunks: Buffer[],
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        hostname,
        port,
        path,
        method: 'PUT',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream', ...headers },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : null }));
      },
    );
    req.on('error', reject);
    Readable.from(chunks).pipe(req);
  });
}

describe('result files', () => {
  it('stores an upload and hands back identical bytes with their size and sha256', async () => {
    const w = await world({ siteCount: 1 });
    const runId = await runningRun(w);
    const bytes = crypto.randomBytes(300_000);
    const res = await w.sites[0]!.upload(runId, 'counts.bin', bytes).expect(201);
    expect(res.body).toEqual({ name: 'counts.bin', size: bytes.length, sha256: sha256(bytes) });

    const list = await w.researcher.get(`/api/v1/runs/${runId}/files`).expect(200);
    expect(list.body).toEqual([{ name: 'counts.bin', size: bytes.length, sha256: sha256(bytes) }]);

    const got = await download(w, runId, 'counts.bin').expect(200);
    expect(got.headers['content-type']).toBe('application/octet-stream');
    expect(got.headers['x-content-sha256']).toBe(sha256(bytes));
    expect(Buffer.compare(got.body as Buffer, bytes)).toBe(0);
  });

  it('streams an upload sent in chunks without a Content-Length', async () => {
    const w = await world({ siteCount: 1 });
    const runId = await runningRun(w);
    const chunks = Array.from({ length: 20 }, () => crypto.randomBytes(10_000));
    const res = await rawPut(w.reg.url, w.sites[0]!.key!, `/api/v1/site/runs/${runId}/files/chunked.bin`, chunks);
    expect(res.status).toBe(201);
    const all = Buffer.concat(chunks);
    expect(res.body).toEqual({ name: 'chunked.bin', size: all.length, sha256: sha256(all) });
    expect(Buffer.compare((await download(w, runId, 'chunked.bin').expect(200)).body as Buffer, all)).toBe(0);
  });

  it('keeps nested names like a/b.csv, lists files by name, and stores empty files', async () => {
    const w = await world({ siteCount: 1 });
    const runId = await runningRun(w);
    await w.sites[0]!.upload(runId, 'tables/by-age/b.csv', Buffer.from('age,n\n40,3\n')).expect(201);
    await w.sites[0]!.upload(runId, 'a.txt', Buffer.from('hello')).expect(201);
    await w.sites[0]!.upload(runId, 'empty', Buffer.alloc(0)).expect(201);
    const list = await w.researcher.get(`/api/v1/runs/${runId}/files`).expect(200);
    expect(list.body.map((f: { name: string; size: number }) => [f.name, f.size])).toEqual([
      ['a.txt', 5],
      ['empty', 0],
      ['tables/by-age/b.csv', 11],
    ]);
    const got = await download(w, runId, 'tables/by-age/b.csv').expect(200);
    expect((got.body as Buffer).toString()).toBe('age,n\n40,3\n');
    expect(got.headers['content-disposition']).toBe('attachment; filename="b.csv"');
    expect(((await download(w, runId, 'empty').expect(200)).body as Buffer).length).toBe(0);
  });

  it('stores a file sent as application/json as its raw bytes, not as a parsed body', async () => {
    const w = await world({ siteCount: 1 });
    const runId = await runningRun(w);
    const bytes = Buffer.from('{"patients": 42,\n "note": "kept byte for byte"}\n');
    const json = { 'content-type': 'application/json' };
    const res = await rawPut(
      w.reg.url,
      w.sites[0]!.key!,
      `/api/v1/site/runs/${runId}/files/result.json`,
      [bytes],
      json,
    );
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body).toEqual({ name: 'result.json', size: bytes.length, sha256: sha256(bytes) });
    expect(Buffer.compare((await download(w, runId, 'result.json').expect(200)).body as Buffer, bytes)).toBe(0);
    // Not JSON at all, and larger than a JSON body may be, but labelled JSON: still just bytes.
    const big = Buffer.concat([Buffer.from('not json {'), Buffer.alloc(2 * 1024 * 1024, 0x41)]);
    expect(
      (await rawPut(w.reg.url, w.sites[0]!.key!, `/api/v1/site/runs/${runId}/files/broken.json`, [big], json)).status,
    ).toBe(201);
  });

  it('keeps nothing of an upload the site cut off half way, and takes the retry', async () => {
    const w = await world({ siteCount: 1 });
    const runId = await runningRun(w);
    const { hostname, port } = new URL(w.reg.url);
    await new Promise<void>((resolve) => {
      const req = http.request({
        hostname,
        port,
        method: 'PUT',
        path: `/api/v1/site/runs/${runId}/files/cut.bin`,
        headers: {
          authorization: `Bearer ${w.sites[0]!.key}`,
          'content-type': 'application/octet-stream',
          'content-length': '100000',
        },
      });
      req.on('error', () => resolve());
      req.write(Buffer.alloc(40_000), () => req.destroy());
    });
    // The registry notices the hang-up asynchronously: a later upload of the same name wins.
    const bytes = Buffer.from('complete\n');
    await w.sites[0]!.upload(runId, 'cut.bin', bytes).expect(201);
    expect((await w.researcher.get(`/api/v1/runs/${runId}/files`).expect(200)).body).toEqual([
      { name: 'cut.bin', size: bytes.length, sha256: sha256(bytes) },
    ]);
    expect(Buffer.compare((await download(w, runId, 'cut.bin').expect(200)).body as Buffer, bytes)).toBe(0);
    // No half file is left on disk, in the store or in its temporary folder.
    await eventually(
      () => Promise.resolve(filesOnDisk(w)),
      (n) => n === 1,
      'the cut-off upload to be cleaned up',
    );
  });

  it('replaces a file uploaded twice while the run is running', async () => {
    const w = await world({ siteCount: 1 });
    const runId = await runningRun(w);
    await w.sites[0]!.upload(runId, 'out.csv', Buffer.from('first')).expect(201);
    await w.sites[0]!.upload(runId, 'out.csv', Buffer.from('second!')).expect(201);
    const list = await w.researcher.get(`/api/v1/runs/${runId}/files`).expect(200);
    expect(list.body).toEqual([{ name: 'out.csv', size: 7, sha256: sha256(Buffer.from('second!')) }]);
    expect(((await download(w, runId, 'out.csv').expect(200)).body as Buffer).toString()).toBe('second!');
    expect(filesOnDisk(w)).toBe(1);
  });

  it.each([
    ['a parent segment', '/api/v1/site/runs/RUN/files/a/%2E%2E/b.csv'],
    ['a leading parent segment', '/api/v1/site/runs/RUN/files/%2E%2E/etc/passwd'],
    ['a current-folder segment', '/api/v1/site/runs/RUN/files/./b.csv'],
    ['an empty name', '/api/v1/site/runs/RUN/files/'],
    ['an empty segment', '/api/v1/site/runs/RUN/files/a//b.csv'],
    ['a space', '/api/v1/site/runs/RUN/files/a%20b.csv'],
    ['a backslash', '/api/v1/site/runs/RUN/files/a%5Cb.csv'],
    ['a non-ASCII letter', '/api/v1/site/runs/RUN/files/%C3%A9.csv'],
    ['a NUL byte', '/api/v1/site/runs/RUN/files/a%00.csv'],
    ['a broken escape', '/api/v1/site/runs/RUN/files/a%ZZ.csv'],
    ['a colon', '/api/v1/site/runs/RUN/files/c:x.csv'],
  ])('refuses a file name with %s (400) and stores nothing', async (_what, path) => {
    const w = await world({ siteCount: 1 });
    const runId = await runningRun(w);
    const res = await rawPut(w.reg.url, w.sites[0]!.key!, path.replace('RUN', String(runId)), [Buffer.from('x')]);
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expect(res.body.code).toBe('bad_request');
    expect((await w.researcher.get(`/api/v1/runs/${runId}/files`).expect(200)).body).toEqual([]);
  });

  it('refuses a file name that is too long or too deep (400)', async () => {
    const w = await world({ siteCount: 1 });
    const runId = await runningRun(w);
    expectApiError(await w.sites[0]!.upload(runId, 'x'.repeat(256), Buffer.from('x')), 400, 'bad_request');
    expectApiError(
      await w.sites[0]!.upload(runId, Array(17).fill('d').join('/'), Buffer.from('x')),
      400,
      'bad_request',
    );
  });

  it('refuses a file above the configured limit (413) whether its length is declared or not', async () => {
    const w = await world({ siteCount: 1, overrides: { limits: { resultFileBytes: 1000 } } });
    const runId = await runningRun(w);
    await w.sites[0]!.upload(runId, 'fits.bin', Buffer.alloc(1000, 1)).expect(201);
    expectApiError(await w.sites[0]!.upload(runId, 'big.bin', Buffer.alloc(1001, 1)), 413, 'payload_too_large');
    const streamed = await rawPut(w.reg.url, w.sites[0]!.key!, `/api/v1/site/runs/${runId}/files/big2.bin`, [
      Buffer.alloc(600),
      Buffer.alloc(600),
    ]);
    expect(streamed.status).toBe(413);
    expect(streamed.body.code).toBe('payload_too_large');
    const list = await w.researcher.get(`/api/v1/runs/${runId}/files`).expect(200);
    expect(list.body.map((f: { name: string }) => f.name)).toEqual(['fits.bin']);
    expect(filesOnDisk(w)).toBe(1);
  });

  it('leaves no stray file on disk when a streamed upload is refused at its first chunk', async () => {
    const w = await world({ siteCount: 1, overrides: { limits: { resultFileBytes: 1000 } } });
    const runId = await runningRun(w);
    for (let i = 0; i < 5; i++) {
      const res = await rawPut(w.reg.url, w.sites[0]!.key!, `/api/v1/site/runs/${runId}/files/big${i}.bin`, [
        Buffer.alloc(5000),
      ]);
      expect(res.status).toBe(413);
    }
    // A complete upload afterwards: its own disk work runs after any the refused ones started.
    await w.sites[0]!.upload(runId, 'ok.bin', Buffer.from('ok')).expect(201);
    expect(filesOnDisk(w)).toBe(1);
  });

  it('refuses more bytes per run than runResultBytes, and more files than filesPerRun (413)', async () => {
    const w = await world({ siteCount: 1, overrides: { limits: { runResultBytes: 1500, filesPerRun: 3 } } });
    const runId = await runningRun(w);
    await w.sites[0]!.upload(runId, 'a', Buffer.alloc(1000)).expect(201);
    expectApiError(await w.sites[0]!.upload(runId, 'b', Buffer.alloc(501)), 413, 'payload_too_large');
    await w.sites[0]!.upload(runId, 'b', Buffer.alloc(500)).expect(201);
    // Replacing a file counts its new size, not both.
    await w.sites[0]!.upload(runId, 'a', Buffer.alloc(900)).expect(201);
    await w.sites[0]!.upload(runId, 'c', Buffer.alloc(0)).expect(201);
    expectApiError(await w.sites[0]!.upload(runId, 'd', Buffer.alloc(0)), 413, 'payload_too_large');
  });

  it('accepts the same bytes again after the run finished, and refuses different bytes (409)', async () => {
    const w = await world({ siteCount: 1 });
    const runId = await runningRun(w);
    const bytes = Buffer.from('n\n42\n');
    await w.sites[0]!.upload(runId, 'out.csv', bytes).expect(201);
    await w.sites[0]!.finish(runId, { state: 'completed', exitCode: 0 });

    const again = await w.sites[0]!.upload(runId, 'out.csv', bytes);
    expect([200, 201]).toContain(again.status);
    expectApiError(await w.sites[0]!.upload(runId, 'out.csv', Buffer.from('n\n43\n')), 409, 'conflict');
    expectApiError(await w.sites[0]!.upload(runId, 'new.csv', bytes), 409, 'conflict');

    expect((await w.researcher.get(`/api/v1/runs/${runId}/files`).expect(200)).body).toEqual([
      { name: 'out.csv', size: bytes.length, sha256: sha256(bytes) },
    ]);
    expect(Buffer.compare((await download(w, runId, 'out.csv').expect(200)).body as Buffer, bytes)).toBe(0);
    // Neither the harmless copy nor the refused one is kept.
    expect(filesOnDisk(w)).toBe(1);
  });

  it('refuses uploads before the run has started (409)', async () => {
    const w = await world({ siteCount: 1 });
    const task = await w.researcher.createTask();
    expectApiError(await w.sites[0]!.upload(task.runs[0]!.id, 'early.csv', Buffer.from('x')), 409, 'conflict');
    const run = await w.sites[0]!.claim();
    expectApiError(await w.sites[0]!.upload(run.id, 'early.csv', Buffer.from('x')), 409, 'conflict');
  });

  it('answers 404 for a file that does not exist', async () => {
    const w = await world({ siteCount: 1 });
    const runId = await runningRun(w);
    expectApiError(await w.researcher.get(`/api/v1/runs/${runId}/files/missing.csv`), 404, 'not_found');
  });
});

describe('run logs', () => {
  it('returns appended text in order as plain text', async () => {
    const w = await world({ siteCount: 1 });
    const runId = await runningRun(w);
    const lines = Array.from({ length: 50 }, (_, i) => `line ${i} ünïcødé\n`);
    for (const line of lines) await w.sites[0]!.log(runId, line);
    await w.sites[0]!.log(runId, '');
    const res = await w.researcher.get(`/api/v1/runs/${runId}/log`).expect(200);
    expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(res.text).toBe(lines.join(''));
    expect((await w.researcher.run(runId)).logBytes).toBe(Buffer.byteLength(lines.join('')));
  });

  it('answers an empty log for a run that has logged nothing', async () => {
    const w = await world({ siteCount: 1 });
    const task = await w.researcher.createTask();
    expect((await w.researcher.get(`/api/v1/runs/${task.runs[0]!.id}/log`).expect(200)).text).toBe('');
  });

  it('caps the log at limits.logBytes, ends it with a truncation marker and drops later lines', async () => {
    const w = await world({ siteCount: 1, overrides: { limits: { logBytes: 1024 } } });
    const runId = await runningRun(w);
    const line = `${'x'.repeat(99)}\n`;
    for (let i = 0; i < 15; i++) await w.sites[0]!.log(runId, line);
    await w.sites[0]!.log(runId, 'after the cap\n');
    const text = (await w.researcher.get(`/api/v1/runs/${runId}/log`).expect(200)).text;
    const marker = '\n[log truncated: the registry keeps at most 1024 bytes per run]\n';
    expect(text.endsWith(marker)).toBe(true);
    const kept = text.slice(0, -marker.length);
    expect(Buffer.byteLength(kept)).toBe(1024);
    expect(kept).toBe(line.repeat(15).slice(0, 1024));
    expect(text).not.toContain('after the cap');
    expect((await w.researcher.run(runId)).logBytes).toBe(1024);
  });

  it('never cuts a multi-byte character in half at the cap', async () => {
    const w = await world({ siteCount: 1, overrides: { limits: { logBytes: 1024 } } });
    const runId = await runningRun(w);
    await w.sites[0]!.log(runId, 'é'.repeat(1000));
    const text = (await w.researcher.get(`/api/v1/runs/${runId}/log`).expect(200)).text;
    expect(text).not.toContain('\uFFFD');
    expect(text.startsWith('é'.repeat(512))).toBe(true);
  });
});
