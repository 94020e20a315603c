/**
 * Several registry processes on one PostgreSQL database: what must hold across processes that a
 * single SQLite registry got for free. Each "process" is a registry with its own connection pool,
 * event bus and HTTP server; they share a schema and a result files directory.
 */
import fs from 'node:fs';
import pg from 'pg';
import type request from 'supertest';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { readMigrations, MIGRATIONS_DIR } from '../../master/store/migrate.js';
import { POSTGRES_MIGRATIONS_DIR } from '../../master/store/postgres-migrate.js';
import { PostgresRegistryStore } from '../../master/store/postgres-store.js';
import type { RunAssignment, Task } from '../../shared/types.js';
import { freshSchema, type TestSchema } from '../helpers/postgres.js';
import { startTestRegistry, type TestRegistry } from '../helpers/registry-fixture.js';
import { capturingLogger, IMAGE, ResearcherClient, SiteClient, type LoggedLine } from '../master/helpers.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

const cleanup: (() => Promise<void>)[] = [];
const logged: LoggedLine[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
  expect(logged.splice(0).filter((l) => l.level === 'error')).toEqual([]);
});

async function schema(): Promise<TestSchema> {
  const s = await freshSchema(inject('postgresUrl'));
  cleanup.push(() => s.drop());
  return s;
}

let lastSchema = '';

/** `count` registries on one fresh schema and one shared files directory. */
async function cluster(count: number, overrides: Record<string, unknown> = {}): Promise<TestRegistry[]> {
  const s = await schema();
  lastSchema = s.name;
  const dataDir = makeTempDir('pht-multi-');
  cleanup.push(async () => fs.rmSync(dataDir, { recursive: true, force: true }));
  const registries: TestRegistry[] = [];
  for (let i = 0; i < count; i++) {
    const r = await startTestRegistry(
      { database: s.url, databasePoolSize: 4, ...overrides },
      { dataDir, logger: capturingLogger(logged) },
    );
    cleanup.push(() => r.close());
    registries.push(r);
  }
  return registries;
}

describe('PostgreSQL migrations', () => {
  it('mirror the SQLite migrations number for number and name for name', () => {
    const names = (dir: string) => readMigrations(dir).map((m) => m.name);
    expect(names(POSTGRES_MIGRATIONS_DIR)).toEqual(names(MIGRATIONS_DIR));
    expect(names(MIGRATIONS_DIR).length).toBeGreaterThan(0);
  });

  it('are applied once when several registries open a new database at the same moment', async () => {
    const s = await schema();
    const stores = await Promise.all(
      Array.from({ length: 4 }, () => PostgresRegistryStore.open({ connectionString: s.url, poolSize: 1 })),
    );
    cleanup.push(async () => void (await Promise.all(stores.map((st) => st.close()))));
    const { rows } = await stores[0]!.pool.query<{ version: number; n: number }>(
      'SELECT version, COUNT(*)::int AS n FROM schema_migrations GROUP BY version ORDER BY version',
    );
    expect(rows).toEqual(readMigrations(POSTGRES_MIGRATIONS_DIR).map((m) => ({ version: m.version, n: 1 })));
  });
});

describe('several registry processes on one database', () => {
  it('hand out every run exactly once to pollers spread over three processes', async () => {
    const regs = await cluster(3);
    const site = await regs[0]!.createSite('site-a');
    const researcher = new ResearcherClient(regs[1]!.url, await regs[1]!.createUser('alice'));
    const posted: number[] = [];
    for (let i = 0; i < 40; i++) {
      const res = await researcher.post('/api/v1/tasks', { image: IMAGE, config: { i }, sites: ['site-a'] });
      expect(res.status).toBe(201);
      posted.push((res.body as Task).runs[0]!.id);
    }
    // Twelve pollers, four per process, claim until the queue is empty.
    const claimed: number[] = [];
    await Promise.all(
      regs.flatMap((r) =>
        Array.from({ length: 4 }, async () => {
          const poller = new SiteClient(r.url, site, 'site-a');
          for (;;) {
            const res = await poller.get('/api/v1/site/runs/next');
            if (res.status === 204) return;
            expect(res.status).toBe(200);
            claimed.push((res.body as RunAssignment).id);
          }
        }),
      ),
    );
    expect(claimed.length).toBe(posted.length);
    expect([...claimed].sort((a, b) => a - b)).toEqual(posted);
  });

  it('ends a task whose runs finish at the same moment on different processes', async () => {
    const regs = await cluster(3);
    const names = ['site-a', 'site-b', 'site-c', 'site-d', 'site-e', 'site-f'];
    const sites = await Promise.all(
      names.map(async (n, i) => new SiteClient(regs[i % 3]!.url, await regs[0]!.createSite(n), n)),
    );
    const researcher = new ResearcherClient(regs[0]!.url, await regs[0]!.createUser('alice'));
    for (let round = 0; round < 5; round++) {
      const task = await researcher.createTask({ sites: names });
      const runs = await Promise.all(sites.map((s) => s.claimAndStart()));
      await Promise.all(sites.map((s, i) => s.finish(runs[i]!.id, { state: 'completed', exitCode: 0 })));
      expect((await researcher.task(task.id)).status).toBe('completed');
    }
  });

  it('requeues an expired lease once although every process sweeps', async () => {
    const regs = await cluster(3, { lease: '300ms', sweepInterval: '50ms' });
    const key = await regs[0]!.createSite('site-a');
    const researcher = new ResearcherClient(regs[0]!.url, await regs[0]!.createUser('alice'));
    await researcher.createTask({ sites: ['site-a'] });
    const site = new SiteClient(regs[2]!.url, key, 'site-a');
    const first = await site.claim();
    // The next claim waits for the sweep that puts the run back; only one sweep may count it.
    const again = await site.get('/api/v1/site/runs/next?wait=20').expect(200);
    expect(again.body).toMatchObject({ id: first.id, attempt: 2 });
  });
});

describe('wake-ups across registry processes', () => {
  it('wakes a site’s long poll on one process when a task for it is posted on another', async () => {
    const [a, b] = await cluster(2);
    const site = new SiteClient(a!.url, await a!.createSite('site-a'), 'site-a');
    const researcher = new ResearcherClient(b!.url, await b!.createUser('alice'));
    const poll = send(site.get('/api/v1/site/runs/next?wait=60'));
    // Post only once the poll is waiting, or the test would pass without any wake-up.
    await waitUntil(() => a!.events.waiting().sites === 1);
    const task = await researcher.createTask({ sites: ['site-a'] });
    const started = Date.now();
    const res = await poll;
    expect(res.status).toBe(200);
    expect(res.body.id).toBe(task.runs[0]!.id);
    // Far less than the 60 s wait: it was the notification, not the timeout, that answered.
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it('answers a task wait and an event stream on one process when the run finishes on another', async () => {
    const [a, b] = await cluster(2);
    const site = new SiteClient(b!.url, await a!.createSite('site-a'), 'site-a');
    const researcher = new ResearcherClient(a!.url, await a!.createUser('alice'));
    const task = await researcher.createTask({ sites: ['site-a'] });
    const run = await site.claimAndStart();
    const wait = send(researcher.get(`/api/v1/tasks/${task.id}/wait?timeout=60`));
    const stream = readEvents(`${a!.url}/api/v1/tasks/${task.id}/events`, researcher.key!);
    await waitUntil(() => a!.events.waiting().tasks === 2);
    await site.finish(run.id, { state: 'completed', exitCode: 0 });
    const res = await wait;
    expect(res.body).toMatchObject({ id: task.id, status: 'completed', done: true });
    const statuses = (await stream).map((t) => t.status);
    expect(statuses.at(-1)).toBe('completed');
  });

  it('wakes waiters after the listening connection is cut and comes back', async () => {
    const [a, b] = await cluster(2);
    const site = new SiteClient(a!.url, await a!.createSite('site-a'), 'site-a');
    const researcher = new ResearcherClient(b!.url, await b!.createUser('alice'));
    // Cut a's LISTEN connection from the server side, as a database restart would.
    const admin = new pg.Client({ connectionString: inject('postgresUrl') });
    await admin.connect();
    cleanup.push(() => admin.end());
    const poll = send(site.get('/api/v1/site/runs/next?wait=60'));
    await waitUntil(() => a!.events.waiting().sites === 1);
    const listeners = `pht-events pht_events_${lastSchema}`;
    const cut = await admin.query(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1',
      [listeners],
    );
    expect(cut.rowCount).toBe(2);
    // Posted while the listeners are (most likely) down: the notification is lost, and only the
    // wake-up after reconnecting answers the poll before its 60 s are over.
    await researcher.createTask({ sites: ['site-a'] });
    expect((await poll).status).toBe(200);
  });
});

/** supertest sends a request only once it is awaited: start it now. */
function send(t: request.Test): Promise<request.Response> {
  return new Promise((resolve, reject) => {
    t.then(resolve, reject);
  });
}

async function waitUntil(check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Reads server-sent `task` events until the stream ends. */
async function readEvents(url: string, token: string): Promise<Task[]> {
  const res = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
  const text = await res.text();
  return text
    .split('\n')
    .filter((l) => l.startsWith('data: '))
    .map((l) => JSON.parse(l.slice(6)) as Task);
}
