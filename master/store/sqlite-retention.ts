import type Database from 'better-sqlite3';
import { FINAL_RUN_STATES } from '../../shared/run-state.js';
import type { ExpiryBatch, ExpiryPreview, RetentionCutoffs } from './registry-store.js';

/**
 * The SQLite side of retention (master/retention.ts): removes finished runs' logs and file
 * records in small batches, each its own short write transaction, and marks the run so that
 * reading them answers 410. Only final runs are ever touched: the state check is in every query.
 */
const FINAL = FINAL_RUN_STATES.map((s) => `'${s}'`).join(', ');

export const RETENTION_SQL = {
  // Seeks the partial index runs_log_expiry (0006): only runs with a log left are in it, so a
  // sweep over a long, mostly expired history reads just the batch.
  // `+status`: without it, SQLite without statistics picks (status, lease_expires_at) instead and
  // walks every finished run (test/master/history-plans.test.ts).
  logRuns: `SELECT id FROM runs WHERE log_expired_at IS NULL AND log_bytes > 0 AND finished_at < ? AND +status IN (${FINAL}) ORDER BY finished_at LIMIT ?`,
  deleteLog: 'DELETE FROM run_logs WHERE run_id = ?',
  markLog: 'UPDATE runs SET log_expired_at = ? WHERE id = ?',
  // Driven by run_files, which holds only files not yet expired: its size is bounded by retention
  // (`+r.status` keeps SQLite from walking every finished run through the status index instead).
  fileRuns: `SELECT DISTINCT f.run_id AS id FROM run_files f JOIN runs r ON r.id = f.run_id WHERE r.finished_at < ? AND +r.status IN (${FINAL}) LIMIT ?`,
  storedOf: 'SELECT stored_as FROM run_files WHERE run_id = ?',
  deleteFiles: 'DELETE FROM run_files WHERE run_id = ?',
  markFiles: 'UPDATE runs SET files_expired_at = ? WHERE id = ?',
  previewLogs: `SELECT COUNT(*) AS runs, COALESCE(SUM(log_bytes), 0) AS bytes FROM runs WHERE log_expired_at IS NULL AND log_bytes > 0 AND finished_at < ? AND +status IN (${FINAL})`,
  previewFiles: `SELECT COUNT(DISTINCT f.run_id) AS runs, COUNT(*) AS files, COALESCE(SUM(f.size), 0) AS bytes FROM run_files f JOIN runs r ON r.id = f.run_id WHERE r.finished_at < ? AND +r.status IN (${FINAL})`,
  expired: 'SELECT log_expired_at, files_expired_at FROM runs WHERE id = ?',
} as const;

export type RetentionStatements = { [K in keyof typeof RETENTION_SQL]: Database.Statement };

export function prepareRetention(db: Database.Database): RetentionStatements {
  return Object.fromEntries(
    Object.entries(RETENTION_SQL).map(([k, sql]) => [k, db.prepare(sql)]),
  ) as RetentionStatements;
}

export function expireBatch(
  db: Database.Database,
  s: RetentionStatements,
  cutoffs: RetentionCutoffs,
  batch: number,
): ExpiryBatch {
  return db
    .transaction((): ExpiryBatch => {
      const now = new Date().toISOString();
      let logs = 0;
      if (cutoffs.logsBefore) {
        for (const id of s.logRuns.pluck().all(cutoffs.logsBefore.toISOString(), batch) as number[]) {
          s.deleteLog.run(id);
          s.markLog.run(now, id);
          logs++;
        }
      }
      const storedFiles: string[] = [];
      let fileRuns = 0;
      if (cutoffs.filesBefore) {
        for (const id of s.fileRuns.pluck().all(cutoffs.filesBefore.toISOString(), batch) as number[]) {
          storedFiles.push(...(s.storedOf.pluck().all(id) as string[]));
          s.deleteFiles.run(id);
          s.markFiles.run(now, id);
          fileRuns++;
        }
      }
      return { logs, fileRuns, storedFiles, busy: false };
    })
    .immediate();
}

export function previewExpiry(s: RetentionStatements, cutoffs: RetentionCutoffs): ExpiryPreview {
  const logs = cutoffs.logsBefore
    ? (s.previewLogs.get(cutoffs.logsBefore.toISOString()) as { runs: number; bytes: number })
    : { runs: 0, bytes: 0 };
  const files = cutoffs.filesBefore
    ? (s.previewFiles.get(cutoffs.filesBefore.toISOString()) as { runs: number; files: number; bytes: number })
    : { runs: 0, files: 0, bytes: 0 };
  return { logRuns: logs.runs, logBytes: logs.bytes, fileRuns: files.runs, files: files.files, fileBytes: files.bytes };
}

export function expiredParts(s: RetentionStatements, runId: number): { log: boolean; files: boolean } | null {
  const row = s.expired.get(runId) as { log_expired_at: string | null; files_expired_at: string | null } | undefined;
  return row ? { log: row.log_expired_at !== null, files: row.files_expired_at !== null } : null;
}
