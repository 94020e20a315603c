import crypto from 'node:crypto';
import Database from 'better-sqlite3';
import {
  deriveTaskStatus,
  isFinalRunState,
  isFinalTaskStatus,
  RUN_STATES,
  siteActionRefusal,
  canMove,
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
import type { ImageSignature } from '../../shared/governance.js';
import { CreationBatcher, type CreationOutcome } from '../creation-batcher.js';
import { ConflictError, NotFoundError, RegistryError } from '../errors.js';
import { enabledSitesOrRefuse } from './task-sites.js';
import { migrate } from './migrate.js';
import * as governance from './sqlite-governance.js';
import * as retention from './sqlite-retention.js';
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

interface PrincipalRow {
  id: number;
  kind: PrincipalKind;
  name: string;
  role: PrincipalRole;
  enabled: number;
  created_at: string;
  last_seen: string | null;
}

interface RunRow {
  id: number;
  task_id: number;
  site_id: number;
  site_name: string;
  status: RunState;
  attempt: number;
  lease_expires_at: number | null;
  cancel_requested: number;
  last_contact_at: number | null;
  exit_code: number | null;
  reason: string | null;
  digest: string | null;
  duration_ms: number | null;
  progress_current: number | null;
  progress_total: number | null;
  progress_message: string | null;
  log_bytes: number;
  log_truncated: number;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  log_expired_at: string | null;
  files_expired_at: string | null;
}

interface TaskRow {
  id: number;
  owner_id: number;
  owner_name: string;
  name: string | null;
  image: string;
  status: Task['status'];
  cancelled: number;
  created_at: string;
}

const RUN_COLUMNS = `r.*, p.name AS site_name`;
const TASK_COLUMNS = `t.id, t.owner_id, o.name AS owner_name, t.name, t.image, t.status, t.cancelled, t.created_at`;

function toPrincipal(row: PrincipalRow): Principal {
  return {
    id: row.id,
    kind: row.kind,
    name: row.name,
    role: row.role,
    enabled: row.enabled === 1,
    createdAt: row.created_at,
    lastSeen: row.last_seen,
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
    cancelRequested: row.cancel_requested === 1,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    logBytes: row.log_bytes,
    logExpiredAt: row.log_expired_at,
    filesExpiredAt: row.files_expired_at,
  };
}

function toSiteView(row: RunRow): SiteRunView {
  return { id: row.id, taskId: row.task_id, status: row.status, cancelRequested: row.cancel_requested === 1 };
}

const isoNow = () => new Date().toISOString();

/** 409 when shared/run-state.ts does not allow the site's action in the run's state. */
function refuseUnlessAllowed(action: SiteAction, row: RunRow): void {
  const refusal = siteActionRefusal(action, row.status);
  if (refusal !== null) throw new ConflictError(`run ${row.id} ${refusal}`, { status: row.status });
}

/** A creation waiting for its batch (createTask's arguments). */
interface PendingCreation {
  owner: Principal;
  task: NewTask;
  quota: TaskQuota | undefined;
}

/** The SQLite backend: one file, WAL, every multi-step change in one transaction. */
export class SqliteRegistryStore implements RegistryStore {
  private readonly db: Database.Database;
  private readonly stmt;
  /** Organizations, projects and signatures (sqlite-governance.ts). */
  private readonly gov: governance.GovernanceStatements;
  /** Expiry of finished runs' logs and files (sqlite-retention.ts). */
  private readonly retention: retention.RetentionStatements;
  /** Group commit of task creations (createTask). */
  private readonly creations = new CreationBatcher<PendingCreation, Task>((batch) => this.writeCreations(batch));
  /** One transaction for a batch of creations, each in its own savepoint. */
  private readonly insertTasks: (batch: PendingCreation[]) => CreationOutcome<Task | number>[];

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    // NORMAL under WAL keeps every committed transaction across a process crash; only an OS crash
    // can lose the last few, and never corrupts the file.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    migrate(this.db);
    const db = this.db;
    // A nested better-sqlite3 transaction is a SAVEPOINT, rolled back alone when it throws.
    const insertTaskOnce = db.transaction((c: PendingCreation) => this.insertTask(c));
    this.insertTasks = db.transaction((batch: PendingCreation[]) =>
      batch.map((c): CreationOutcome<Task | number> => {
        try {
          return { ok: true, value: insertTaskOnce(c) };
        } catch (e) {
          // A refusal is this creation's; anything else is the store failing: the whole batch
          // rolls back and every creation in it is refused with that error.
          if (e instanceof RegistryError) return { ok: false, error: e };
          throw e;
        }
      }),
    );
    this.gov = governance.prepareGovernance(db);
    this.retention = retention.prepareRetention(db);
    this.stmt = {
      insertPrincipal: db.prepare(
        'INSERT INTO principals (kind, name, role, key_hash, created_at) VALUES (?, ?, ?, ?, ?) RETURNING *',
      ),
      principalByHash: db.prepare('SELECT * FROM principals WHERE key_hash = ?'),
      // Changes only when another connection (the admin command) commits: cheap, no page read.
      dataVersion: db.prepare('PRAGMA data_version').pluck(),
      principalsAll: db.prepare('SELECT * FROM principals ORDER BY kind, name'),
      principalsByKind: db.prepare('SELECT * FROM principals WHERE kind = ? ORDER BY name'),
      setEnabled: db.prepare('UPDATE principals SET enabled = ? WHERE kind = ? AND name = ?'),
      setKeyHash: db.prepare('UPDATE principals SET key_hash = ? WHERE kind = ? AND name = ?'),
      touch: db.prepare('UPDATE principals SET last_seen = ? WHERE id = ?'),
      sites: db.prepare("SELECT name, enabled, last_seen FROM principals WHERE kind = 'site' ORDER BY name"),
      siteByName: db.prepare("SELECT id, enabled FROM principals WHERE kind = 'site' AND name = ?"),
      enabledSites: db.prepare("SELECT id FROM principals WHERE kind = 'site' AND enabled = 1 ORDER BY name"),
      insertTask: db.prepare(
        'INSERT INTO tasks (owner_id, name, image, config, config_bytes, config_type, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      // The task_counts counters (migration 0006): a few rows, however many tasks the owner keeps
      // (counting the open tasks themselves was 11 % of a creation's CPU with 25,000 open). Both
      // quota figures come from one pass over those rows (one statement fewer per creation).
      quotaOfOwner: db.prepare(
        "SELECT COALESCE(SUM(CASE WHEN status IN ('queued', 'running') THEN n END), 0) AS open, COALESCE(SUM(config_bytes), 0) AS stored FROM task_counts WHERE owner_id = ?",
      ),
      openRunsOfTask: db
        .prepare("SELECT COUNT(*) FROM runs WHERE task_id = ? AND status IN ('queued', 'assigned', 'running')")
        .pluck(),
      storedFilesOfTask: db
        .prepare('SELECT f.stored_as FROM run_files f JOIN runs r ON r.id = f.run_id WHERE r.task_id = ?')
        .pluck(),
      deleteFilesOfTask: db.prepare('DELETE FROM run_files WHERE run_id IN (SELECT id FROM runs WHERE task_id = ?)'),
      deleteLogsOfTask: db.prepare('DELETE FROM run_logs WHERE run_id IN (SELECT id FROM runs WHERE task_id = ?)'),
      deleteRunsOfTask: db.prepare('DELETE FROM runs WHERE task_id = ?'),
      deleteTask: db.prepare('DELETE FROM tasks WHERE id = ?'),
      insertRun: db.prepare("INSERT INTO runs (task_id, site_id, status, created_at) VALUES (?, ?, 'queued', ?)"),
      // The new run as stored (defaults included), for the creation's answer without reading it back.
      insertRunReturning: db.prepare(
        "INSERT INTO runs (task_id, site_id, status, created_at) VALUES (?, ?, 'queued', ?) RETURNING *",
      ),
      task: db.prepare(`SELECT ${TASK_COLUMNS} FROM tasks t JOIN principals o ON o.id = t.owner_id WHERE t.id = ?`),
      taskConfig: db.prepare('SELECT config, config_type FROM tasks WHERE id = ?'),
      taskRuns: db.prepare(
        `SELECT ${RUN_COLUMNS} FROM runs r JOIN principals p ON p.id = r.site_id WHERE r.task_id = ? ORDER BY r.id`,
      ),
      runCountsOfTasks: db.prepare(
        'SELECT task_id, status, COUNT(*) AS n FROM runs WHERE task_id IN (SELECT value FROM json_each(?)) GROUP BY task_id, status',
      ),
      // Walks the (site_id, status, id) index only: per-site counts never read a run row.
      runCountsBySite: db.prepare(
        'SELECT p.name AS site, c.status, c.n FROM (SELECT site_id, status, COUNT(*) AS n FROM runs GROUP BY site_id, status) c JOIN principals p ON p.id = c.site_id',
      ),
      runCountsBySiteOfOwner: db.prepare(
        'SELECT p.name AS site, c.status, c.n FROM (SELECT r.site_id, r.status, COUNT(*) AS n FROM tasks t JOIN runs r ON r.task_id = t.id WHERE t.owner_id = ? GROUP BY r.site_id, r.status) c JOIN principals p ON p.id = c.site_id',
      ),
      // Which states a task's runs are in: one index seek per state, not a count of every run.
      // Counting walked all of a broadcast's runs at each change of one of them (10,000 sites:
      // 20,000 walks of 10,000 index entries per broadcast, a quarter of the registry's CPU while
      // the sites were still receiving their runs; bench:scale --profile).
      runStatesOfTask: db
        .prepare(
          `SELECT ${RUN_STATES.map((s, i) => `EXISTS (SELECT 1 FROM runs WHERE task_id = @taskId AND status = '${s}') AS s${i}`).join(', ')}`,
        )
        .raw(),
      taskStatusAndCancelled: db.prepare('SELECT status, cancelled FROM tasks WHERE id = ?'),
      setTaskStatus: db.prepare('UPDATE tasks SET status = ?, updated_at = ? WHERE id = ?'),
      cancelTask: db.prepare('UPDATE tasks SET cancelled = 1, updated_at = ? WHERE id = ?'),
      // Runs that never reached the site end at once; running ones wait for the site to stop them.
      cancelWaitingRuns: db.prepare(
        "UPDATE runs SET status = 'cancelled', reason = 'cancelled by the researcher', finished_at = ?, lease_expires_at = NULL WHERE task_id = ? AND status IN ('queued', 'assigned')",
      ),
      // From the flag on, the site has one lease to confirm (see unconfirmedCancels); a repeated
      // cancel does not extend it.
      flagRunningRuns: db.prepare(
        "UPDATE runs SET cancel_requested = 1, last_contact_at = ? WHERE task_id = ? AND status IN ('running', 'awaiting_approval') AND cancel_requested = 0",
      ),
      // Oldest queued run of this site first; the (site_id, status, id) index makes this one seek.
      nextQueued: db.prepare("SELECT id FROM runs WHERE site_id = ? AND status = 'queued' ORDER BY id LIMIT 1"),
      assign: db.prepare(
        "UPDATE runs SET status = 'assigned', attempt = attempt + 1, lease_expires_at = ?, last_contact_at = ? WHERE id = ? AND status = 'queued'",
      ),
      // One statement per site for a batch claim: the next queued run, assigned, and what the
      // answer needs of it (its task's image and config are read once per task, not per run).
      claimQueued: db.prepare(
        "UPDATE runs SET status = 'assigned', attempt = attempt + 1, lease_expires_at = ?, last_contact_at = ? WHERE id = (SELECT id FROM runs WHERE site_id = ? AND status = 'queued' ORDER BY id LIMIT 1) RETURNING id, task_id, attempt",
      ),
      taskPayload: db.prepare('SELECT image, config, config_type FROM tasks WHERE id = ?'),
      assignment: db.prepare(
        'SELECT r.id, r.task_id, r.attempt, t.image, t.config, t.config_type FROM runs r JOIN tasks t ON t.id = r.task_id WHERE r.id = ?',
      ),
      siteRun: db.prepare(
        `SELECT ${RUN_COLUMNS} FROM runs r JOIN principals p ON p.id = r.site_id WHERE r.id = ? AND r.site_id = ?`,
      ),
      run: db.prepare(
        `SELECT ${RUN_COLUMNS}, t.owner_id FROM runs r JOIN principals p ON p.id = r.site_id JOIN tasks t ON t.id = r.task_id WHERE r.id = ?`,
      ),
      contact: db.prepare('UPDATE runs SET last_contact_at = ? WHERE id = ?'),
      start: db.prepare(
        "UPDATE runs SET status = 'running', started_at = ?, lease_expires_at = NULL, last_contact_at = ? WHERE id = ?",
      ),
      progress: db.prepare(
        'UPDATE runs SET progress_current = ?, progress_total = ?, progress_message = ?, last_contact_at = ? WHERE id = ?',
      ),
      insertLog: db.prepare('INSERT INTO run_logs (run_id, text) VALUES (?, ?)'),
      logBytes: db.prepare(
        'UPDATE runs SET log_bytes = log_bytes + ?, log_truncated = ?, last_contact_at = ? WHERE id = ?',
      ),
      readLog: db.prepare('SELECT text FROM run_logs WHERE run_id = ? ORDER BY id'),
      fileByName: db.prepare('SELECT name, size, sha256, stored_as FROM run_files WHERE run_id = ? AND name = ?'),
      fileStats: db.prepare('SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM run_files WHERE run_id = ?'),
      upsertFile: db.prepare(
        'INSERT INTO run_files (run_id, name, size, sha256, stored_as, created_at) VALUES (?, ?, ?, ?, ?, ?) ' +
          'ON CONFLICT (run_id, name) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256, stored_as = excluded.stored_as, created_at = excluded.created_at',
      ),
      files: db.prepare('SELECT name, size, sha256 FROM run_files WHERE run_id = ? ORDER BY name'),
      finish: db.prepare(
        'UPDATE runs SET status = ?, exit_code = ?, reason = ?, digest = ?, duration_ms = ?, finished_at = ?, lease_expires_at = NULL, last_contact_at = ? WHERE id = ?',
      ),
      expiredLeases: db.prepare(
        "SELECT r.id, p.name AS site_name, r.task_id FROM runs r JOIN principals p ON p.id = r.site_id WHERE r.status = 'assigned' AND r.lease_expires_at < ?",
      ),
      requeue: db.prepare(
        "UPDATE runs SET status = 'queued', lease_expires_at = NULL WHERE id = ? AND status = 'assigned'",
      ),
      // A cancelled run the site never confirmed (it went silent) is ended after one lease period.
      unconfirmedCancels: db.prepare(
        "SELECT id, task_id FROM runs WHERE status IN ('running', 'awaiting_approval') AND cancel_requested = 1 AND last_contact_at < ?",
      ),
      forceCancel: db.prepare(
        "UPDATE runs SET status = 'cancelled', reason = 'cancelled; the site did not confirm in time', finished_at = ? WHERE id = ? AND status IN ('running', 'awaiting_approval')",
      ),
      // Unfinished runs only: a site's history can be long, its open work is short.
      siteUnfinishedRuns: db.prepare(
        `SELECT ${RUN_COLUMNS} FROM runs r JOIN principals p ON p.id = r.site_id WHERE r.site_id = ? AND r.status IN ('queued', 'assigned', 'running', 'awaiting_approval') ORDER BY r.id`,
      ),
      // A disabled site can never report again: its open runs end now instead of blocking their tasks.
      openRunsOfSite: db.prepare(
        "SELECT r.id, r.task_id FROM runs r JOIN principals p ON p.id = r.site_id WHERE p.kind = 'site' AND p.name = ? AND r.status IN ('queued', 'assigned', 'running', 'awaiting_approval')",
      ),
      failRunOfDisabledSite: db.prepare(
        "UPDATE runs SET status = 'failed', reason = 'the site was disabled at the registry', finished_at = ?, lease_expires_at = NULL WHERE id = ?",
      ),
    };
  }

  async createPrincipal(
    kind: PrincipalKind,
    name: string,
    role: PrincipalRole,
  ): Promise<{ principal: Principal; secret: string }> {
    const secret = generateSecret(kind);
    try {
      const row = this.stmt.insertPrincipal.get(kind, name, role, hashSecret(secret), isoNow()) as PrincipalRow;
      return { principal: toPrincipal(row), secret };
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
        throw new ConflictError(`a ${kind} named "${name}" already exists`);
      }
      throw e;
    }
  }

  async authenticate(secret: string): Promise<Principal | null> {
    const row = this.stmt.principalByHash.get(hashSecret(secret)) as PrincipalRow | undefined;
    return row ? toPrincipal(row) : null;
  }

  externalVersion(): number {
    return this.stmt.dataVersion.get() as number;
  }

  async listPrincipals(kind: PrincipalKind | null): Promise<Principal[]> {
    const rows = (kind ? this.stmt.principalsByKind.all(kind) : this.stmt.principalsAll.all()) as PrincipalRow[];
    return rows.map(toPrincipal);
  }

  async setPrincipalEnabled(kind: PrincipalKind, name: string, enabled: boolean): Promise<boolean> {
    return this.db
      .transaction(() => {
        const changed = this.stmt.setEnabled.run(enabled ? 1 : 0, kind, name).changes === 1;
        if (changed && kind === 'site' && !enabled) {
          const now = isoNow();
          const tasks = new Set<number>();
          for (const r of this.stmt.openRunsOfSite.all(name) as { id: number; task_id: number }[]) {
            this.stmt.failRunOfDisabledSite.run(now, r.id);
            tasks.add(r.task_id);
          }
          for (const taskId of tasks) this.refreshTaskStatus(taskId);
        }
        return changed;
      })
      .immediate();
  }

  async rotateSecret(kind: PrincipalKind, name: string): Promise<string | null> {
    const secret = generateSecret(kind);
    return this.stmt.setKeyHash.run(hashSecret(secret), kind, name).changes === 1 ? secret : null;
  }

  async recordSeen(principalId: number, at: Date): Promise<void> {
    this.stmt.touch.run(at.toISOString(), principalId);
  }

  async listSites(): Promise<SiteInfo[]> {
    return (this.stmt.sites.all() as { name: string; enabled: number; last_seen: string | null }[]).map((r) => ({
      name: r.name,
      enabled: r.enabled === 1,
      lastSeen: r.last_seen,
    }));
  }

  /**
   * Creations arriving together are written in one transaction (master/creation-batcher.ts),
   * each in its own savepoint: a refused one (quota, unknown site) fails alone, the others land,
   * and every caller is answered after the commit.
   */
  async createTask(owner: Principal, task: NewTask, quota?: TaskQuota): Promise<Task> {
    return this.creations.submit({ owner, task, quota });
  }

  /** One transaction for the batch; answers are read after the commit, as a lone creation's were. */
  private writeCreations(batch: PendingCreation[]): CreationOutcome<Task>[] {
    const outcomes = this.insertTasks(batch);
    return outcomes.map((o) =>
      o.ok ? { ok: true, value: typeof o.value === 'number' ? this.taskById(o.value) : o.value } : o,
    );
  }

  /**
   * Inside writeCreations' transaction: one task and its runs, or a RegistryError. Answers the
   * task as getTask would when the sites were named (built from what was written), else its id.
   */
  private insertTask({ owner, task, quota }: PendingCreation): Task | number {
    if (quota) this.checkQuota(owner, task.config.length, quota);
    // With projects defined, a task runs under one and reaches only its sites.
    const scope = governance.resolveTaskProject(this.gov, owner, task.project ?? null);
    let siteIds: number[];
    // The sites' names, in siteIds' order, when the task named them.
    let siteNames: string[] | null = null;
    if (task.sites === null && scope) {
      siteIds = governance.projectSites(this.gov, scope.projectId, scope.projectName, null);
    } else if (task.sites === null) {
      siteIds = (this.stmt.enabledSites.all() as { id: number }[]).map((r) => r.id);
      if (siteIds.length === 0)
        throw new RegistryError(422, ERROR_CODES.noSites, 'there are no enabled sites to run this task');
    } else {
      const named = enabledSitesOrRefuse(task.sites, (name) => {
        const site = this.stmt.siteByName.get(name) as { id: number; enabled: number } | undefined;
        return site && { id: site.id, enabled: site.enabled === 1 };
      });
      siteIds = scope
        ? governance.projectSites(this.gov, scope.projectId, scope.projectName, named)
        : named.map((s) => s.id);
      siteNames = named.map((s) => s.name);
    }
    const now = isoNow();
    const taskId = Number(
      this.stmt.insertTask.run(
        owner.id,
        task.name,
        task.image,
        task.config,
        task.config.length,
        task.configType,
        'queued',
        now,
        now,
      ).lastInsertRowid,
    );
    if (scope) this.gov.setTaskProject.run(scope.projectId, taskId);
    if (siteNames === null) {
      for (const siteId of siteIds) this.stmt.insertRun.run(taskId, siteId, now);
      return taskId;
    }
    const names = siteNames;
    const runs = siteIds.map((siteId, i) =>
      toRunDetail({ ...(this.stmt.insertRunReturning.get(taskId, siteId, now) as RunRow), site_name: names[i]! }),
    );
    return {
      id: taskId,
      name: task.name,
      image: task.image,
      owner: owner.name,
      status: 'queued',
      createdAt: now,
      runs,
    };
  }

  private taskById(taskId: number): Task {
    const row = this.stmt.task.get(taskId) as TaskRow;
    return this.taskFromRow(row);
  }

  /** Inside createTask's transaction, so that concurrent posts cannot both slip under a limit. */
  private checkQuota(owner: Principal, configBytes: number, quota: TaskQuota): void {
    const { open, stored } = this.stmt.quotaOfOwner.get(owner.id) as { open: number; stored: number };
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
    return this.db
      .transaction(() => {
        const task = this.stmt.taskStatusAndCancelled.get(taskId) as { status: Task['status'] } | undefined;
        if (!task) return null;
        const openRuns = this.stmt.openRunsOfTask.get(taskId) as number;
        if (!isFinalTaskStatus(task.status) || openRuns > 0)
          throw new RegistryError(
            409,
            ERROR_CODES.taskNotFinal,
            `task ${taskId} is ${task.status}; only a finished task can be deleted (cancel it first)`,
            { status: task.status },
          );
        const storedFiles = this.stmt.storedFilesOfTask.all(taskId) as string[];
        this.stmt.deleteFilesOfTask.run(taskId);
        this.stmt.deleteLogsOfTask.run(taskId);
        const runs = this.stmt.deleteRunsOfTask.run(taskId).changes;
        this.stmt.deleteTask.run(taskId);
        return { runs, storedFiles };
      })
      .immediate();
  }

  private taskFromRow(row: TaskRow): Task {
    const runs = (this.stmt.taskRuns.all(row.id) as RunRow[]).map(toRunDetail);
    return {
      id: row.id,
      name: row.name,
      image: row.image,
      owner: row.owner_name,
      status: row.status,
      createdAt: row.created_at,
      runs,
    };
  }

  async getTask(taskId: number): Promise<OwnedTask | null> {
    const row = this.stmt.task.get(taskId) as TaskRow | undefined;
    return row ? { task: this.taskFromRow(row), ownerId: row.owner_id } : null;
  }

  async getTaskStatus(taskId: number): Promise<Task['status'] | null> {
    const row = this.stmt.taskStatusAndCancelled.get(taskId) as { status: Task['status'] } | undefined;
    return row?.status ?? null;
  }

  async getTaskConfig(taskId: number): Promise<{ config: Buffer; configType: string } | null> {
    const row = this.stmt.taskConfig.get(taskId) as { config: Buffer; config_type: string } | undefined;
    return row ? { config: row.config, configType: row.config_type } : null;
  }

  async listTasks(query: TaskQuery): Promise<{ tasks: Task[]; total: number }> {
    const { clause, params } = taskFilter(query);
    const total = this.countTasks(query, clause, params);
    const rows = this.db
      .prepare(
        `SELECT ${TASK_COLUMNS} FROM tasks t JOIN principals o ON o.id = t.owner_id ${clause} ORDER BY t.id DESC LIMIT ? OFFSET ?`,
      )
      .all(...params, query.limit, query.offset) as TaskRow[];
    return { tasks: rows.map((r) => this.taskFromRow(r)), total };
  }

  /**
   * A listing's `total`: from the task_counts counters (migration 0006) when it filters by owner
   * and status only, so that it does not grow with the history; a COUNT for the other filters.
   */
  private countTasks(query: TaskQuery, clause: string, params: unknown[]): number {
    if (query.site || query.text)
      return (this.db.prepare(`SELECT COUNT(*) AS n FROM tasks t ${clause}`).get(...params) as { n: number }).n;
    const where: string[] = [];
    const args: unknown[] = [];
    if (query.ownerId !== null) {
      where.push('owner_id = ?');
      args.push(query.ownerId);
    }
    if (query.status !== null) {
      where.push('status = ?');
      args.push(query.status);
    }
    const sql = `SELECT COALESCE(SUM(n), 0) FROM task_counts${where.length ? ` WHERE ${where.join(' AND ')}` : ''}`;
    return this.db
      .prepare(sql)
      .pluck()
      .get(...args) as number;
  }

  async listTaskSummaries(query: TaskQuery): Promise<{ tasks: TaskSummary[]; total: number }> {
    const { clause, params } = taskFilter(query);
    const total = this.countTasks(query, clause, params);
    const rows = this.db
      .prepare(
        `SELECT ${TASK_COLUMNS} FROM tasks t JOIN principals o ON o.id = t.owner_id ${clause} ORDER BY t.id DESC LIMIT ? OFFSET ?`,
      )
      .all(...params, query.limit, query.offset) as TaskRow[];
    const counts = new Map<number, Partial<Record<RunState, number>>>();
    // One query for the whole page, answered from the (task_id, status) covering index: a page of
    // tasks sent to 500 sites each costs a few hundred index entries, not 25,000 run rows.
    for (const c of this.stmt.runCountsOfTasks.all(JSON.stringify(rows.map((r) => r.id))) as {
      task_id: number;
      status: RunState;
      n: number;
    }[]) {
      const byState = counts.get(c.task_id) ?? {};
      byState[c.status] = c.n;
      counts.set(c.task_id, byState);
    }
    return {
      tasks: rows.map((r) => {
        const runCounts = counts.get(r.id) ?? {};
        return {
          id: r.id,
          name: r.name,
          image: r.image,
          owner: r.owner_name,
          status: r.status,
          createdAt: r.created_at,
          runCounts,
          runTotal: Object.values(runCounts).reduce((a, b) => a + b, 0),
        };
      }),
      total,
    };
  }

  async siteRunCounts(ownerId: number | null): Promise<Map<string, Partial<Record<RunState, number>>>> {
    const rows = (
      ownerId === null ? this.stmt.runCountsBySite.all() : this.stmt.runCountsBySiteOfOwner.all(ownerId)
    ) as { site: string; status: RunState; n: number }[];
    const bySite = new Map<string, Partial<Record<RunState, number>>>();
    for (const r of rows) {
      const byState = bySite.get(r.site) ?? {};
      byState[r.status] = r.n;
      bySite.set(r.site, byState);
    }
    return bySite;
  }

  /** Recomputes a task's stored status from its runs; call inside the transaction that changed them. */
  private refreshTaskStatus(taskId: number): void {
    // Which states are present is enough to derive the status (runStatesOfTask).
    const present = this.stmt.runStatesOfTask.get({ taskId }) as number[];
    const states = RUN_STATES.filter((_, i) => present[i] === 1);
    const task = this.stmt.taskStatusAndCancelled.get(taskId) as { status: TaskRow['status']; cancelled: number };
    const status = deriveTaskStatus(states, task.cancelled === 1);
    if (status !== task.status) this.stmt.setTaskStatus.run(status, isoNow(), taskId);
  }

  async cancelTask(taskId: number): Promise<Task> {
    this.db.transaction(() => {
      const now = isoNow();
      this.stmt.cancelTask.run(now, taskId);
      this.stmt.cancelWaitingRuns.run(now, taskId);
      this.stmt.flagRunningRuns.run(Date.now(), taskId);
      this.refreshTaskStatus(taskId);
    })();
    return (await this.getTask(taskId))!.task;
  }

  async claimNextRun(siteId: number, leaseMs: number): Promise<RunAssignment | null> {
    // Most polls find nothing: a plain read answers them without taking the write lock.
    if (this.stmt.nextQueued.get(siteId) === undefined) return null;
    // better-sqlite3 runs this synchronously inside one transaction: no other request can
    // interleave, so a run is handed out exactly once even with many pollers per site.
    const claimed = this.db
      .transaction(() => {
        const next = this.stmt.nextQueued.get(siteId) as { id: number } | undefined;
        if (!next) return null;
        const now = Date.now();
        this.stmt.assign.run(now + leaseMs, now, next.id);
        const row = this.stmt.assignment.get(next.id) as {
          id: number;
          task_id: number;
          attempt: number;
          image: string;
          config: Buffer;
          config_type: string;
        };
        this.refreshTaskStatus(row.task_id);
        return row;
      })
      .immediate();
    if (!claimed) return null;
    return {
      id: claimed.id,
      taskId: claimed.task_id,
      image: claimed.image,
      config: decodeConfig(claimed.config, claimed.config_type),
      attempt: claimed.attempt,
      postedBy: governance.postedByOf(this.gov, claimed.task_id),
    };
  }

  async claimNextRuns(siteIds: readonly number[], leaseMs: number): Promise<{ siteId: number; run: RunAssignment }[]> {
    type Claimed = { id: number; task_id: number; attempt: number };
    const claimed = this.db
      .transaction(() => {
        const now = Date.now();
        const rows: { siteId: number; row: Claimed }[] = [];
        const tasks = new Set<number>();
        for (const siteId of siteIds) {
          const row = this.stmt.claimQueued.get(now + leaseMs, now, siteId) as Claimed | undefined;
          if (!row) continue;
          rows.push({ siteId, row });
          tasks.add(row.task_id);
        }
        // Once per task, not once per run: a broadcast's 1,000 runs share one recount.
        for (const taskId of tasks) this.refreshTaskStatus(taskId);
        // A broadcast's runs share their task: its image and config are read and decoded and its
        // poster looked up once, and the runs share those objects (which lets the answer
        // serialise the config once, too).
        const ofTask = new Map<number, Omit<RunAssignment, 'id' | 'taskId' | 'attempt'>>();
        for (const taskId of tasks) {
          const t = this.stmt.taskPayload.get(taskId) as { image: string; config: Buffer; config_type: string };
          ofTask.set(taskId, {
            image: t.image,
            config: decodeConfig(t.config, t.config_type),
            postedBy: governance.postedByOf(this.gov, taskId),
          });
        }
        return rows.map(({ siteId, row }) => {
          const shared = ofTask.get(row.task_id)!;
          return {
            siteId,
            run: {
              id: row.id,
              taskId: row.task_id,
              image: shared.image,
              config: shared.config,
              attempt: row.attempt,
              postedBy: shared.postedBy,
            },
          };
        });
      })
      .immediate();
    return claimed;
  }

  private siteRunRow(siteId: number, runId: number): RunRow {
    const row = this.stmt.siteRun.get(runId, siteId) as RunRow | undefined;
    if (!row) throw new NotFoundError(`run ${runId}`);
    return row;
  }

  async getSiteRun(siteId: number, runId: number): Promise<SiteRunView | null> {
    const row = this.stmt.siteRun.get(runId, siteId) as RunRow | undefined;
    return row ? toSiteView(row) : null;
  }

  async listSiteRuns(siteId: number, states: readonly RunState[]): Promise<SiteRunView[]> {
    return (this.stmt.siteUnfinishedRuns.all(siteId) as RunRow[])
      .filter((r) => states.includes(r.status))
      .map(toSiteView);
  }

  async startRun(siteId: number, runId: number): Promise<SiteRunView> {
    return this.db
      .transaction(() => {
        const row = this.siteRunRow(siteId, runId);
        refuseUnlessAllowed('start', row);
        const now = Date.now();
        this.stmt.start.run(new Date(now).toISOString(), now, runId);
        this.refreshTaskStatus(row.task_id);
        return toSiteView(this.siteRunRow(siteId, runId));
      })
      .immediate();
  }

  async reportProgress(siteId: number, runId: number, progress: ProgressReport): Promise<SiteRunView> {
    return this.db.transaction(() => {
      const row = this.siteRunRow(siteId, runId);
      refuseUnlessAllowed('progress', row);
      this.stmt.progress.run(progress.current, progress.total ?? null, progress.message ?? null, Date.now(), runId);
      return toSiteView(row);
    })();
  }

  async appendLog(siteId: number, runId: number, text: string, maxLogBytes: number): Promise<SiteRunView> {
    return this.db.transaction(() => {
      const row = this.siteRunRow(siteId, runId);
      refuseUnlessAllowed('log', row);
      if (row.log_truncated === 1 || text.length === 0) {
        this.stmt.contact.run(Date.now(), runId);
        return toSiteView(row);
      }
      const bytes = Buffer.byteLength(text);
      const room = maxLogBytes - row.log_bytes;
      if (bytes <= room) {
        this.stmt.insertLog.run(runId, text);
        this.stmt.logBytes.run(bytes, 0, Date.now(), runId);
      } else {
        const kept = Buffer.from(text)
          .subarray(0, Math.max(0, room))
          .toString('utf8')
          .replace(/\uFFFD+$/, '');
        const marker = `\n[log truncated: the registry keeps at most ${maxLogBytes} bytes per run]\n`;
        this.stmt.insertLog.run(runId, kept + marker);
        this.stmt.logBytes.run(Buffer.byteLength(kept), 1, Date.now(), runId);
      }
      return toSiteView(row);
    })();
  }

  async checkFileUpload(
    siteId: number,
    runId: number,
    name: string,
    limits: FileLimits,
  ): Promise<{ maxBytes: number }> {
    const row = this.siteRunRow(siteId, runId);
    refuseUnlessAllowed('upload', row);
    const existing = this.fileRow(runId, name);
    // A final run keeps its files; only an identical copy of one of them is accepted (and dropped).
    if (isFinalRunState(row.status)) {
      if (!existing) throw new ConflictError(`cannot add files: run ${runId} is ${row.status}`, { status: row.status });
      return { maxBytes: limits.resultFileBytes };
    }
    const stats = this.stmt.fileStats.get(runId) as { n: number; bytes: number };
    this.refuseOverFileLimits(runId, existing, stats, 0, limits);
    const room = limits.runResultBytes - (stats.bytes - (existing?.size ?? 0));
    return { maxBytes: Math.max(0, Math.min(limits.resultFileBytes, room)) };
  }

  /** 413 when the run would hold too many files, or (with `size`) too many bytes. */
  private refuseOverFileLimits(
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

  private fileRow(runId: number, name: string): StoredFile | null {
    const f = this.stmt.fileByName.get(runId, name) as
      { name: string; size: number; sha256: string; stored_as: string } | undefined;
    return f ? { name: f.name, size: f.size, sha256: f.sha256, storedAs: f.stored_as } : null;
  }

  async recordFile(
    siteId: number,
    runId: number,
    file: StoredFile,
    limits: FileLimits,
  ): Promise<{ unreferenced: string[] }> {
    // Immediate: the limits are checked against the totals of this very transaction, so uploads
    // of one run recorded at the same time cannot together pass the run's limit.
    return this.db
      .transaction(() => {
        const row = this.siteRunRow(siteId, runId);
        refuseUnlessAllowed('upload', row);
        const existing = this.fileRow(runId, file.name);
        if (isFinalRunState(row.status)) {
          // A site retrying after a crash may upload again what it already delivered: harmless.
          if (existing && existing.sha256 === file.sha256 && existing.size === file.size)
            return { unreferenced: [file.storedAs] };
          throw new ConflictError(`cannot change files: run ${runId} is ${row.status}`, { status: row.status });
        }
        const stats = this.stmt.fileStats.get(runId) as { n: number; bytes: number };
        this.refuseOverFileLimits(runId, existing, stats, file.size, limits);
        this.stmt.upsertFile.run(runId, file.name, file.size, file.sha256, file.storedAs, isoNow());
        this.stmt.contact.run(Date.now(), runId);
        return { unreferenced: existing ? [existing.storedAs] : [] };
      })
      .immediate();
  }

  async finishRun(siteId: number, runId: number, report: FinishReport): Promise<SiteRunView> {
    return this.db
      .transaction(() => {
        const row = this.siteRunRow(siteId, runId);
        refuseUnlessAllowed({ finish: report.state }, row);
        // Repeating the same finish (a retry after a lost response) is answered as success.
        if (isFinalRunState(row.status)) return toSiteView(row);
        const now = Date.now();
        this.stmt.finish.run(
          report.state,
          report.exitCode ?? null,
          report.reason ?? null,
          report.digest ?? null,
          report.durationMs ?? null,
          new Date(now).toISOString(),
          now,
          runId,
        );
        this.refreshTaskStatus(row.task_id);
        return toSiteView(this.siteRunRow(siteId, runId));
      })
      .immediate();
  }

  async getRun(runId: number): Promise<OwnedRun | null> {
    const row = this.stmt.run.get(runId) as (RunRow & { owner_id: number }) | undefined;
    return row ? { run: toRunDetail(row), ownerId: row.owner_id } : null;
  }

  async readLog(runId: number): Promise<string> {
    return (this.stmt.readLog.all(runId) as { text: string }[]).map((r) => r.text).join('');
  }

  async listFiles(runId: number): Promise<ResultFile[]> {
    return this.stmt.files.all(runId) as ResultFile[];
  }

  async getFile(runId: number, name: string): Promise<StoredFile | null> {
    return this.fileRow(runId, name);
  }

  async storedFileNames(): Promise<Set<string>> {
    return new Set(this.db.prepare('SELECT stored_as FROM run_files').pluck().all() as string[]);
  }

  async countRunsByState(): Promise<Partial<Record<RunState, number>>> {
    const rows = this.db.prepare('SELECT status, COUNT(*) AS n FROM runs GROUP BY status').all() as {
      status: RunState;
      n: number;
    }[];
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  }

  async sweep(now: number, leaseMs: number): Promise<SweepOutcome> {
    return this.db
      .transaction(() => {
        const requeuedSites = new Set<string>();
        const changedTasks = new Set<number>();
        for (const r of this.stmt.expiredLeases.all(now) as { id: number; site_name: string; task_id: number }[]) {
          this.stmt.requeue.run(r.id);
          requeuedSites.add(r.site_name);
          changedTasks.add(r.task_id);
        }
        for (const r of this.stmt.unconfirmedCancels.all(now - leaseMs) as { id: number; task_id: number }[]) {
          this.stmt.forceCancel.run(new Date(now).toISOString(), r.id);
          changedTasks.add(r.task_id);
        }
        for (const taskId of changedTasks) this.refreshTaskStatus(taskId);
        return { requeuedSites: [...requeuedSites], changedTasks: [...changedTasks] };
      })
      .immediate();
  }

  async createOrganization(name: string): Promise<void> {
    governance.createOrganization(this.gov, name);
  }

  async setOrganization(kind: PrincipalKind, name: string, organization: string): Promise<void> {
    governance.setOrganization(this.gov, kind, name, organization);
  }

  async createProject(name: string): Promise<void> {
    governance.createProject(this.gov, name);
  }

  async addToProject(project: string, kind: PrincipalKind, name: string): Promise<boolean> {
    return governance.addToProject(this.gov, project, kind, name);
  }

  async listOrganizations(): Promise<governance.GovernanceListing[]> {
    return governance.listOrganizations(this.gov);
  }

  async listProjects(): Promise<governance.GovernanceListing[]> {
    return governance.listProjects(this.gov);
  }

  async addImageSignature(postedBy: number, signature: Omit<ImageSignature, 'createdAt'>): Promise<void> {
    governance.storeSignature(this.gov, postedBy, signature);
  }

  async listImageSignatures(digest: string): Promise<ImageSignature[]> {
    return governance.signaturesOf(this.gov, digest);
  }

  async awaitApproval(siteId: number, runId: number): Promise<SiteRunView> {
    return this.db
      .transaction(() => {
        const row = this.siteRunRow(siteId, runId);
        if (row.status === 'awaiting_approval') return toSiteView(row);
        if (!canMove(row.status, 'awaiting_approval'))
          throw new ConflictError(`run ${runId} cannot await approval: it is ${row.status}`, { status: row.status });
        this.gov.holdRun.run(Date.now(), runId);
        this.refreshTaskStatus(row.task_id);
        return toSiteView(this.siteRunRow(siteId, runId));
      })
      .immediate();
  }

  async expireBatch(cutoffs: RetentionCutoffs, batch: number): Promise<ExpiryBatch> {
    return retention.expireBatch(this.db, this.retention, cutoffs, batch);
  }

  async previewExpiry(cutoffs: RetentionCutoffs): Promise<ExpiryPreview> {
    return retention.previewExpiry(this.retention, cutoffs);
  }

  async expiredParts(runId: number): Promise<{ log: boolean; files: boolean } | null> {
    return retention.expiredParts(this.retention, runId);
  }

  async close(): Promise<void> {
    // Creations already accepted are written (and answered) before the file is closed.
    await this.creations.close();
    if (this.db.open) this.db.close();
  }
}

/**
 * The WHERE clause of a task listing. The site filter looks the site up once and walks its runs
 * through the (site_id, status, id) index; the text filter matches name and image, with LIKE's
 * wildcards in the user's text taken literally.
 */
function taskFilter(query: TaskQuery): { clause: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  if (query.ownerId !== null) {
    where.push('t.owner_id = ?');
    params.push(query.ownerId);
  }
  if (query.status !== null) {
    where.push('t.status = ?');
    params.push(query.status);
  }
  if (query.site) {
    where.push(
      "t.id IN (SELECT r.task_id FROM runs r WHERE r.site_id = (SELECT id FROM principals WHERE kind = 'site' AND name = ?))",
    );
    params.push(query.site);
  }
  if (query.text) {
    const like = `%${query.text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    where.push("(t.name LIKE ? ESCAPE '\\' OR t.image LIKE ? ESCAPE '\\')");
    params.push(like, like);
  }
  return { clause: where.length ? `WHERE ${where.join(' AND ')}` : '', params };
}

/** Configs are stored as bytes with a content type; JSON ones are handed back parsed. */
export function decodeConfig(config: Buffer | null, configType: string): unknown {
  if (config === null) return null;
  if (configType === 'application/json') return JSON.parse(config.toString('utf8'));
  return config.toString('base64');
}

export function newStorageName(): string {
  return crypto.randomUUID();
}
