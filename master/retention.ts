import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { coerceError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import type { MasterConfig } from './config.js';
import type { ResultFileStore } from './result-files.js';
import type { ExpiredTask, ExpiryPreview, RegistryStore, RetentionCutoffs } from './store/registry-store.js';

/**
 * Retention: finished runs' logs and result files are removed once older than the registry's
 * `retention` setting, while the runs themselves (state, exit code, log size) stay, marked so
 * that reading the log or a file answers 410 Gone. With `retention.runs`, finished tasks that
 * ended longer ago than that are deleted whole (runs, logs, files, the task), each one written to
 * the registry's log. The sweep works in batches of
 * `retention.batch` runs, each its own short transaction, and yields to the event loop between
 * them, so a large first sweep never holds the database's write lock for long.
 */
export type RetentionSettings = Omit<MasterConfig['retention'], 'runsMs'> & {
  /** Absent as null: tasks are never deleted by the sweep. */
  runsMs?: number | null;
};

export interface SweepTotals {
  logs: number;
  fileRuns: number;
  files: number;
  /** Finished tasks deleted whole, and their runs. */
  tasks: number;
  taskRuns: number;
  batches: number;
  /** Another registry process held the sweep lock (PostgreSQL); this sweep stopped early. */
  busy: boolean;
}

/** The cutoffs for a sweep at `now`: a run finished before them loses its log or its files. */
export function cutoffsAt(settings: RetentionSettings, now: Date): RetentionCutoffs {
  return {
    logsBefore: settings.logsMs === null ? null : new Date(now.getTime() - settings.logsMs),
    filesBefore: settings.filesMs === null ? null : new Date(now.getTime() - settings.filesMs),
    tasksBefore: settings.runsMs == null ? null : new Date(now.getTime() - settings.runsMs),
  };
}

/** True when some retention is set (else no sweep runs). */
export function retentionSet(settings: RetentionSettings): boolean {
  return settings.logsMs !== null || settings.filesMs !== null || settings.runsMs != null;
}

/** Writes a task deleted by retention to the registry's log: who lost what, and when it had ended. */
export function auditExpiredTask(logger: Logger, task: ExpiredTask): void {
  logger.info('retention deleted a finished task', {
    event: 'task_expired',
    taskId: task.id,
    owner: task.owner,
    finishedAt: task.finishedAt,
    runs: task.runs,
    files: task.files,
  });
}

/**
 * Expires everything due at `now`, batch by batch, removing the files of each batch from the
 * result store after its transaction committed (a crash in between leaves unreferenced files,
 * which the registry removes at its next start). Each task deleted whole goes to `onTask`
 * (the registry logs it) once its batch committed.
 */
export async function expireDue(
  store: RegistryStore,
  files: ResultFileStore,
  settings: RetentionSettings,
  now: Date = new Date(),
  onTask: (task: ExpiredTask) => void = () => undefined,
): Promise<SweepTotals> {
  const cutoffs = cutoffsAt(settings, now);
  const totals: SweepTotals = { logs: 0, fileRuns: 0, files: 0, tasks: 0, taskRuns: 0, batches: 0, busy: false };
  if (!retentionSet(settings)) return totals;
  for (;;) {
    const batch = await store.expireBatch(cutoffs, settings.batch);
    if (batch.busy) return { ...totals, busy: true };
    totals.batches++;
    totals.logs += batch.logs;
    totals.fileRuns += batch.fileRuns;
    totals.files += batch.storedFiles.length;
    totals.tasks += batch.tasks.length;
    for (const task of batch.tasks) {
      totals.taskRuns += task.runs;
      onTask(task);
    }
    for (const name of batch.storedFiles) files.remove(name);
    if (batch.logs < settings.batch && batch.fileRuns < settings.batch && batch.tasks.length < settings.batch)
      return totals;
    // Let requests waiting for the database in between go first.
    await yieldToEventLoop();
  }
}

export function previewDue(
  store: RegistryStore,
  settings: RetentionSettings,
  now: Date = new Date(),
): Promise<ExpiryPreview> {
  return store.previewExpiry(cutoffsAt(settings, now));
}

/**
 * Runs the sweep every `settings.interval` (and once at start), never two at once in this
 * process; none when no retention is set. Returns the function that stops it, which waits for a
 * sweep in progress to end.
 */
export function startRetention(
  store: RegistryStore,
  files: ResultFileStore,
  settings: RetentionSettings,
  logger: Logger,
): () => Promise<void> {
  if (!retentionSet(settings)) return async () => undefined;
  let running: Promise<void> | null = null;
  let stopped = false;
  const sweep = () => {
    if (running || stopped) return;
    running = expireDue(store, files, settings, new Date(), (task) => auditExpiredTask(logger, task))
      .then((t) => {
        if (t.logs || t.fileRuns || t.tasks) logger.info('retention expired logs and files', { ...t });
      })
      .catch((e: unknown) => {
        logger.error('retention sweep failed', { error: coerceError(e).message });
      })
      .finally(() => {
        running = null;
      });
  };
  const timer = setInterval(sweep, settings.intervalMs);
  timer.unref();
  sweep();
  return async () => {
    stopped = true;
    clearInterval(timer);
    await running;
  };
}

/** `node master expire [--dry-run]`: the sweep once, or what it would remove. */
export async function runExpireCommand(
  store: RegistryStore,
  files: ResultFileStore,
  settings: RetentionSettings,
  dryRun: boolean,
  print: (text: string) => void,
  logger: Logger,
): Promise<void> {
  if (!retentionSet(settings)) {
    print(
      'no retention is set (retention.logs, retention.files, retention.runs in the config, or --retain-logs, --retain-files, --retain-runs)',
    );
    return;
  }
  // Runs of tasks deleted whole are counted there too if their log or files are also due.
  if (dryRun) {
    const p = await previewDue(store, settings);
    print(
      `would expire the logs of ${p.logRuns} finished runs (${p.logBytes} bytes) and ${p.files} result files of ${p.fileRuns} runs (${p.fileBytes} bytes)` +
        (settings.runsMs == null ? '' : `, and delete ${p.tasks} finished tasks whole (${p.taskRuns} runs)`),
    );
    return;
  }
  const t = await expireDue(store, files, settings, new Date(), (task) => auditExpiredTask(logger, task));
  print(
    `expired the logs of ${t.logs} finished runs and ${t.files} result files of ${t.fileRuns} runs` +
      (settings.runsMs == null ? '' : `, and deleted ${t.tasks} finished tasks whole (${t.taskRuns} runs)`) +
      ` in ${t.batches} batches` +
      (t.busy ? '; another registry process is sweeping, it does the rest' : ''),
  );
}
