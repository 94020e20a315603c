/**
 * The registry's storage, as domain operations. Route handlers talk to this interface only; the
 * SQLite implementation is one backend, and a PostgreSQL one would implement the same methods
 * (hence Promises, although better-sqlite3 itself is synchronous).
 */
import type { ImageSignature } from '../../shared/governance.js';
import type { RunState } from '../../shared/run-state.js';
import type { GovernanceListing } from './sqlite-governance.js';
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

export type PrincipalKind = 'site' | 'user';
export type PrincipalRole = 'site' | 'researcher' | 'admin';

export interface Principal {
  id: number;
  kind: PrincipalKind;
  name: string;
  role: PrincipalRole;
  enabled: boolean;
  createdAt: string;
  lastSeen: string | null;
}

export interface NewTask {
  name: string | null;
  image: string;
  /** Opaque bytes and their content type. */
  config: Buffer;
  configType: string;
  /** null: every enabled site (of the task's project, when projects are defined). */
  sites: string[] | null;
  /** The project to run under; null: the owner's only project (ignored when no project exists). */
  project?: string | null;
}

/** Per-owner limits checked atomically with the task's creation. */
export interface TaskQuota {
  /** Unfinished tasks the owner may have, the new one included. */
  maxOpenTasks: number;
  /** Config bytes of all the owner's stored tasks, the new one included. */
  maxConfigBytes: number;
}

export interface DeletedTask {
  runs: number;
  /** Stored names of the task's result files, for the caller to remove from disk. */
  storedFiles: string[];
}

export interface TaskQuery {
  ownerId: number | null;
  status: string | null;
  /** Only tasks with a run at this site. */
  site?: string | null;
  /** Only tasks whose name or image contains this text. */
  text?: string | null;
  limit: number;
  offset: number;
}

export interface StoredFile {
  name: string;
  size: number;
  sha256: string;
  storedAs: string;
}

/** A task and the id of the researcher who owns it: beside the wire shape, not inside it. */
export interface OwnedTask {
  task: Task;
  ownerId: number;
}

export interface OwnedRun {
  run: RunDetail;
  ownerId: number;
}

/** The limits of one run's result files (from the registry's config). */
export interface FileLimits {
  filesPerRun: number;
  resultFileBytes: number;
  runResultBytes: number;
}

export interface SweepOutcome {
  /** Sites with runs that went back to the queue (their long polls should wake up). */
  requeuedSites: string[];
  /** Tasks whose status may have changed. */
  changedTasks: number[];
}

/** Finished runs older than these lose their log or their result files (null: kept forever). */
export interface RetentionCutoffs {
  logsBefore: Date | null;
  filesBefore: Date | null;
  /** A finished task whose last change (its end) is before this is deleted whole (absent: none). */
  tasksBefore?: Date | null;
}

/** A task the retention sweep deleted whole, for the registry's log. */
export interface ExpiredTask {
  id: number;
  owner: string;
  /** When it ended (its last change). */
  finishedAt: string;
  runs: number;
  files: number;
}

/** One batch of master/retention.ts's sweep. */
export interface ExpiryBatch {
  /** Runs whose log was removed. */
  logs: number;
  /** Runs whose file records were removed. */
  fileRuns: number;
  /** Stored names of the removed files, for the caller to delete from the result store. */
  storedFiles: string[];
  /** Finished tasks deleted whole (with their runs, logs and files: those are in `storedFiles`). */
  tasks: ExpiredTask[];
  /** Another registry process is sweeping right now (PostgreSQL): this one stops. */
  busy: boolean;
}

/** What a sweep with these cutoffs would expire (`node master expire --dry-run`). */
export interface ExpiryPreview {
  logRuns: number;
  logBytes: number;
  fileRuns: number;
  files: number;
  fileBytes: number;
  /** Finished tasks that would be deleted whole, and their runs. */
  tasks: number;
  taskRuns: number;
}

export interface RegistryStore {
  createPrincipal(
    kind: PrincipalKind,
    name: string,
    role: PrincipalRole,
  ): Promise<{ principal: Principal; secret: string }>;
  /** The principal holding this key or token, whether enabled or not; null when none does. */
  authenticate(secret: string): Promise<Principal | null>;
  /**
   * Optional: a number that changes whenever another process commits to the database (SQLite's
   * data_version), so that principals cached in this process are dropped after `node master
   * revoke` or `rotate-key`. Backends without it rely on the cache's few-second expiry.
   */
  externalVersion?(): number;
  listPrincipals(kind: PrincipalKind | null): Promise<Principal[]>;
  /** Disabling a site also fails its unfinished runs, so their tasks can end. */
  setPrincipalEnabled(kind: PrincipalKind, name: string, enabled: boolean): Promise<boolean>;
  /** Replaces a principal's secret; the old one stops working at once. */
  rotateSecret(kind: PrincipalKind, name: string): Promise<string | null>;
  recordSeen(principalId: number, at: Date): Promise<void>;
  listSites(): Promise<SiteInfo[]>;

  /** Throws 429 too_many_open_tasks or 413 config_quota_exceeded when `quota` would be exceeded. */
  createTask(owner: Principal, task: NewTask, quota?: TaskQuota): Promise<Task>;
  getTask(taskId: number): Promise<OwnedTask | null>;
  /** Only the derived status: cheap, for long polls woken by every run change. */
  getTaskStatus(taskId: number): Promise<Task['status'] | null>;
  listTasks(query: TaskQuery): Promise<{ tasks: Task[]; total: number }>;
  /** The same page as listTasks, with run counts per state instead of the runs (for overviews). */
  listTaskSummaries(query: TaskQuery): Promise<{ tasks: TaskSummary[]; total: number }>;
  /** Runs per site and state, of every task (ownerId null) or of one owner's tasks. */
  siteRunCounts(ownerId: number | null): Promise<Map<string, Partial<Record<RunState, number>>>>;
  /** Ends queued and assigned runs, flags running ones for the site to stop. */
  cancelTask(taskId: number): Promise<Task>;
  getTaskConfig(taskId: number): Promise<{ config: Buffer; configType: string } | null>;
  /**
   * Deletes a final task with its runs, logs and file records in one transaction (409
   * task_not_final otherwise); null when there is no such task. The files themselves are the
   * caller's to remove afterwards: a crash in between leaves only unreferenced files, which the
   * registry removes at its next start.
   */
  deleteTask(taskId: number): Promise<DeletedTask | null>;

  /**
   * Optional: claims the oldest queued run of each of these sites in one transaction (sites
   * without one are left out), for long polls already waiting (master/hand-out.ts).
   */
  claimNextRuns?(siteIds: readonly number[], leaseMs: number): Promise<{ siteId: number; run: RunAssignment }[]>;
  /**
   * Optional, with claimNextRuns: queues again runs it claimed that no poll received (the poll
   * left while the claim was in flight), if still assigned under that attempt; answers their ids.
   */
  releaseClaimedRuns?(runs: readonly { id: number; attempt: number }[]): Promise<number[]>;
  /** Atomically hands the site its oldest queued run, or null. */
  claimNextRun(siteId: number, leaseMs: number): Promise<RunAssignment | null>;
  getSiteRun(siteId: number, runId: number): Promise<SiteRunView | null>;
  listSiteRuns(siteId: number, states: readonly RunState[]): Promise<SiteRunView[]>;
  startRun(siteId: number, runId: number): Promise<SiteRunView>;
  reportProgress(siteId: number, runId: number, progress: ProgressReport): Promise<SiteRunView>;
  appendLog(siteId: number, runId: number, text: string, maxLogBytes: number): Promise<SiteRunView>;
  /**
   * Before a file's bytes are received: refuses an upload that cannot succeed (404, 409, 413) and
   * says how many bytes it may have. Advisory only: recordFile decides, as other uploads of the
   * same run may be recorded in between.
   */
  checkFileUpload(siteId: number, runId: number, name: string, limits: FileLimits): Promise<{ maxBytes: number }>;
  /**
   * Records a received file in one transaction that checks the run's state and every limit again
   * (409, 413). Answers the stored files nobody refers to any more, for the caller to remove: the
   * replaced copy, or the new one when an identical file was already recorded for a final run.
   */
  recordFile(siteId: number, runId: number, file: StoredFile, limits: FileLimits): Promise<{ unreferenced: string[] }>;
  finishRun(siteId: number, runId: number, report: FinishReport): Promise<SiteRunView>;

  getRun(runId: number): Promise<OwnedRun | null>;
  readLog(runId: number): Promise<string>;
  listFiles(runId: number): Promise<ResultFile[]>;
  getFile(runId: number, name: string): Promise<StoredFile | null>;
  /** Names of every stored file a run refers to (for removing files a crash left unrecorded). */
  storedFileNames(): Promise<Set<string>>;

  /** How many runs are in each state (for the metrics endpoint). */
  countRunsByState(): Promise<Partial<Record<RunState, number>>>;

  // Governance: organizations, projects (who may send tasks where) and image signatures.
  createOrganization(name: string): Promise<void>;
  setOrganization(kind: PrincipalKind, name: string, organization: string): Promise<void>;
  createProject(name: string): Promise<void>;
  /** False when it was already a member. */
  addToProject(project: string, kind: PrincipalKind, name: string): Promise<boolean>;
  listOrganizations(): Promise<GovernanceListing[]>;
  listProjects(): Promise<GovernanceListing[]>;
  /** Stores (or replaces) the signature of this key for this digest. */
  addImageSignature(postedBy: number, signature: Omit<ImageSignature, 'createdAt'>): Promise<void>;
  listImageSignatures(digest: string): Promise<ImageSignature[]>;
  /** The site holds the run's results for its officer: running → awaiting_approval (repeatable). */
  awaitApproval(siteId: number, runId: number): Promise<SiteRunView>;

  /**
   * Retention: expires the logs of at most `batch` finished runs and the files of at most `batch`
   * finished runs, in one short transaction (the sweep repeats it until nothing is left).
   */
  expireBatch(cutoffs: RetentionCutoffs, batch: number): Promise<ExpiryBatch>;
  previewExpiry(cutoffs: RetentionCutoffs): Promise<ExpiryPreview>;
  /** Whether retention expired this run's log and files (null: no such run). */
  expiredParts(runId: number): Promise<{ log: boolean; files: boolean } | null>;

  /** Requeues assigned runs whose lease expired; ends cancellations the site never confirmed. */
  sweep(now: number, leaseMs: number): Promise<SweepOutcome>;
  close(): Promise<void>;
}
