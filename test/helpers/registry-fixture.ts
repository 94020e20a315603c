import fs from 'node:fs';
import Database from 'better-sqlite3';
import pg from 'pg';
import path from 'node:path';
import { compileMasterConfig, type MasterConfig } from '../../master/config.js';
import { startRegistry, type RunningRegistry } from '../../master/server.js';
import { silentLogger, type Logger } from '../../shared/logger.js';
import { masterConfigSchema } from '../../shared/config-schemas.js';
import { loadRawConfig } from '../../shared/config-loader.js';
import { inject } from 'vitest';
import { freshSchema, testBackend, type TestSchema } from './postgres.js';
import type { StoreLocation } from '../../master/store/open-store.js';
import { makeTempDir } from './temp-dirs.js';

export interface TestRegistry extends RunningRegistry {
  dataDir: string;
  config: MasterConfig;
  createSite(name: string): Promise<string>;
  createUser(name: string, role?: 'researcher' | 'admin'): Promise<string>;
  /** Stops the server and removes its data directory. */
  destroy(): Promise<void>;
  /** Stops the server but keeps the data directory, then starts a new one on it (same port). */
  restart(): Promise<TestRegistry>;
}

/** The PostgreSQL schema of each live test registry on that backend, by data dir. */
const schemas = new Map<string, TestSchema>();

/**
 * The store options for `node master` commands (admin commands in tests) that must reach the same
 * records as the test registry using `dataDir`: a fresh data dir means a fresh SQLite file, or
 * on PostgreSQL a fresh schema, whose URL the data dir stands for.
 */
export function storeArgs(dataDir: string): string[] {
  const schema = schemas.get(dataDir);
  return schema ? ['--data-dir', dataDir, '--database', schema.url] : ['--data-dir', dataDir];
}

/**
 * Reads rows straight from a test registry's database, below the store (to check that an
 * operation wrote nothing): the SQLite file read-only, or the PostgreSQL schema. `?` placeholders.
 */
export function openRawReader(dataDir: string): {
  row(sql: string, ...params: unknown[]): Promise<unknown>;
  close(): Promise<void>;
} {
  const schema = schemas.get(dataDir);
  if (schema) {
    const pool = new pg.Pool({ connectionString: schema.url, max: 1 });
    return {
      async row(sql, ...params) {
        let n = 0;
        return (
          await pool.query(
            sql.replace(/\?/g, () => `$${++n}`),
            params,
          )
        ).rows[0];
      },
      close: () => pool.end(),
    };
  }
  const db = new Database(path.join(dataDir, 'registry.sqlite'), { readonly: true });
  return {
    async row(sql, ...params) {
      return db.prepare(sql).get(...params);
    },
    async close() {
      db.close();
    },
  };
}

/** Where the store of the test registry using `dataDir` is, for admin commands run in-process. */
export function storeLocation(dataDir: string): StoreLocation {
  return { dataDir, database: schemas.get(dataDir)?.url ?? null };
}

/**
 * A real registry on an ephemeral loopback port with a fresh SQLite file in a temp dir, or, in the
 * unit-postgres project, a fresh PostgreSQL schema (the data dir then holds only result files).
 * `overrides` is a raw config fragment (as in a config file), e.g. { lease: '1s' }.
 */
export async function startTestRegistry(
  overrides: Record<string, unknown> = {},
  options: { dataDir?: string; port?: number; logger?: Logger } = {},
): Promise<TestRegistry> {
  const dataDir = options.dataDir ?? makeTempDir('pht-registry-');
  // A test that passes its own database (several registries on one schema) manages it itself.
  if (testBackend() === 'postgres' && !schemas.has(dataDir) && overrides.database === undefined)
    schemas.set(dataDir, await freshSchema(inject('postgresUrl')));
  const database = schemas.get(dataDir)?.url;
  const raw = loadRawConfig({
    file: null,
    fileRequired: false,
    schema: masterConfigSchema,
    env: {},
    envOverrides: [],
    flagOverrides: {
      host: '127.0.0.1',
      port: options.port ?? 0,
      dataDir,
      sweepInterval: '200ms',
      ...(database ? { database, databasePoolSize: 4 } : {}),
      ...overrides,
    },
  });
  const config = compileMasterConfig(raw);
  const logger = options.logger ?? silentLogger();
  const registry = await startRegistry(config, logger);
  const fixture: TestRegistry = {
    ...registry,
    dataDir,
    config,
    async createSite(name) {
      return (await registry.store.createPrincipal('site', name, 'site')).secret;
    },
    async createUser(name, role = 'researcher') {
      return (await registry.store.createPrincipal('user', name, role)).secret;
    },
    async destroy() {
      await registry.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
      await schemas.get(dataDir)?.drop();
      schemas.delete(dataDir);
    },
    async restart() {
      await registry.close();
      return startTestRegistry(overrides, { dataDir, port: registry.port, logger });
    },
  };
  return fixture;
}
