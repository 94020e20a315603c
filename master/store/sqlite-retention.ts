import type Database from 'better-sqlite3';
import { FINAL_RUN_STATES } from '../../shared/run-state.js';
import type { ExpiredTask, ExpiryBatch, ExpiryPreview, RetentionCutoffs } from './registry-store.js';

/**
 * The SQLite side of retention (master/retention.ts): removes finished runs' logs and file
 * records in small batches, each its own short write transaction, and marks the run so that
 * reading them answers 410. Only final runs are ever touched: the state check is in every query.
 */
const FINAL = FINAL_RUN_STATES.map((s) => `'${s}'`).join(', ');
/** A task is over once its status is one of these and none of its runs is still going. */
const FINAL_TASK = `t.status IN ('completed', 'failed', 'cancelled') AND NOT EXISTS (SELECT 1 FROM runs g WHERE g.task_id = t.id AND g.status NOT IN (${FINAL}))`;

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
  // A task's updated_at is its last status change: for a finished task, when it ended. The
  // partial index tasks_finished (0009) holds finished tasks by that time, so the sweep seeks the
  // oldest and stops at the cutoff; without INDEXED BY, SQLite without statistics walks
  // tasks_status instead, i.e. every finished task kept (test/master/history-plans.test.ts).
  dueTasks: `SELECT t.id, o.name AS owner, t.updated_at AS finished_at FROM tasks t INDEXED BY tasks_finished JOIN principals o ON o.id = t.owner_id WHERE ${FINAL_TASK} AND t.updated_at < ? ORDER BY t.updated_at LIMIT ?`,
  storedOfTask: 'SELECT f.stored_as FROM run_files f JOIN runs r ON r.id = f.run_id WHERE r.task_id = ?',
  deleteTaskFiles: 'DELETE FROM run_files WHERE run_id IN (SELECT id FROM runs WHERE task_id = ?)',
  deleteTaskLogs: 'DELETE FROM run_logs WHERE run_id IN (SELECT id FROM runs WHERE task_id = ?)',
  deleteTaskRuns: 'DELETE FROM runs WHERE task_id = ?',
  // The task_counts triggers (0006) take the task off its owner's counts.
  deleteTask: 'DELETE FROM tasks WHERE id = ?',
  previewTasks: `SELECT COUNT(*) AS tasks, COALESCE(SUM((SELECT COUNT(*) FROM runs r WHERE r.task_id = t.id)), 0) AS runs FROM tasks t INDEXED BY tasks_finished WHERE ${FINAL_TASK} AND t.updated_at < ?`,
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
      // Whole tasks first: their logs and files then need no separate expiry.
      const storedFiles: string[] = [];
      const tasks: ExpiredTask[] = [];
      if (cutoffs.tasksBefore) {
        const due = s.dueTasks.all(cutoffs.tasksBefore.toISOString(), batch) as {
          id: number;
          owner: string;
          finished_at: string;
        }[];
        for (const t of due) {
          const stored = s.storedOfTask.pluck().all(t.id) as string[];
          storedFiles.push(...stored);
          s.deleteTaskFiles.run(t.id);
          s.deleteTaskLogs.run(t.id);
          const runs = s.deleteTaskRuns.run(t.id).changes;
          s.deleteTask.run(t.id);
          tasks.push({ id: t.id, owner: t.owner, finishedAt: t.finished_at, runs, files: stored.length });
        }
      }
      let logs = 0;
      if (cutoffs.logsBefore) {
        for (const id of s.logRuns.pluck().all(cutoffs.logsBefore.toISOString(), batch) as number[]) {
          s.deleteLog.run(id);
          s.markLog.run(now, id);
          logs++;
        }
      }
      let fileRuns = 0;
      if (cutoffs.filesBefore) {
        for (const id of s.fileRuns.pluck().all(cutoffs.filesBefore.toISOString(), batch) as number[]) {
          storedFiles.push(...(s.storedOf.pluck().all(id) as string[]));
          s.deleteFiles.run(id);
          s.markFiles.run(now, id);
          fileRuns++;
        }
      }
      return { logs, fileRuns, storedFiles, tasks, busy: false };
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
  const tasks = cutoffs.tasksBefore
    ? (s.previewTasks.get(cutoffs.tasksBefore.toISOString()) as { tasks: number; runs: number })
    : { tasks: 0, runs: 0 };
  return {
    logRuns: logs.runs,
    logBytes: logs.bytes,
    fileRuns: files.runs,
    files: files.files,
    fileBytes: files.bytes,
    tasks: tasks.tasks,
    taskRuns: tasks.runs,
  };
}

export function expiredParts(s: RetentionStatements, runId: number): { log: boolean; files: boolean } | null {
  const row = s.expired.get(runId) as { log_expired_at: string | null; files_expired_at: string | null } | undefined;
  return row ? { log: row.log_expired_at !== null, files: row.files_expired_at !== null } : null;
}
