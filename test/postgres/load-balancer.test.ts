/**
 * Three registries on one PostgreSQL database behind nginx, run from deploy/nginx/pht-registry.conf:
 * long polls, event streams and uploads pass through it as they would reach one registry.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Task } from '../../shared/types.js';
import { freePort, startNginx, type RunningNginx } from '../helpers/nginx.js';
import { freshSchema, type TestSchema } from '../helpers/postgres.js';
import { startTestRegistry, type TestRegistry } from '../helpers/registry-fixture.js';
import { capturingLogger, IMAGE, type LoggedLine } from '../master/helpers.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

describe('three registries behind nginx', () => {
  let schema: TestSchema;
  let dataDir: string;
  let regs: TestRegistry[] = [];
  let nginx: RunningNginx;
  const logged: LoggedLine[] = [];
  let siteKey: string;
  let token: string;

  beforeAll(async () => {
    schema = await freshSchema(inject('postgresUrl'));
    dataDir = makeTempDir('pht-lb-');
    for (let i = 0; i < 3; i++)
      regs.push(
        await startTestRegistry(
          { database: schema.url, databasePoolSize: 4 },
          { dataDir, logger: capturingLogger(logged) },
        ),
      );
    nginx = await startNginx(
      await freePort(),
      regs.map((r) => r.port),
    );
    siteKey = await regs[0]!.createSite('site-a');
    token = await regs[0]!.createUser('alice');
  }, 60_000);

  afterAll(async () => {
    await nginx?.stop();
    for (const r of regs) await r.close();
    regs = [];
    fs.rmSync(dataDir, { recursive: true, force: true });
    await schema?.drop();
    expect(logged.filter((l) => l.level === 'error')).toEqual([]);
  });

  const call = (key: string, route: string, init: RequestInit = {}) =>
    fetch(`${nginx.url}/api/v1${route}`, {
      ...init,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...init.headers },
    });
  const postTask = async (site = 'site-a') => {
    const res = await call(token, '/tasks', {
      method: 'POST',
      body: JSON.stringify({ image: IMAGE, config: {}, sites: [site] }),
    });
    expect(res.status).toBe(201);
    return (await res.json()) as Task;
  };

  it('keeps a long poll open across the balancer and answers it when a task is posted', async () => {
    const poll = call(siteKey, '/site/runs/next?wait=60');
    // The poll waits at one of the three registries; the task is posted through another.
    const until = Date.now() + 15_000;
    while (regs.reduce((n, r) => n + r.events.waiting().sites, 0) === 0 && Date.now() < until)
      await new Promise((r) => setTimeout(r, 10));
    const task = await postTask();
    const res = await poll;
    expect(res.status).toBe(200);
    expect(((await res.json()) as { id: number }).id).toBe(task.runs[0]!.id);
  });

  it('streams task events through the balancer as they happen, not when the stream ends', async () => {
    const task = await postTask();
    const res = await call(token, `/tasks/${task.id}/events`);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = res.body!.getReader();
    // The first event arrives while the task is still queued: nginx does not buffer the stream.
    const first = await reader.read();
    expect(Buffer.from(first.value!).toString()).toMatch(/^event: task\ndata: .*"status":"queued"/);
    await reader.cancel();
  });

  it('streams a 24 MB upload through to the registry and serves it back from every process', async () => {
    const uploader = await regs[0]!.createSite('site-up');
    const task = await postTask('site-up');
    const claim = await call(uploader, '/site/runs/next');
    const run = (await claim.json()) as { id: number };
    expect(run.id).toBe(task.runs[0]!.id);
    expect((await call(uploader, `/site/runs/${run.id}/start`, { method: 'POST', body: '{}' })).status).toBe(200);
    const bytes = crypto.randomBytes(24 * 1024 * 1024);
    const put = await call(uploader, `/site/runs/${run.id}/files/big.bin`, {
      method: 'PUT',
      body: bytes,
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(put.status).toBe(201);
    const sha = crypto.createHash('sha256').update(bytes).digest('hex');
    expect(((await put.json()) as { sha256: string }).sha256).toBe(sha);
    // Each process reads the shared files directory: the bytes are the same whichever answers.
    for (const r of regs) {
      const res = await fetch(`${r.url}/api/v1/runs/${run.id}/files/big.bin`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(res.status).toBe(200);
      expect(
        crypto
          .createHash('sha256')
          .update(Buffer.from(await res.arrayBuffer()))
          .digest('hex'),
      ).toBe(sha);
    }
  });

  it('goes on answering through the balancer while one registry is down', async () => {
    await regs[1]!.close();
    for (let i = 0; i < 9; i++) expect((await call(token, '/tasks?limit=1')).status).toBe(200);
    expect((await postTask()).runs).toHaveLength(1);
  });
});
