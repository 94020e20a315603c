import pg from 'pg';
import {
  canMove,
  deriveTaskStatus,
  isFinalRunState,
  isFinalTaskStatus,
  RUN_STATES,
  siteActionRefusal,
  type RunState,
  type SiteAction,
} from '../../shared/run-state.js';
import type {
  FinishReport,
  ProgressReport,
  ResultFile,
  RunAssignment,
  RunDetail,
  SiteInfo,
  SiteRunView,
  Task,
  TaskSummary,
} from '../../shared/types.js';
import { ERROR_CODES } from '../../shared/error-codes.js';
import { coerceError } from '../../shared/errors.js';
import type { ImageSignature } from '../../shared/governance.js';
import { ConflictError, NotFoundError, RegistryError } from '../errors.js';
import { enabledSitesOrRefuse } from './task-sites.js';
import * as governance from './postgres-governance.js';
import * as retention from './postgres-retention.js';
import { migratePostgres } from './postgres-migrate.js';
import { generateSecret, hashSecret } from './secrets.js';
import type {
  DeletedTask,
  ExpiryBatch,
  ExpiryPreview,
  FileLimits,
  NewTask,
  OwnedRun,
  OwnedTask,
  Principal,
  PrincipalKind,
  PrincipalRole,
  RegistryStore,
  RetentionCutoffs,
  StoredFile,
  SweepOutcome,
  TaskQuery,
  TaskQuota,
} from './registry-store.js';
import type { GovernanceListing } from './sqlite-governance.js';
import { decodeConfig } from './sqlite-store.js';

interface PrincipalRow {
  id: number;
  kind: PrincipalKind;
  name: string;
  role: PrincipalRole;
  enabled: boolean;
  created_at: Date;
  last_seen: Date | null;
}

interface RunRow {
  id: number;
  task_id: number;
  site_id: number;
  site_name: string;
  status: RunState;
  attempt: number;
  lease_expires_at: number | null;
  cancel_requested: boolean;
  last_contact_at: number | null;
  exit_code: number | null;
  reason: string | null;
  digest: string | null;
  duration_ms: number | null;
  progress_current: number | null;
  progress_total: number | null;
  progress_message: string | null;
  log_bytes: number;
  log_truncated: boolean;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  log_expired_at: Date | null;
  files_expired_at: Date | null;
}

interface TaskRow {
  id: number;
  owner_id: number;
  owner_name: string;
  name: string | null;
  image: string;
  status: Task['status'];
  cancelled: boolean;
  created_at: Date;
}

const RUN_COLUMNS = `r.*, p.name AS site_name`;
const TASK_COLUMNS = `t.id, t.owner_id, o.name AS owner_name, t.name, t.image, t.status, t.cancelled, t.created_at`;

/**
 * Ids and epoch-millisecond columns are BIGINT, which pg hands back as strings by default: every
 * value the registry stores stays far below 2^53, so numbers are exact.
 */
const TYPES = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === pg.types.builtins.INT8 && format !== 'binary') return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format);
  },
} as pg.CustomTypesConfig;

const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString());

function toPrincipal(row: PrincipalRow): Principal {
  return {
    id: row.id,
    kind: row.kind,
    name: row.name,
    role: row.role,
    enabled: row.enabled,
    createdAt: row.created_at.toISOString(),
    lastSeen: iso(row.last_seen),
  };
}

function toRunDetail(row: RunRow): RunDetail {
  return {
    id: row.id,
    taskId: row.task_id,
    site: row.site_name,
    status: row.status,
    attempt: row.attempt,
    exitCode: row.exit_code,
    reason: row.reason,
    digest: row.digest,
    durationMs: row.duration_ms,
    progress:
      row.progress_current === null
        ? null
        : { current: row.progress_current, total: row.progress_total, message: row.progress_message },
    cancelRequested: row.cancel_requested,
    createdAt: row.created_at.toISOString(),
    startedAt: iso(row.started_at),
    finishedAt: iso(row.finished_at),
    logBytes: row.log_bytes,
    logExpiredAt: iso(row.log_expired_at),
    filesExpiredAt: iso(row.files_expired_at),
  };
}

function toSiteView(row: RunRow): SiteRunView {
  return { id: row.id, taskId: row.task_id, status: row.status, cancelRequested: row.cancel_requested };
}

/** 409 when shared/run-state.ts does not allow the site's action in the run's state. */
function refuseUnlessAllowed(action: SiteAction, row: RunRow): void {
  const refusal = siteActionRefusal(action, row.status);
  if (refusal !== null) throw new ConflictError(`run ${row.id} ${refusal}`, { status: row.status });
}

/** PostgreSQL error codes (SQLSTATE) the store reacts to. */
const PG = {
  uniqueViolation: '23505',
  serializationFailure: '40001',
  deadlockDetected: '40P01',
  queryCanceled: '57014',
} as const;

/** Worth retrying the whole transaction: PostgreSQL aborted it to resolve a conflict. */
function isConflictAbort(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return code === PG.serializationFailure || code === PG.deadlockDetected;
}

/**
 * The database is out of reach (down, restarting, out of connections, network cut): the request
 * may succeed later, so it is answered 503 and the site or researcher retries. Class 08 is
 * "connection exception", 57P0x "operator intervention" (shutdown, cannot connect now), 53300
 * "too many connections".
 */
export function isDatabaseUnavailable(e: unknown): boolean {
  const err = e as { code?: string; message?: string };
  const code = err.code ?? '';
  if (/^08/.test(code) || /^57P0/.test(code) || code === '53300') return true;
  if (['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND'].includes(code)) return true;
  // "timeout exceeded when trying to connect": every pooled connection stayed busy for the whole
  // wait; the database is overloaded rather than down, and the answer is the same: retry later.
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(
    err.message ?? '',
  );
}

export class DatabaseUnavailableError extends RegistryError {
  override readonly name = 'DatabaseUnavailableError';
  constructor(cause: unknown) {
    super(503, ERROR_CODES.unavailable, 'the registry database is unavailable; retry later');
    this.cause = cause;
  }
}

export interface PostgresStoreOptions {
  /** postgres://user:password@host:port/database (never logged: it may hold a password). */
  connectionString: string;
  /** Connections this process keeps at most (the database's max_connections is shared by all processes). */
  poolSize?: number;
  /** Called with errors of idle connections (a restart of the database ends them all). */
  onIdleError?: (e: Error) => void;
}

type Queryable = pg.ClientBase | pg.Pool;

/**
 * The task list's filters; a NULL parameter switches its filter off, so one prepared statement
 * serves every combination. $3: only tasks with a run at this site; $4: text in the name or image
 * (ILIKE, as SQLite's LIKE ignores ASCII case).
 */
const TASK_FILTER = `($1::bigint IS NULL OR t.owner_id = $1) AND ($2::text IS NULL OR t.status = $2)
  AND ($3::text IS NULL OR t.id IN (SELECT r.task_id FROM runs r JOIN principals s ON s.id = r.site_id WHERE s.kind = 'site' AND s.name = $3))
  AND ($4::text IS NULL OR t.name ILIKE $4 OR t.image ILIKE $4)`;

function taskFilterParams(query: TaskQuery): unknown[] {
  const like = query.text ? `%${query.text.replace(/[\\%_]/g, (c) => `\\${c}`)}%` : null;
  return [query.ownerId, query.status, query.site || null, like];
}

/** 413 when the run would hold too many files, or (with `size`) too many bytes. */
function refuseOverFileLimits(
  runId: number,
  existing: StoredFile | null,
  stats: { n: number; bytes: number },
  size: number,
  limits: FileLimits,
): void {
  if (!existing && stats.n >= limits.filesPerRun) {
    throw new RegistryError(
      413,
      ERROR_CODES.payloadTooLarge,
      `run ${runId} already has the maximum of ${limits.filesPerRun} files`,
    );
  }
  const total = stats.bytes - (existing?.size ?? 0) + size;
  if (total > limits.runResultBytes || size > limits.resultFileBytes) {
    throw new RegistryError(
      413,
      ERROR_CODES.payloadTooLarge,
      `run ${runId} may hold at most ${limits.runResultBytes} bytes of results (files of at most ${limits.resultFileBytes}); this file would make ${total}`,
    );
  }
}

/**
 * The PostgreSQL backend: one database shared by any number of registry processes. Every
 * multi-step change is one transaction; rows are locked in the order the same statements of the
 * SQLite backend would serialize them, and PostgreSQL's own conflict aborts are retried.
 */
export class PostgresRegistryStore implements RegistryStore {
  readonly pool: pg.Pool;
  private closed = false;
  /** recordSeen's next batch: principal id → latest time seen, written one tick later. */
  private seenPending = new Map<number, Date>();
  private seenWrite: Promise<void> | null = null;

  private constructor(options: PostgresStoreOptions) {
    this.pool = new pg.Pool({
      connectionString: options.connectionString,
      max: options.poolSize ?? 10,
      types: TYPES,
      // Also how long a request may wait for a free pooled connection under a burst (a broadcast
      // to thousands of sites): long enough to queue, short of the balancer's read timeout.
      connectionTimeoutMillis: 20_000,
      idleTimeoutMillis: 30_000,
      application_name: 'pht-registry',
    });
    // Without a listener, an idle connection dropped by the server (a database restart) would
    // crash the process; the pool already discards the connection.
    this.pool.on('error', (e) => options.onIdleError?.(e));
  }

  /** Connects, applies pending migrations under the migration lock, and returns the store. */
  static async open(options: PostgresStoreOptions): Promise<PostgresRegistryStore> {
    const store = new PostgresRegistryStore(options);
    try {
      const client = await store.pool.connect();
      try {
        await migratePostgres(client);
      } finally {
        client.release();
      }
    } catch (e) {
      await store.pool.end().catch(() => undefined);
      throw e;
    }
    return store;
  }

  /** One statement outside a transaction; a lost database becomes a 503. */
  private async q<R extends pg.QueryResultRow>(
    on: Queryable,
    name: string,
    text: string,
    values: unknown[] = [],
  ): Promise<pg.QueryResult<R>> {
    try {
      // A named query is parsed and planned once per connection, then reused.
      return await on.query<R>({ name, text, values });
    } catch (e) {
      if (isDatabaseUnavailable(e)) throw new DatabaseUnavailableError(e);
      throw e;
    }
  }

  /**
   * Runs `fn` in one transaction (READ COMMITTED: each statement sees what committed before it,
   * which the row locks below rely on). A deadlock or serialization abort is retried a few times.
   */
  private async tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let client: pg.PoolClient;
      try {
        client = await this.pool.connect();
      } catch (e) {
        throw new DatabaseUnavailableError(e);
      }
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        const result = await fn(client);
        await client.query('COMMIT');
        return result;
      } catch (e) {
        try {
          await client.query('ROLLBACK');
        } catch (rollback) {
          broken = coerceError(rollback);
        }
        const cause = e instanceof DatabaseUnavailableError ? e.cause : e;
        if (isDatabaseUnavailable(cause)) {
          broken = coerceError(cause);
          throw e instanceof DatabaseUnavailableError ? e : new DatabaseUnavailableError(e);
        }
        if (isConflictAbort(e) && attempt < 5) continue;
        throw e;
      } finally {
        // A connection that failed mid-transaction is destroyed, not handed to the next request.
        client.release(broken);
      }
    }
  }

  async createPrincipal(
    kind: PrincipalKind,
    name: string,
    role: PrincipalRole,
  ): Promise<{ principal: Principal; secret: string }> {
    const secret = generateSecret(kind);
    try {
      const { rows } = await this.q<PrincipalRow>(
        this.pool,
        'insertPrincipal',
        'INSERT INTO principals (kind, name, role, key_hash, created_at) VALUES ($1, $2, $3, $4, now()) RETURNING *',
        [kind, name, role, hashSecret(secret)],
      );
      return { principal: toPrincipal(rows[0]!), secret };
    } catch (e) {
      if ((e as { code?: string }).code === PG.uniqueViolation)
        throw new ConflictError(`a ${kind} named "${name}" already exists`);
      throw e;
    }
  }

  async authenticate(secret: string): Promise<Principal | null> {
    const { rows } = await this.q<PrincipalRow>(
      this.pool,
      'principalByHash',
      'SELECT * FROM principals WHERE key_hash = $1',
      [hashSecret(secret)],
    );
    return rows[0] ? toPrincipal(rows[0]) : null;
  }

  async listPrincipals(kind: PrincipalKind | null): Promise<Principal[]> {
    const { rows } = kind
      ? await this.q<PrincipalRow>(
          this.pool,
          'principalsByKind',
          'SELECT * FROM principals WHERE kind = $1 ORDER BY name',
          [kind],
        )
      : await this.q<PrincipalRow>(this.pool, 'principalsAll', 'SELECT * FROM principals ORDER BY kind, name');
    return rows.map(toPrincipal);
  }

  async setPrincipalEnabled(kind: PrincipalKind, name: string, enabled: boolean): Promise<boolean> {
    return this.tx(async (c) => {
      const changed =
        (
          await this.q(c, 'setEnabled', 'UPDATE principals SET enabled = $1 WHERE kind = $2 AND name = $3', [
            enabled,
            kind,
            name,
          ])
        ).rowCount === 1;
      if (changed && kind === 'site' && !enabled) {
        // A disabled site can never report again: its open runs end now instead of blocking their tasks.
        const { rows } = await this.q<{ task_id: number }>(
          c,
          'failRunsOfDisabledSite',
          `UPDATE runs r SET status = 'failed', reason = 'the site was disabled at the registry', finished_at = now(), lease_expires_at = NULL
             FROM principals p WHERE p.id = r.site_id AND p.kind = 'site' AND p.name = $1 AND r.status IN ('queued', 'assigned', 'running', 'awaiting_approval')
             RETURNING r.task_id`,
          [name],
        );
        await this.refreshTaskStatuses(
          c,
          rows.map((r) => r.task_id),
        );
      }
      return changed;
    });
  }

  async rotateSecret(kind: PrincipalKind, name: string): Promise<string | null> {
    const secret = generateSecret(kind);
    const { rowCount } = await this.q(
      this.pool,
      'setKeyHash',
      'UPDATE principals SET key_hash = $1 WHERE kind = $2 AND name = $3',
      [hashSecret(secret), kind, name],
    );
    return rowCount === 1 ? secret : null;
  }

  /**
   * Written in batches: every principal seen in the same tick is one statement. At 10,000 sites
   * behind a balancer each process wrote one row per site every few seconds, one pooled
   * connection each (43,000 statements in a 2-broadcast run, pg_stat_statements): round trips
   * that held connections the hand-outs waited for. Rows another transaction holds are skipped
   * (a concurrent writer of the same bookkeeping), and a row is never set back in time, so
   * batches of several processes neither wait for nor deadlock with each other.
   */
  recordSeen(principalId: number, at: Date): Promise<void> {
    const pending = this.seenPending;
    const seen = pending.get(principalId);
    if (!seen || seen < at) pending.set(principalId, at);
    return (this.seenWrite ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      this.seenPending = new Map();
      this.seenWrite = null;
      return this.writeSeen(pending);
    }));
  }

  private async writeSeen(seen: Map<number, Date>): Promise<void> {
    await this.q(
      this.pool,
      'touchBatch',
      `WITH s AS (SELECT * FROM unnest($1::bigint[], $2::timestamptz[]) AS s(id, at)),
            locked AS (
              SELECT p.id, s.at FROM principals p JOIN s ON s.id = p.id
                WHERE p.last_seen IS NULL OR p.last_seen < s.at
                ORDER BY p.id FOR NO KEY UPDATE OF p SKIP LOCKED
            )
       UPDATE principals p SET last_seen = locked.at FROM locked WHERE p.id = locked.id`,
      [[...seen.keys()], [...seen.values()]],
    );
  }

  async listSites(): Promise<SiteInfo[]> {
    const { rows } = await this.q<{ name: string; enabled: boolean; last_seen: Date | null }>(
      this.pool,
      'sites',
      "SELECT name, enabled, last_seen FROM principals WHERE kind = 'site' ORDER BY name",
    );
    return rows.map((r) => ({ name: r.name, enabled: r.enabled, lastSeen: iso(r.last_seen) }));
  }

  async createTask(owner: Principal, task: NewTask, quota?: TaskQuota): Promise<Task> {
    const id = await this.tx(async (c) => {
      // With projects defined, a task runs under one and reaches only its sites.
      const gq = this.bind(c);
      const scope = await governance.resolveTaskProject(gq, owner, task.project ?? null);
      let siteIds: number[];
      if (task.sites === null && scope) {
        siteIds = await governance.projectSites(gq, scope.projectId, scope.projectName, null);
      } else if (task.sites === null) {
        const { rows } = await this.q<{ id: number }>(
          c,
          'enabledSites',
          "SELECT id FROM principals WHERE kind = 'site' AND enabled ORDER BY name",
        );
        siteIds = rows.map((r) => r.id);
        if (siteIds.length === 0)
          throw new RegistryError(422, ERROR_CODES.noSites, 'there are no enabled sites to run this task');
      } else {
        const { rows } = await this.q<{ id: number; name: string; enabled: boolean }>(
          c,
          'sitesByName',
          "SELECT id, name, enabled FROM principals WHERE kind = 'site' AND name = ANY($1::text[])",
          [task.sites],
        );
        const byName = new Map(rows.map((r) => [r.name, r]));
        const named = enabledSitesOrRefuse(task.sites, (name) => byName.get(name));
        siteIds = scope
          ? await governance.projectSites(gq, scope.projectId, scope.projectName, named)
          : named.map((s) => s.id);
      }
      // The quota last, just before the insert: its lock on the owner serializes the researcher's
      // creations on every process until commit, and held from the start it covered the site and
      // project look-ups too (bench:scale, 25 creations/s per researcher: 680 ms average wait).
      if (quota) await this.checkQuota(c, owner, task.config.length, quota);
      const { rows } = await this.q<{ id: number }>(
        c,
        'insertTask',
        `INSERT INTO tasks (owner_id, name, image, config, config_bytes, config_type, status, created_at, updated_at, project_id)
           VALUES ($1, $2, $3, $4, $5, $6, 'queued', now(), now(), $7) RETURNING id`,
        [owner.id, task.name, task.image, task.config, task.config.length, task.configType, scope?.projectId ?? null],
      );
      const taskId = rows[0]!.id;
      // One statement for every site: a task for a thousand sites is one round trip, not a thousand.
      // WITH ORDINALITY keeps the run ids in the order the sites were given, as SQLite's loop does.
      await this.q(
        c,
        'insertRuns',
        `INSERT INTO runs (task_id, site_id, status, created_at)
           SELECT $1, s.site_id, 'queued', now() FROM unnest($2::bigint[]) WITH ORDINALITY AS s(site_id, n) ORDER BY s.n`,
        [taskId, siteIds],
      );
      return taskId;
    });
    return (await this.getTask(id))!.task;
  }

  /**
   * Inside createTask's transaction. The owner's row is locked first: two posts of one researcher
   * on two processes would otherwise each count the tasks committed before them and both slip
   * under a limit.
   */
  private async checkQuota(c: pg.ClientBase, owner: Principal, configBytes: number, quota: TaskQuota): Promise<void> {
    await this.q(c, 'lockOwner', 'SELECT id FROM principals WHERE id = $1 FOR UPDATE', [owner.id]);
    // The task_counts counters (migration 0008): a few rows, however many tasks the owner keeps.
    // Read after the owner's lock, so every creation committed before it is counted.
    const { rows } = await this.q<{ open: number; stored: number }>(
      c,
      'ownerUsage',
      `SELECT COALESCE(SUM(n) FILTER (WHERE status IN ('queued', 'running')), 0)::int AS open,
              COALESCE(SUM(config_bytes), 0)::bigint AS stored
         FROM task_counts WHERE owner_id = $1`,
      [owner.id],
    );
    const { open, stored } = rows[0]!;
    if (open + 1 > quota.maxOpenTasks)
      throw new RegistryError(
        429,
        ERROR_CODES.tooManyOpenTasks,
        `${owner.name} has ${open} unfinished tasks, the most allowed; wait for some to finish or cancel them`,
        { open, limit: quota.maxOpenTasks },
      );
    if (stored + configBytes > quota.maxConfigBytes)
      throw new RegistryError(
        413,
        ERROR_CODES.configQuotaExceeded,
        `${owner.name}'s tasks keep ${stored} config bytes; this config (${configBytes} bytes) would pass the quota of ${quota.maxConfigBytes}; delete finished tasks (pht task delete ID) to make room`,
        { stored, config: configBytes, limit: quota.maxConfigBytes },
      );
  }

  async deleteTask(taskId: number): Promise<DeletedTask | null> {
    return this.tx(async (c) => {
      const task = (
        await this.q<{ status: Task['status'] }>(
          c,
          'lockTask',
          'SELECT status, cancelled FROM tasks WHERE id = $1 FOR UPDATE',
          [taskId],
        )
      ).rows[0];
      if (!task) return null;
      const open = (
        await this.q<{ n: number }>(
          c,
          'openRunsOfTask',
          "SELECT COUNT(*)::int AS n FROM runs WHERE task_id = $1 AND status IN ('queued', 'assigned', 'running', 'awaiting_approval')",
          [taskId],
        )
      ).rows[0]!.n;
      if (!isFinalTaskStatus(task.status) || open > 0)
        throw new RegistryError(
          409,
          ERROR_CODES.taskNotFinal,
          `task ${taskId} is ${task.status}; only a finished task can be deleted (cancel it first)`,
          { status: task.status },
        );
      const files = await this.q<{ stored_as: string }>(
        c,
        'deleteFilesOfTask',
        'DELETE FROM run_files WHERE run_id IN (SELECT id FROM runs WHERE task_id = $1) RETURNING stored_as',
        [taskId],
      );
      await this.q(
        c,
        'deleteLogsOfTask',
        'DELETE FROM run_logs WHERE run_id IN (SELECT id FROM runs WHERE task_id = $1)',
        [taskId],
      );
      const runs = (await this.q(c, 'deleteRunsOfTask', 'DELETE FROM runs WHERE task_id = $1', [taskId])).rowCount ?? 0;
      await this.q(c, 'deleteTask', 'DELETE FROM tasks WHERE id = $1', [taskId]);
      return { runs, storedFiles: files.rows.map((r) => r.stored_as) };
    });
  }

  private async runsOfTasks(on: Queryable, taskIds: number[]): Promise<Map<number, RunDetail[]>> {
    const { rows } = await this.q<RunRow>(
      on,
      'runsOfTasks',
      `SELECT ${RUN_COLUMNS} FROM runs r JOIN principals p ON p.id = r.site_id WHERE r.task_id = ANY($1::bigint[]) ORDER BY r.id`,
      [taskIds],
    );
    const byTask = new Map<number, RunDetail[]>(taskIds.map((id) => [id, []]));
    for (const row of rows) byTask.get(row.task_id)?.push(toRunDetail(row));
    return byTask;
  }

  private static toTask(row: TaskRow, runs: RunDetail[]): Task {
    return {
      id: row.id,
      name: row.name,
      image: row.image,
      owner: row.owner_name,
      status: row.status,
      createdAt: row.created_at.toISOString(),
      runs,
    };
  }

  async getTask(taskId: number): Promise<OwnedTask | null> {
    const { rows } = await this.q<TaskRow>(
      this.pool,
      'task',
      `SELECT ${TASK_COLUMNS} FROM tasks t JOIN principals o ON o.id = t.owner_id WHERE t.id = $1`,
      [taskId],
    );
    const row = rows[0];
    if (!row) return null;
    const runs = (await this.runsOfTasks(this.pool, [row.id])).get(row.id) ?? [];
    return { task: PostgresRegistryStore.toTask(row, runs), ownerId: row.owner_id };
  }

  async getTaskStatus(taskId: number): Promise<Task['status'] | null> {
    const { rows } = await this.q<{ status: Task['status'] }>(
      this.pool,
      'taskStatus',
      'SELECT status FROM tasks WHERE id = $1',
      [taskId],
    );
    return rows[0]?.status ?? null;
  }

  async getTaskConfig(taskId: number): Promise<{ config: Buffer; configType: string } | null> {
    const { rows } = await this.q<{ config: Buffer; config_type: string }>(
      this.pool,
      'taskConfig',
      'SELECT config, config_type FROM tasks WHERE id = $1',
      [taskId],
    );
    return rows[0] ? { config: rows[0].config, configType: rows[0].config_type } : null;
  }

  /**
   * A listing's `total`: from the task_counts counters (migration 0008) when it filters by owner
   * and status only, so that it does not grow with the history; a COUNT for the other filters.
   */
  private async countTasks(query: TaskQuery, params: unknown[]): Promise<number> {
    const { rows } =
      query.site || query.text
        ? await this.q<{ n: number }>(
            this.pool,
            'countTasks',
            `SELECT COUNT(*)::int AS n FROM tasks t WHERE ${TASK_FILTER}`,
            params,
          )
        : await this.q<{ n: number }>(
            this.pool,
            'countTasksFromCounters',
            `SELECT COALESCE(SUM(n), 0)::int AS n FROM task_counts
               WHERE ($1::bigint IS NULL OR owner_id = $1) AND ($2::text IS NULL OR status = $2)`,
            [query.ownerId, query.status],
          );
    return rows[0]!.n;
  }

  async listTasks(query: TaskQuery): Promise<{ tasks: Task[]; total: number }> {
    // NULL parameters switch a filter off, so one prepared statement serves every combination.
    const filter = TASK_FILTER;
    const params = taskFilterParams(query);
    const total = await this.countTasks(query, params);
    const { rows } = await this.q<TaskRow>(
      this.pool,
      'listTasks',
      `SELECT ${TASK_COLUMNS} FROM tasks t JOIN principals o ON o.id = t.owner_id WHERE ${filter} ORDER BY t.id DESC LIMIT $5 OFFSET $6`,
      [...params, query.limit, query.offset],
    );
    const runs = await this.runsOfTasks(
      this.pool,
      rows.map((r) => r.id),
    );
    return {
      tasks: rows.map((r) => PostgresRegistryStore.toTask(r, runs.get(r.id) ?? [])),
      total,
    };
  }

  async listTaskSummaries(query: TaskQuery): Promise<{ tasks: TaskSummary[]; total: number }> {
    const filter = TASK_FILTER;
    const params = taskFilterParams(query);
    const total = await this.countTasks(query, params);
    const { rows } = await this.q<TaskRow>(
      this.pool,
      'listTasks',
      `SELECT ${TASK_COLUMNS} FROM tasks t JOIN principals o ON o.id = t.owner_id WHERE ${filter} ORDER BY t.id DESC LIMIT $5 OFFSET $6`,
      [...params, query.limit, query.offset],
    );
    // One query for the page, from the (task_id, status) index: counts, never run rows.
    const counted = await this.q<{ task_id: number; status: RunState; n: number }>(
      this.pool,
      'runCountsOfTasks',
      'SELECT task_id, status, COUNT(*)::int AS n FROM runs WHERE task_id = ANY($1::bigint[]) GROUP BY task_id, status',
      [rows.map((r) => r.id)],
    );
    const counts = new Map<number, Partial<Record<RunState, number>>>();
    for (const c of counted.rows) counts.set(c.task_id, { ...counts.get(c.task_id), [c.status]: c.n });
    return {
      tasks: rows.map((r) => {
        const runCounts = counts.get(r.id) ?? {};
        return {
          id: r.id,
          name: r.name,
          image: r.image,
          owner: r.owner_name,
          status: r.status,
          createdAt: r.created_at.toISOString(),
          runCounts,
          runTotal: Object.values(runCounts).reduce((a, b) => a + b, 0),
        };
      }),
      total,
    };
  }

  async siteRunCounts(ownerId: number | null): Promise<Map<string, Partial<Record<RunState, number>>>> {
    const { rows } =
      ownerId === null
        ? await this.q<{ site: string; status: RunState; n: number }>(
            this.pool,
            'runCountsBySite',
            'SELECT p.name AS site, c.status, c.n FROM (SELECT site_id, status, COUNT(*)::int AS n FROM runs GROUP BY site_id, status) c JOIN principals p ON p.id = c.site_id',
          )
        : await this.q<{ site: string; status: RunState; n: number }>(
            this.pool,
            'runCountsBySiteOfOwner',
            'SELECT p.name AS site, c.status, c.n FROM (SELECT r.site_id, r.status, COUNT(*)::int AS n FROM tasks t JOIN runs r ON r.task_id = t.id WHERE t.owner_id = $1 GROUP BY r.site_id, r.status) c JOIN principals p ON p.id = c.site_id',
            [ownerId],
          );
    const bySite = new Map<string, Partial<Record<RunState, number>>>();
    for (const r of rows) bySite.set(r.site, { ...bySite.get(r.site), [r.status]: r.n });
    return bySite;
  }

  /**
   * Recomputes a task's stored status from its runs, inside the transaction that changed them.
   * The task row is locked first: two runs of one task finishing at once in two processes would
   * otherwise each count the other's run as unfinished, and the task would never end. Once the
   * lock is held, the count (a new statement) sees every run change committed before it.
   */
  private async refreshTaskStatus(c: pg.ClientBase, taskId: number, skipIfLocked = false): Promise<void> {
    const task = (
      await this.q<{ status: Task['status']; cancelled: boolean }>(
        c,
        skipIfLocked ? 'lockTaskUnlessLocked' : 'lockTask',
        `SELECT status, cancelled FROM tasks WHERE id = $1 FOR UPDATE${skipIfLocked ? ' SKIP LOCKED' : ''}`,
        [taskId],
      )
    ).rows[0];
    if (!task) return;
    // Which states the task's runs are in: one (task_id, status) index probe per state. DISTINCT
    // walked all of a broadcast's runs at each change of one of them, with the task row locked, so
    // the starts and finishes of a 10,000-site task queued behind each other for that lock.
    const { rows } = await this.q<{ status: RunState }>(
      c,
      'runStatesOfTask',
      'SELECT s.status FROM unnest($2::text[]) AS s(status) WHERE EXISTS (SELECT 1 FROM runs r WHERE r.task_id = $1 AND r.status = s.status)',
      [taskId, RUN_STATES],
    );
    const status = deriveTaskStatus(
      rows.map((r) => r.status),
      task.cancelled,
    );
    if (status !== task.status)
      await this.q(c, 'setTaskStatus', 'UPDATE tasks SET status = $1, updated_at = now() WHERE id = $2', [
        status,
        taskId,
      ]);
  }

  /** Several tasks, always in id order: two transactions locking the same tasks cannot deadlock. */
  private async refreshTaskStatuses(c: pg.ClientBase, taskIds: Iterable<number>): Promise<void> {
    for (const id of [...new Set(taskIds)].sort((a, b) => a - b)) await this.refreshTaskStatus(c, id);
  }

  async cancelTask(taskId: number): Promise<Task> {
    await this.tx(async (c) => {
      // Runs that never reached the site end at once; running ones wait for the site to stop them.
      await this.q(
        c,
        'cancelWaitingRuns',
        `UPDATE runs SET status = 'cancelled', reason = 'cancelled by the researcher', finished_at = now(), lease_expires_at = NULL
           WHERE task_id = $1 AND status IN ('queued', 'assigned')`,
        [taskId],
      );
      await this.q(
        c,
        'flagRunningRuns',
        // From the flag on, the site has one lease to confirm (see forceCancel in sweep); a
        // repeated cancel does not extend it.
        `UPDATE runs SET cancel_requested = TRUE, last_contact_at = $2
           WHERE task_id = $1 AND status IN ('running', 'awaiting_approval') AND NOT cancel_requested`,
        [taskId, Date.now()],
      );
      // The task row last, as every other transaction does (runs, then their task): taking it
      // first would deadlock with a claim holding one of these runs.
      await this.q(c, 'cancelTask', 'UPDATE tasks SET cancelled = TRUE, updated_at = now() WHERE id = $1', [taskId]);
      await this.refreshTaskStatus(c, taskId);
    });
    return (await this.getTask(taskId))!.task;
  }

  async claimNextRun(siteId: number, leaseMs: number): Promise<RunAssignment | null> {
    // The batch claim for one site: one statement, so one round trip and no transaction held open
    // across the event loop (under a broadcast, claims are most of the registry's database work).
    const [claimed] = await this.claimNextRuns([siteId], leaseMs);
    return claimed?.run ?? null;
  }

  /**
   * The next queued run of each of `siteIds`, claimed in one statement (the batch hand-out of a new
   * task to the long polls parked on this process, master/hand-out.ts): a broadcast to 1,000
   * waiting sites is one round trip, not 1,000 claims. SKIP LOCKED per site: two processes
   * polling for the same site never wait on, nor both take, the same run; the second takes the
   * next queued run or none, and the outer status check makes the update a no-op for a run another
   * transaction changed meanwhile. The tasks that leave
   * "queued" are then recounted once each, in one transaction.
   */
  async claimNextRuns(siteIds: readonly number[], leaseMs: number): Promise<{ siteId: number; run: RunAssignment }[]> {
    const ids = [...new Set(siteIds)];
    if (ids.length === 0) return [];
    const now = Date.now();
    const { rows } = await this.q<{
      id: number;
      site_id: number;
      task_id: number;
      attempt: number;
      image: string;
      config: Buffer | null;
      config_type: string;
      task_status: Task['status'];
      researcher: string;
      organization: string | null;
      project: string | null;
    }>(
      this.pool,
      'claimBatch',
      `WITH next AS (
         SELECT q.id FROM unnest($1::bigint[]) AS want(site_id) CROSS JOIN LATERAL (
           SELECT id FROM runs WHERE site_id = want.site_id AND status = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
         ) q
       )
       UPDATE runs r SET status = 'assigned', attempt = r.attempt + 1, lease_expires_at = $2, last_contact_at = $3
         FROM next, tasks t JOIN principals o ON o.id = t.owner_id
           LEFT JOIN organizations org ON org.id = o.organization_id LEFT JOIN projects pj ON pj.id = t.project_id
         WHERE r.id = next.id AND r.status = 'queued' AND t.id = r.task_id
         RETURNING r.id, r.site_id, r.task_id, r.attempt, t.image, t.config, t.config_type, t.status AS task_status,
           o.name AS researcher, org.name AS organization, pj.name AS project`,
      [ids, now + leaseMs, now],
    );
    // With its runs assigned (neither queued nor final) a task's derived status can only be
    // "running": a task already running needs no refresh (and no lock on its row, for which a
    // broadcast's claims would otherwise queue). A task still "queued" is refreshed once, however
    // many of its runs were claimed, in a transaction of its own; were this process to die
    // first, the run's next change (its start, or the sweep of its lease) refreshes it. When
    // another transaction holds the task's row, it derives the status after this claim committed:
    // "running" either way.
    const stale = [...new Set(rows.filter((r) => r.task_status !== 'running').map((r) => r.task_id))];
    if (stale.length > 0)
      await this.tx(async (c) => {
        for (const id of stale.sort((a, b) => a - b)) await this.refreshTaskStatus(c, id, true);
      });
    return rows.map((row) => ({
      siteId: row.site_id,
      run: {
        id: row.id,
        taskId: row.task_id,
        image: row.image,
        config: decodeConfig(row.config, row.config_type),
        attempt: row.attempt,
        postedBy: { researcher: row.researcher, organization: row.organization, project: row.project },
      },
    }));
  }

  /**
   * Puts back runs that a batch claim took for a long poll that hung up (or whose wait ended)
   * while the claim's round trip was in flight (master/hand-out.ts): nobody received them, so
   * they are queued again at once, with the attempt the claim counted taken back, instead of
   * waiting out a lease (60 s) each. Only a run still assigned under that very attempt is put
   * back: one the sweep or a cancel changed meanwhile is left alone. Answers the runs put back.
   */
  async releaseClaimedRuns(runs: readonly { id: number; attempt: number }[]): Promise<number[]> {
    if (runs.length === 0) return [];
    return this.tx(async (c) => {
      const { rows } = await this.q<{ id: number; task_id: number }>(
        c,
        'releaseClaimed',
        `UPDATE runs r SET status = 'queued', attempt = r.attempt - 1, lease_expires_at = NULL
           FROM unnest($1::bigint[], $2::int[]) AS g(id, attempt)
           WHERE r.id = g.id AND r.status = 'assigned' AND r.attempt = g.attempt
           RETURNING r.id, r.task_id`,
        [runs.map((r) => r.id), runs.map((r) => r.attempt)],
      );
      // A task whose every run is queued again is "queued" again.
      await this.refreshTaskStatuses(
        c,
        rows.map((r) => r.task_id),
      );
      return rows.map((r) => r.id);
    });
  }

  /** The site's run, locked for the rest of the transaction (pass `lock: false` to only read). */
  private async siteRunRow(
    c: Queryable,
    siteId: number,
    runId: number,
    lock = true,
  ): Promise<RunRow & { task_status: Task['status'] }> {
    const { rows } = await this.q<RunRow & { task_status: Task['status'] }>(
      c,
      lock ? 'siteRunForUpdate' : 'siteRun',
      `SELECT ${RUN_COLUMNS}, t.status AS task_status FROM runs r JOIN principals p ON p.id = r.site_id JOIN tasks t ON t.id = r.task_id
         WHERE r.id = $1 AND r.site_id = $2${lock ? ' FOR UPDATE OF r' : ''}`,
      [runId, siteId],
    );
    if (!rows[0]) throw new NotFoundError(`run ${runId}`);
    return rows[0];
  }

  private async contact(c: Queryable, runId: number): Promise<void> {
    await this.q(c, 'contact', 'UPDATE runs SET last_contact_at = $1 WHERE id = $2', [Date.now(), runId]);
  }

  async getSiteRun(siteId: number, runId: number): Promise<SiteRunView | null> {
    try {
      return toSiteView(await this.siteRunRow(this.pool, siteId, runId, false));
    } catch (e) {
      if (e instanceof NotFoundError) return null;
      throw e;
    }
  }

  async listSiteRuns(siteId: number, states: readonly RunState[]): Promise<SiteRunView[]> {
    // Unfinished runs only: a site's history can be long, its open work is short.
    const { rows } = await this.q<RunRow>(
      this.pool,
      'siteUnfinishedRuns',
      `SELECT ${RUN_COLUMNS} FROM runs r JOIN principals p ON p.id = r.site_id WHERE r.site_id = $1 AND r.status IN ('queued', 'assigned', 'running', 'awaiting_approval') ORDER BY r.id`,
      [siteId],
    );
    return rows.filter((r) => states.includes(r.status)).map(toSiteView);
  }

  async startRun(siteId: number, runId: number): Promise<SiteRunView> {
    return this.tx(async (c) => {
      const row = await this.siteRunRow(c, siteId, runId);
      refuseUnlessAllowed('start', row);
      const now = Date.now();
      await this.q(
        c,
        'start',
        "UPDATE runs SET status = 'running', started_at = $1, lease_expires_at = NULL, last_contact_at = $2 WHERE id = $3",
        [new Date(now), now, runId],
      );
      // An assigned run that starts leaves the derived status "running" whatever the others do;
      // while this run's row is locked, no other transaction can see the task as all queued, so a
      // task already "running" stays so without taking its row lock (a broadcast's starts would
      // otherwise queue for it).
      if (!(row.status === 'assigned' && row.task_status === 'running')) await this.refreshTaskStatus(c, row.task_id);
      return { ...toSiteView(row), status: 'running' };
    });
  }

  async reportProgress(siteId: number, runId: number, progress: ProgressReport): Promise<SiteRunView> {
    return this.tx(async (c) => {
      const row = await this.siteRunRow(c, siteId, runId);
      refuseUnlessAllowed('progress', row);
      await this.q(
        c,
        'progress',
        'UPDATE runs SET progress_current = $1, progress_total = $2, progress_message = $3, last_contact_at = $4 WHERE id = $5',
        [progress.current, progress.total ?? null, progress.message ?? null, Date.now(), runId],
      );
      return toSiteView(row);
    });
  }

  async appendLog(siteId: number, runId: number, text: string, maxLogBytes: number): Promise<SiteRunView> {
    return this.tx(async (c) => {
      const row = await this.siteRunRow(c, siteId, runId);
      refuseUnlessAllowed('log', row);
      if (row.log_truncated || text.length === 0) {
        await this.contact(c, runId);
        return toSiteView(row);
      }
      const bytes = Buffer.byteLength(text);
      const room = maxLogBytes - row.log_bytes;
      let stored = text;
      let truncated = false;
      let counted = bytes;
      if (bytes > room) {
        const kept = Buffer.from(text)
          .subarray(0, Math.max(0, room))
          .toString('utf8')
          .replace(/\uFFFD+$/, '');
        stored = kept + `\n[log truncated: the registry keeps at most ${maxLogBytes} bytes per run]\n`;
        truncated = true;
        counted = Buffer.byteLength(kept);
      }
      await this.q(c, 'insertLog', 'INSERT INTO run_logs (run_id, text) VALUES ($1, $2)', [runId, stored]);
      await this.q(
        c,
        'logBytes',
        'UPDATE runs SET log_bytes = log_bytes + $1, log_truncated = $2, last_contact_at = $3 WHERE id = $4',
        [counted, truncated, Date.now(), runId],
      );
      return toSiteView(row);
    });
  }

  async checkFileUpload(
    siteId: number,
    runId: number,
    name: string,
    limits: FileLimits,
  ): Promise<{ maxBytes: number }> {
    const row = await this.siteRunRow(this.pool, siteId, runId, false);
    refuseUnlessAllowed('upload', row);
    const existing = await this.fileRow(this.pool, runId, name);
    // A final run keeps its files; only an identical copy of one of them is accepted (and dropped).
    if (isFinalRunState(row.status)) {
      if (!existing) throw new ConflictError(`cannot add files: run ${runId} is ${row.status}`, { status: row.status });
      return { maxBytes: limits.resultFileBytes };
    }
    const stats = await this.fileStats(this.pool, runId);
    refuseOverFileLimits(runId, existing, stats, 0, limits);
    const room = limits.runResultBytes - (stats.bytes - (existing?.size ?? 0));
    return { maxBytes: Math.max(0, Math.min(limits.resultFileBytes, room)) };
  }

  private async fileStats(on: Queryable, runId: number): Promise<{ n: number; bytes: number }> {
    const { rows } = await this.q<{ n: number; bytes: number }>(
      on,
      'fileStats',
      'SELECT COUNT(*)::int AS n, COALESCE(SUM(size), 0)::bigint AS bytes FROM run_files WHERE run_id = $1',
      [runId],
    );
    return rows[0]!;
  }

  private async fileRow(on: Queryable, runId: number, name: string): Promise<StoredFile | null> {
    const { rows } = await this.q<{ name: string; size: number; sha256: string; stored_as: string }>(
      on,
      'fileByName',
      'SELECT name, size, sha256, stored_as FROM run_files WHERE run_id = $1 AND name = $2',
      [runId, name],
    );
    const f = rows[0];
    return f ? { name: f.name, size: f.size, sha256: f.sha256, storedAs: f.stored_as } : null;
  }

  async recordFile(
    siteId: number,
    runId: number,
    file: StoredFile,
    limits: FileLimits,
  ): Promise<{ unreferenced: string[] }> {
    return this.tx(async (c) => {
      // The run's row lock serializes the uploads of one run: each checks the limits against the
      // totals the others committed, so together they cannot pass the run's limit.
      const row = await this.siteRunRow(c, siteId, runId);
      refuseUnlessAllowed('upload', row);
      const existing = await this.fileRow(c, runId, file.name);
      if (isFinalRunState(row.status)) {
        // A site retrying after a crash may upload again what it already delivered: harmless.
        if (existing && existing.sha256 === file.sha256 && existing.size === file.size)
          return { unreferenced: [file.storedAs] };
        throw new ConflictError(`cannot change files: run ${runId} is ${row.status}`, { status: row.status });
      }
      refuseOverFileLimits(runId, existing, await this.fileStats(c, runId), file.size, limits);
      await this.q(
        c,
        'upsertFile',
        `INSERT INTO run_files (run_id, name, size, sha256, stored_as, created_at) VALUES ($1, $2, $3, $4, $5, now())
           ON CONFLICT (run_id, name) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256, stored_as = excluded.stored_as, created_at = excluded.created_at`,
        [runId, file.name, file.size, file.sha256, file.storedAs],
      );
      await this.contact(c, runId);
      return { unreferenced: existing ? [existing.storedAs] : [] };
    });
  }

  async finishRun(siteId: number, runId: number, report: FinishReport): Promise<SiteRunView> {
    return this.tx(async (c) => {
      const row = await this.siteRunRow(c, siteId, runId);
      refuseUnlessAllowed({ finish: report.state }, row);
      // Repeating the same finish (a retry after a lost response) is answered as success.
      if (isFinalRunState(row.status)) return toSiteView(row);
      const now = Date.now();
      await this.q(
        c,
        'finish',
        `UPDATE runs SET status = $1, exit_code = $2, reason = $3, digest = $4, duration_ms = $5, finished_at = $6,
           lease_expires_at = NULL, last_contact_at = $7 WHERE id = $8`,
        [
          report.state,
          report.exitCode ?? null,
          report.reason ?? null,
          report.digest ?? null,
          report.durationMs ?? null,
          new Date(now),
          now,
          runId,
        ],
      );
      if (!(row.status === 'running' && row.task_status === 'running' && (await this.holdAnotherOpenRun(c, row))))
        await this.refreshTaskStatus(c, row.task_id);
      return { ...toSiteView(row), status: report.state };
    });
  }

  /**
   * Whether another assigned or running run of the task exists, share-locked until this
   * transaction ends: then this finish cannot be the task's last, and the status ("running")
   * cannot change, so the task row need not be locked. The share lock makes a site finishing that
   * other run wait for this commit and then see this run final; a run locked by someone else is
   * skipped, and when none is left the task row is locked and the status derived as usual.
   * Queued runs are never locked here: a claim skips locked runs and would answer "no work".
   */
  private async holdAnotherOpenRun(c: pg.ClientBase, row: RunRow): Promise<boolean> {
    const { rowCount } = await this.q(
      c,
      'holdAnotherOpenRun',
      "SELECT id FROM runs WHERE task_id = $1 AND id <> $2 AND status IN ('assigned', 'running', 'awaiting_approval') LIMIT 1 FOR SHARE SKIP LOCKED",
      [row.task_id, row.id],
    );
    return rowCount === 1;
  }

  async getRun(runId: number): Promise<OwnedRun | null> {
    const { rows } = await this.q<RunRow & { owner_id: number }>(
      this.pool,
      'run',
      `SELECT ${RUN_COLUMNS}, t.owner_id FROM runs r JOIN principals p ON p.id = r.site_id JOIN tasks t ON t.id = r.task_id WHERE r.id = $1`,
      [runId],
    );
    const row = rows[0];
    return row ? { run: toRunDetail(row), ownerId: row.owner_id } : null;
  }

  async readLog(runId: number): Promise<string> {
    const { rows } = await this.q<{ text: string }>(
      this.pool,
      'readLog',
      'SELECT text FROM run_logs WHERE run_id = $1 ORDER BY id',
      [runId],
    );
    return rows.map((r) => r.text).join('');
  }

  async listFiles(runId: number): Promise<ResultFile[]> {
    const { rows } = await this.q<ResultFile>(
      this.pool,
      'files',
      'SELECT name, size, sha256 FROM run_files WHERE run_id = $1 ORDER BY name',
      [runId],
    );
    return rows;
  }

  async getFile(runId: number, name: string): Promise<StoredFile | null> {
    return this.fileRow(this.pool, runId, name);
  }

  async storedFileNames(): Promise<Set<string>> {
    const { rows } = await this.q<{ stored_as: string }>(this.pool, 'storedAs', 'SELECT stored_as FROM run_files');
    return new Set(rows.map((r) => r.stored_as));
  }

  async countRunsByState(): Promise<Partial<Record<RunState, number>>> {
    const { rows } = await this.q<{ status: RunState; n: number }>(
      this.pool,
      'countRunsByState',
      'SELECT status, COUNT(*)::int AS n FROM runs GROUP BY status',
    );
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  }

  /**
   * Every registry process sweeps; SKIP LOCKED lets two sweeps (or a sweep and a site's request)
   * pass each other instead of waiting, and each run changes in exactly one of them.
   */
  async sweep(now: number, leaseMs: number): Promise<SweepOutcome> {
    return this.tx(async (c) => {
      const requeued = await this.q<{ task_id: number; site_name: string }>(
        c,
        'requeueExpired',
        `WITH expired AS (
           SELECT id FROM runs WHERE status = 'assigned' AND lease_expires_at < $1 ORDER BY id FOR UPDATE SKIP LOCKED
         )
         UPDATE runs r SET status = 'queued', lease_expires_at = NULL FROM expired, principals p
           WHERE r.id = expired.id AND r.status = 'assigned' AND p.id = r.site_id
           RETURNING r.task_id, p.name AS site_name`,
        [now],
      );
      // A cancelled run the site never confirmed (it went silent) is ended after one lease period.
      const forced = await this.q<{ task_id: number }>(
        c,
        'forceCancel',
        `WITH silent AS (
           SELECT id FROM runs WHERE status IN ('running', 'awaiting_approval') AND cancel_requested AND last_contact_at < $1
             ORDER BY id FOR UPDATE SKIP LOCKED
         )
         UPDATE runs r SET status = 'cancelled', reason = 'cancelled; the site did not confirm in time', finished_at = $2
           FROM silent WHERE r.id = silent.id AND r.status IN ('running', 'awaiting_approval')
           RETURNING r.task_id`,
        [now - leaseMs, new Date(now)],
      );
      const changedTasks = new Set([...requeued.rows, ...forced.rows].map((r) => r.task_id));
      await this.refreshTaskStatuses(c, changedTasks);
      return { requeuedSites: [...new Set(requeued.rows.map((r) => r.site_name))], changedTasks: [...changedTasks] };
    });
  }

  /** Binds the governance module's statements to the pool or to a transaction's connection. */
  private bind(on: Queryable): governance.PgQuery {
    return (name, text, values) => this.q(on, name, text, values);
  }

  async createOrganization(name: string): Promise<void> {
    await governance.createOrganization(this.bind(this.pool), name);
  }

  async setOrganization(kind: PrincipalKind, name: string, organization: string): Promise<void> {
    await governance.setOrganization(this.bind(this.pool), kind, name, organization);
  }

  async createProject(name: string): Promise<void> {
    await governance.createProject(this.bind(this.pool), name);
  }

  async addToProject(project: string, kind: PrincipalKind, name: string): Promise<boolean> {
    return governance.addToProject(this.bind(this.pool), project, kind, name);
  }

  async listOrganizations(): Promise<GovernanceListing[]> {
    return governance.listOrganizations(this.bind(this.pool));
  }

  async listProjects(): Promise<GovernanceListing[]> {
    return governance.listProjects(this.bind(this.pool));
  }

  async addImageSignature(postedBy: number, signature: Omit<ImageSignature, 'createdAt'>): Promise<void> {
    await governance.storeSignature(this.bind(this.pool), postedBy, signature);
  }

  async listImageSignatures(digest: string): Promise<ImageSignature[]> {
    return governance.signaturesOf(this.bind(this.pool), digest);
  }

  async awaitApproval(siteId: number, runId: number): Promise<SiteRunView> {
    return this.tx(async (c) => {
      const row = await this.siteRunRow(c, siteId, runId);
      // Repeatable: a site that lost the answer asks again.
      if (row.status === 'awaiting_approval') return toSiteView(row);
      if (!canMove(row.status, 'awaiting_approval'))
        throw new ConflictError(`run ${runId} cannot await approval: it is ${row.status}`, { status: row.status });
      await this.q(c, 'holdRun', "UPDATE runs SET status = 'awaiting_approval', last_contact_at = $1 WHERE id = $2", [
        Date.now(),
        runId,
      ]);
      // running → awaiting_approval keeps the run open and not queued: a task already "running"
      // stays so, and its row lock is not needed (as in startRun).
      if (row.task_status !== 'running') await this.refreshTaskStatus(c, row.task_id);
      return { ...toSiteView(row), status: 'awaiting_approval' };
    });
  }

  async expireBatch(cutoffs: RetentionCutoffs, batch: number): Promise<ExpiryBatch> {
    return this.tx((c) => retention.expireBatch(c, cutoffs, batch));
  }

  async previewExpiry(cutoffs: RetentionCutoffs): Promise<ExpiryPreview> {
    return retention.previewExpiry(this.pool, cutoffs);
  }

  async expiredParts(runId: number): Promise<{ log: boolean; files: boolean } | null> {
    return retention.expiredParts(this.pool, runId);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.seenWrite?.catch(() => undefined);
    await this.pool.end();
  }
}
