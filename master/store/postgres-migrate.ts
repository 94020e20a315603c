import path from 'node:path';
import type pg from 'pg';
import { MIGRATIONS_DIR, readMigrations, type Migration } from './migrate.js';

/** PostgreSQL's migrations mirror the SQLite ones, number for number, in their own folder. */
export const POSTGRES_MIGRATIONS_DIR = path.join(MIGRATIONS_DIR, 'postgres');

/**
 * Any fixed 64-bit number works as long as every registry uses the same one: it names the lock
 * that registries starting together take, so exactly one of them applies the migrations and the
 * others wait and then find nothing left to do.
 */
export const MIGRATION_LOCK_KEY = 0x70687401n;

/**
 * Applies every migration newer than the database, each in its own transaction, while holding a
 * session-level advisory lock: several registry processes may start at the same moment.
 */
export async function migratePostgres(
  client: pg.ClientBase,
  migrations: Migration[] = readMigrations(POSTGRES_MIGRATIONS_DIR),
): Promise<number[]> {
  await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY.toString()]);
  try {
    await client.query(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)',
    );
    const { rows } = await client.query<{ version: number }>('SELECT version FROM schema_migrations');
    const applied = new Set(rows.map((r) => r.version));
    const done: number[] = [];
    for (const m of migrations) {
      if (applied.has(m.version)) continue;
      await client.query('BEGIN');
      try {
        await client.query(m.sql);
        await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, now())', [
          m.version,
          m.name,
        ]);
        await client.query('COMMIT');
      } catch (e) {
        await client.query('ROLLBACK');
        throw e;
      }
      done.push(m.version);
    }
    return done;
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY.toString()]);
  }
}
