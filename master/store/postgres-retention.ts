import type pg from 'pg';
import { FINAL_RUN_STATES } from '../../shared/run-state.js';
import type { ExpiredTask, ExpiryBatch, ExpiryPreview, RetentionCutoffs } from './registry-store.js';

/**
 * The PostgreSQL side of retention, mirroring sqlite-retention.ts. Several registry processes
 * may share the database: each batch first takes a transaction-scoped advisory lock, and a
 * process that does not get it leaves the sweep to the one that has it (`busy`), so two sweeps
 * never work at once; SKIP LOCKED keeps a batch off rows a request is changing right now.
 */
const FINAL = FINAL_RUN_STATES.map((s) => `'${s}'`).join(', ');
/** A task is over once its status is one of these and none of its runs is still going. */
const FINAL_TASK = `t.status IN ('completed', 'failed', 'cancelled') AND NOT EXISTS (SELECT 1 FROM runs g WHERE g.task_id = t.id AND g.status NOT IN (${FINAL}))`;
/** The advisory lock key of the retention sweep ("PHTRETEN" in ASCII). */
export const RETENTION_LOCK_KEY = '5784119599174272334';

const SQL = {
  lock: 'SELECT pg_try_advisory_xact_lock($1::bigint) AS locked',
  logRuns: `SELECT id FROM runs WHERE log_expired_at IS NULL AND log_bytes > 0 AND finished_at < $1 AND status IN (${FINAL}) ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED`,
  deleteLogs: 'DELETE FROM run_logs WHERE run_id = ANY($1::bigint[])',
  markLogs: 'UPDATE runs SET log_expired_at = now() WHERE id = ANY($1::bigint[])',
  fileRuns: `SELECT r.id FROM runs r WHERE r.id IN (SELECT DISTINCT f.run_id FROM run_files f) AND r.finished_at < $1 AND r.status IN (${FINAL}) LIMIT $2 FOR UPDATE OF r SKIP LOCKED`,
  deleteFiles: 'DELETE FROM run_files WHERE run_id = ANY($1::bigint[]) RETURNING stored_as',
  markFiles: 'UPDATE runs SET files_expired_at = now() WHERE id = ANY($1::bigint[])',
  previewLogs: `SELECT COUNT(*)::int AS runs, COALESCE(SUM(log_bytes), 0)::bigint AS bytes FROM runs WHERE log_expired_at IS NULL AND log_bytes > 0 AND finished_at < $1 AND status IN (${FINAL})`,
  previewFiles: `SELECT COUNT(DISTINCT f.run_id)::int AS runs, COUNT(*)::int AS files, COALESCE(SUM(f.size), 0)::bigint AS bytes FROM run_files f JOIN runs r ON r.id = f.run_id WHERE r.finished_at < $1 AND r.status IN (${FINAL})`,
  expired: 'SELECT log_expired_at, files_expired_at FROM runs WHERE id = $1',
  // updated_at is a task's last status change: for a finished task, when it ended (the partial
  // index tasks_finished, 0009, holds finished tasks by it). Locked, so a request changing the
  // task (a delete by its owner) waits or is skipped, never half-deleted.
  dueTasks: `SELECT t.id, o.name AS owner, t.updated_at AS finished_at FROM tasks t JOIN principals o ON o.id = t.owner_id WHERE ${FINAL_TASK} AND t.updated_at < $1 ORDER BY t.updated_at LIMIT $2 FOR UPDATE OF t SKIP LOCKED`,
  deleteTaskFiles:
    'DELETE FROM run_files f USING runs r WHERE r.id = f.run_id AND r.task_id = ANY($1::bigint[]) RETURNING f.stored_as, r.task_id',
  deleteTaskLogs: 'DELETE FROM run_logs WHERE run_id IN (SELECT id FROM runs WHERE task_id = ANY($1::bigint[]))',
  deleteTaskRuns: 'DELETE FROM runs WHERE task_id = ANY($1::bigint[]) RETURNING task_id',
  deleteTasks: 'DELETE FROM tasks WHERE id = ANY($1::bigint[])',
  previewTasks: `SELECT COUNT(*)::int AS tasks, COALESCE(SUM((SELECT COUNT(*) FROM runs r WHERE r.task_id = t.id)), 0)::int AS runs FROM tasks t WHERE ${FINAL_TASK} AND t.updated_at < $1`,
} as const;

type Client = Pick<pg.PoolClient, 'query'>;

/** Inside the caller's transaction (PostgresRegistryStore.tx). */
export async function expireBatch(c: Client, cutoffs: RetentionCutoffs, batch: number): Promise<ExpiryBatch> {
  const locked = (await c.query<{ locked: boolean }>(SQL.lock, [RETENTION_LOCK_KEY])).rows[0]?.locked === true;
  if (!locked) return { logs: 0, fileRuns: 0, storedFiles: [], tasks: [], busy: true };
  // Whole tasks first: their logs and files then need no separate expiry.
  const storedFiles: string[] = [];
  const tasks: ExpiredTask[] = [];
  if (cutoffs.tasksBefore) {
    const due = (
      await c.query<{ id: number; owner: string; finished_at: Date }>(SQL.dueTasks, [cutoffs.tasksBefore, batch])
    ).rows;
    if (due.length) {
      const ids = due.map((t) => t.id);
      const files = (await c.query<{ stored_as: string; task_id: number }>(SQL.deleteTaskFiles, [ids])).rows;
      await c.query(SQL.deleteTaskLogs, [ids]);
      const runs = (await c.query<{ task_id: number }>(SQL.deleteTaskRuns, [ids])).rows;
      await c.query(SQL.deleteTasks, [ids]);
      storedFiles.push(...files.map((f) => f.stored_as));
      for (const t of due)
        tasks.push({
          id: t.id,
          owner: t.owner,
          finishedAt: t.finished_at.toISOString(),
          runs: runs.filter((r) => r.task_id === t.id).length,
          files: files.filter((f) => f.task_id === t.id).length,
        });
    }
  }
  let logs = 0;
  if (cutoffs.logsBefore) {
    const ids = (await c.query<{ id: number }>(SQL.logRuns, [cutoffs.logsBefore, batch])).rows.map((r) => r.id);
    if (ids.length) {
      await c.query(SQL.deleteLogs, [ids]);
      await c.query(SQL.markLogs, [ids]);
    }
    logs = ids.length;
  }
  let fileRuns = 0;
  if (cutoffs.filesBefore) {
    const ids = (await c.query<{ id: number }>(SQL.fileRuns, [cutoffs.filesBefore, batch])).rows.map((r) => r.id);
    if (ids.length) {
      storedFiles.push(...(await c.query<{ stored_as: string }>(SQL.deleteFiles, [ids])).rows.map((r) => r.stored_as));
      await c.query(SQL.markFiles, [ids]);
    }
    fileRuns = ids.length;
  }
  return { logs, fileRuns, storedFiles, tasks, busy: false };
}

export async function previewExpiry(c: Client, cutoffs: RetentionCutoffs): Promise<ExpiryPreview> {
  const logs = cutoffs.logsBefore
    ? (await c.query<{ runs: number; bytes: string }>(SQL.previewLogs, [cutoffs.logsBefore])).rows[0]!
    : { runs: 0, bytes: '0' };
  const files = cutoffs.filesBefore
    ? (await c.query<{ runs: number; files: number; bytes: string }>(SQL.previewFiles, [cutoffs.filesBefore])).rows[0]!
    : { runs: 0, files: 0, bytes: '0' };
  const tasks = cutoffs.tasksBefore
    ? (await c.query<{ tasks: number; runs: number }>(SQL.previewTasks, [cutoffs.tasksBefore])).rows[0]!
    : { tasks: 0, runs: 0 };
  return {
    logRuns: logs.runs,
    logBytes: Number(logs.bytes),
    fileRuns: files.runs,
    files: files.files,
    fileBytes: Number(files.bytes),
    tasks: tasks.tasks,
    taskRuns: tasks.runs,
  };
}

export async function expiredParts(c: Client, runId: number): Promise<{ log: boolean; files: boolean } | null> {
  const row = (await c.query<{ log_expired_at: unknown; files_expired_at: unknown }>(SQL.expired, [runId])).rows[0];
  return row ? { log: row.log_expired_at !== null, files: row.files_expired_at !== null } : null;
}
