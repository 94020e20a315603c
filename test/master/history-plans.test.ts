/**
 * The statements whose cost must not grow with the history (issue 13, target 9; bench:history)
 * read through an index, never a scan of every task or run nor a sort of them. SQLite only: the
 * plans are SQLite's (PostgreSQL's planner chooses by statistics).
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../../master/store/migrate.js';
import { RETENTION_SQL } from '../../master/store/sqlite-retention.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function migrated(): Database.Database {
  const dir = makeTempDir('pht-plans-');
  dirs.push(dir);
  const db = new Database(path.join(dir, 'registry.sqlite'));
  migrate(db);
  return db;
}

function plan(db: Database.Database, sql: string, ...params: unknown[]): string {
  const rows = db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[];
  return rows.map((r) => r.detail).join('\n');
}

describe('statements that must not grow with the history', () => {
  it('pages a researcher’s tasks newest first by walking (owner_id, id), without sorting them', () => {
    const db = migrated();
    try {
      const p = plan(
        db,
        'SELECT t.id FROM tasks t JOIN principals o ON o.id = t.owner_id WHERE t.owner_id = ? ORDER BY t.id DESC LIMIT ? OFFSET ?',
        1,
        50,
        0,
      );
      expect(p).toMatch(/USING COVERING INDEX tasks_owner_id/);
      expect(p).not.toMatch(/TEMP B-TREE/);
    } finally {
      db.close();
    }
  });

  it('finds the logs retention may expire through the partial index, not a scan of the runs', () => {
    const db = migrated();
    try {
      const p = plan(db, RETENTION_SQL.logRuns, new Date().toISOString(), 500);
      expect(p).toMatch(/USING INDEX runs_log_expiry/);
      expect(p).not.toMatch(/SCAN runs/);
    } finally {
      db.close();
    }
  });

  it('finds the files retention may expire from the files not yet expired, not from every finished run', () => {
    const db = migrated();
    try {
      const cutoff = new Date().toISOString();
      for (const [sql, params] of [
        [RETENTION_SQL.fileRuns, [cutoff, 500]],
        [RETENTION_SQL.previewFiles, [cutoff]],
      ] as const) {
        const p = plan(db, sql, ...params);
        expect(p, sql).toMatch(/SCAN f\b/);
        expect(p, sql).not.toMatch(/runs_status_lease/);
      }
    } finally {
      db.close();
    }
  });

  it('finds the finished tasks retention.runs may delete by seeking when they ended, not walking every finished task', () => {
    const db = migrated();
    try {
      const cutoff = new Date().toISOString();
      for (const [sql, params] of [
        [RETENTION_SQL.dueTasks, [cutoff, 500]],
        [RETENTION_SQL.previewTasks, [cutoff]],
      ] as const) {
        const p = plan(db, sql, ...params);
        expect(p, sql).toMatch(/SEARCH t USING INDEX tasks_finished \(updated_at<\?\)/);
        expect(p, sql).not.toMatch(/SCAN|TEMP B-TREE/);
      }
    } finally {
      db.close();
    }
  });
});
