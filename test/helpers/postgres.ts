/**
 * PostgreSQL for tests: a throwaway cluster on loopback (Debian's server binaries, no systemd),
 * and a fresh schema per test registry inside one shared database.
 */
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { makeTempDir } from './temp-dirs.js';

const run = promisify(execFile);

/** The environment variable that gives the tests a PostgreSQL server (an admin URL). */
export const TEST_DATABASE_ENV = 'PHT_TEST_DATABASE_URL';
/** Set by the unit-postgres vitest project: the registry suite then runs on PostgreSQL. */
export const TEST_BACKEND_ENV = 'PHT_TEST_BACKEND';

export function testBackend(): 'sqlite' | 'postgres' {
  return process.env[TEST_BACKEND_ENV] === 'postgres' ? 'postgres' : 'sqlite';
}

/** Debian's newest installed server binaries, or null. */
export function postgresBinDir(): string | null {
  const root = '/usr/lib/postgresql';
  if (!fs.existsSync(root)) return null;
  const versions = fs
    .readdirSync(root)
    .filter((v) => fs.existsSync(path.join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? path.join(root, versions[0], 'bin') : null;
}

export interface PostgresCluster {
  /** Superuser URL of the `postgres` database. */
  url: string;
  port: number;
  dir: string;
  /** Stops the server: `fast` is a clean shutdown, `immediate` is a crash (recovery on the next start). */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  start(): Promise<void>;
  /** Stops the server and removes its files. */
  destroy(): Promise<void>;
}

/**
 * initdb + pg_ctl start on 127.0.0.1:`port` with its socket and data in a temp dir. Run as root,
 * the server runs as the `postgres` user (it refuses to run as root).
 */
export async function startPostgresCluster(
  port: number,
  options: { maxConnections?: number } = {},
): Promise<PostgresCluster> {
  const bin = postgresBinDir();
  if (!bin)
    throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install -y postgresql)');
  const dir = makeTempDir('pht-pg-');
  fs.mkdirSync(path.join(dir, 'sock'));
  const asRoot = process.getuid?.() === 0;
  if (asRoot) await run('chown', ['-R', 'postgres:postgres', dir]);
  const sh = (command: string) =>
    asRoot ? run('su', ['postgres', '-s', '/bin/sh', '-c', command]) : run('/bin/sh', ['-c', command]);
  await sh(`${bin}/initdb -D ${dir}/data -U postgres -A trust --no-sync > ${dir}/initdb.log 2>&1`);
  const settings = [
    `-p ${port}`,
    `-k ${dir}/sock`,
    '-c listen_addresses=127.0.0.1',
    `-c max_connections=${options.maxConnections ?? 200}`,
    // A test cluster: durability across an OS crash is not needed, speed is. Commits stay
    // synchronous: the drills crash PostgreSQL itself, and a commit it acknowledged must survive
    // that (with synchronous_commit=off the last acknowledged commits are lost with the server).
    '-c fsync=off',
    '-c full_page_writes=off',
  ].join(' ');
  const start = async () => {
    await sh(`${bin}/pg_ctl -D ${dir}/data -l ${dir}/pg.log -o '${settings}' -w -t 60 start > /dev/null`);
  };
  const stop = async (mode: 'fast' | 'immediate' = 'fast') => {
    await sh(`${bin}/pg_ctl -D ${dir}/data -m ${mode} -w stop > /dev/null`);
  };
  await start();
  let running = true;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dir,
    async stop(mode) {
      await stop(mode);
      running = false;
    },
    async start() {
      await start();
      running = true;
    },
    async destroy() {
      if (running) await stop('immediate').catch(() => undefined);
      running = false;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `url` with another database name. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** `url` whose connections use `schema` (created by the caller) for every unqualified name. */
export function withSchema(url: string, schema: string): string {
  const u = new URL(url);
  u.searchParams.set('options', `-c search_path=${schema}`);
  return u.toString();
}

/** The database every test schema lives in (created once by the global setup). */
export const TEST_DATABASE = 'pht_test';

let admin: pg.Pool | null = null;
function adminPool(baseUrl: string): pg.Pool {
  admin ??= new pg.Pool({ connectionString: withDatabase(baseUrl, TEST_DATABASE), max: 2, allowExitOnIdle: true });
  return admin;
}

export interface TestSchema {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/**
 * A new empty schema in the test database: a registry opened on `url` migrates it from scratch.
 * Schemas cost a few milliseconds where a database per test costs a second.
 */
export async function freshSchema(baseUrl: string): Promise<TestSchema> {
  const schema = `t_${crypto.randomBytes(8).toString('hex')}`;
  const pool = adminPool(baseUrl);
  await pool.query(`CREATE SCHEMA ${schema}`);
  return {
    name: schema,
    url: withSchema(withDatabase(baseUrl, TEST_DATABASE), schema),
    async drop() {
      await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    },
  };
}

/** Creates the test database when missing (several global setups may race: both end well). */
export async function ensureTestDatabase(baseUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: baseUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [TEST_DATABASE]);
    if (rowCount === 0) {
      try {
        await client.query(`CREATE DATABASE ${TEST_DATABASE}`);
      } catch (e) {
        if ((e as { code?: string }).code !== '42P04') throw e; // created meanwhile
      }
    }
  } finally {
    await client.end();
  }
}
