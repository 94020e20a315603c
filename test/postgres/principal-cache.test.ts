/**
 * Every registry process caches authenticated keys for a few seconds. On PostgreSQL a key revoked
 * anywhere (another registry process, `node master revoke` as its own process, plain SQL) must be
 * refused by every process at its next request: a trigger (migration 0007) notifies them all, and
 * while a process's LISTEN connection is down its cache is not trusted.
 */
import fs from 'node:fs';
import pg from 'pg';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { freshSchema } from '../helpers/postgres.js';
import { startTestRegistry, type TestRegistry } from '../helpers/registry-fixture.js';
import {
  capturingLogger,
  ensureBuilt,
  ResearcherClient,
  runMaster,
  SiteClient,
  type LoggedLine,
} from '../master/helpers.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

// `node master revoke` runs from dist/.
beforeAll(() => ensureBuilt(), 180_000);

const cleanup: (() => Promise<void>)[] = [];
const logged: LoggedLine[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
  // Losing the LISTEN connection is a warning; nothing here may log an error.
  expect(logged.splice(0).filter((l) => l.level === 'error')).toEqual([]);
});

interface Pair {
  a: TestRegistry;
  b: TestRegistry;
  url: string;
  schema: string;
  dataDir: string;
  /** A connection of the test's own (plain SQL, cutting connections). */
  sql: pg.Client;
}

/** Two registries (own pools, own LISTEN connections, own caches) on one fresh schema. */
async function pair(): Promise<Pair> {
  const s = await freshSchema(inject('postgresUrl'));
  cleanup.push(() => s.drop());
  const dataDir = makeTempDir('pht-pcache-');
  cleanup.push(async () => fs.rmSync(dataDir, { recursive: true, force: true }));
  const regs: TestRegistry[] = [];
  for (let i = 0; i < 2; i++) {
    const r = await startTestRegistry(
      { database: s.url, databasePoolSize: 4 },
      { dataDir, logger: capturingLogger(logged) },
    );
    cleanup.push(() => r.close());
    regs.push(r);
  }
  const sql = new pg.Client({ connectionString: s.url });
  await sql.connect();
  cleanup.push(() => sql.end());
  return { a: regs[0]!, b: regs[1]!, url: s.url, schema: s.name, dataDir, sql };
}

async function me(site: SiteClient): Promise<number> {
  return (await site.get('/api/v1/site/me')).status;
}

async function waitUntil(check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('the principal cache on PostgreSQL', () => {
  it('refuses a key on one process at its next request once an admin disabled it through another', async () => {
    const { a, b } = await pair();
    const key = await a.createSite('site-a');
    const admin = new ResearcherClient(a.url, await a.createUser('root', 'admin'));
    const onB = new SiteClient(b.url, key, 'site-a');
    // b now holds the key in its cache (3 s): without the notification it would keep accepting it.
    expect(await me(onB)).toBe(200);
    expect(await me(onB)).toBe(200);
    await admin.post('/api/v1/admin/sites/site-a/disable').expect(200);
    // 403: the key is known and disabled (a cached enabled entry would answer 200).
    expect(await me(onB)).toBe(403);
  });

  it('refuses a key on a running registry at its next request once `node master revoke` disabled it', async () => {
    const { a, b, url, dataDir } = await pair();
    const key = await a.createSite('site-a');
    const onA = new SiteClient(a.url, key, 'site-a');
    const onB = new SiteClient(b.url, key, 'site-a');
    expect(await me(onA)).toBe(200);
    expect(await me(onB)).toBe(200);
    const cli = await runMaster(['revoke', 'site', 'site-a', '--data-dir', dataDir, '--database', url]);
    expect(cli).toMatchObject({ code: 0, stderr: '' });
    expect(await me(onA)).toBe(403);
    expect(await me(onB)).toBe(403);
  });

  it('refuses the old key everywhere once its key is replaced by plain SQL', async () => {
    const { a, b, sql } = await pair();
    const key = await a.createSite('site-a');
    const onB = new SiteClient(b.url, key, 'site-a');
    expect(await me(onB)).toBe(200);
    // What an operator's hand-written statement does: no registry code runs, the trigger still fires.
    await sql.query(`UPDATE principals SET key_hash = 'replaced' WHERE name = 'site-a'`);
    expect(await me(onB)).toBe(401);
  });

  it('keeps answering from the cache while nothing changes (last_seen updates do not empty it)', async () => {
    const { a, b, sql } = await pair();
    const key = await a.createSite('site-a');
    const onB = new SiteClient(b.url, key, 'site-a');
    expect(await me(onB)).toBe(200);
    // A change the cache must not see: the key's row is gone from the database, yet b answers
    // from memory. Had the trigger fired on last_seen (written by every request), or had the
    // cache been off, this would be a 401.
    await sql.query('ALTER TABLE principals DISABLE TRIGGER USER');
    await sql.query(`UPDATE principals SET key_hash = 'replaced' WHERE name = 'site-a'`);
    await sql.query('ALTER TABLE principals ENABLE TRIGGER USER');
    await sql.query(`UPDATE principals SET last_seen = now() WHERE name = 'site-a'`);
    expect(await me(onB)).toBe(200);
  });

  it('does not trust its cache while its LISTEN connection is down, nor after it is back', async () => {
    const { a, b, schema, sql } = await pair();
    const key = await a.createSite('site-a');
    const onB = new SiteClient(b.url, key, 'site-a');
    expect(await me(onB)).toBe(200);
    // Cut both listeners (as a database restart would) and revoke with plain SQL once they are
    // gone: the notification reaches nobody. Whether b's next request comes while its listener is
    // still down (cache bypassed) or after it is back (cache emptied on its return), it must read
    // the database. test/master/principal-cache.test.ts pins each of the two on its own.
    const cut = await sql.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [
      `pht-events pht_events_${schema}`,
    ]);
    expect(cut.rowCount).toBe(2);
    await waitUntil(() => logged.filter((l) => l.message.includes('lost the connection that listens')).length === 2);
    await sql.query(`UPDATE principals SET enabled = FALSE WHERE name = 'site-a'`);
    expect(await me(onB)).toBe(403);
    expect(await me(new SiteClient(a.url, key, 'site-a'))).toBe(403);
  });
});
