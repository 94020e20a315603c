/**
 * The wire types of the PHT REST API (/api/v1), shared by the registry, the site client and the
 * researcher SDK.
 *
 * Glossary
 * - site: a hospital (or any data holder) running the site client next to its own SPARQL endpoint.
 *   It authenticates with one API key and only ever sees its own runs.
 * - researcher: a person (or script) that posts tasks and reads their results, with an API token.
 * - admin: a researcher who may see every task; principals themselves are managed from the
 *   registry's command line.
 * - task: one request to run a Docker image, with a config, at a set of target sites.
 * - run: the execution of a task at one site. A task has exactly one run per target site.
 * - result: what a run sends back: the files of its output folder, its exit code, the image digest
 *   that actually ran, and its final state.
 * - allowlist: a site's list of image patterns it agrees to run; anything else is rejected
 *   without being pulled.
 */
import type { PostedBy } from './governance.js';
import type { RunState, TaskStatus } from './run-state.js';

export type Role = 'researcher' | 'admin';

/** A task's config as the registry stores it: opaque to the registry (it may be encrypted later). */
export type TaskConfig = unknown;

export interface CreateTaskRequest {
  image: string;
  config?: TaskConfig;
  /** Target site names; omitted means every enabled site. */
  sites?: string[];
  name?: string;
  /** The project the task runs under; omitted: the researcher's only project (when projects exist). */
  project?: string;
}

export interface RunSummary {
  id: number;
  site: string;
  status: RunState;
}

export interface RunProgress {
  current: number;
  total: number | null;
  message: string | null;
}

export interface RunDetail extends RunSummary {
  taskId: number;
  attempt: number;
  exitCode: number | null;
  reason: string | null;
  digest: string | null;
  durationMs: number | null;
  progress: RunProgress | null;
  cancelRequested: boolean;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  logBytes: number;
}

export interface Task {
  id: number;
  name: string | null;
  image: string;
  owner: string;
  status: TaskStatus;
  createdAt: string;
  runs: RunDetail[];
}

export interface TaskList {
  tasks: Task[];
  total: number;
  limit: number;
  offset: number;
}

export interface TaskWaitResult extends Task {
  /** True when every run is in a final state; false when the wait timed out first. */
  done: boolean;
}

export interface ResultFile {
  name: string;
  size: number;
  sha256: string;
}

export interface SiteInfo {
  name: string;
  enabled: boolean;
  lastSeen: string | null;
}

/** What a site receives when it claims a run. */
export interface RunAssignment {
  id: number;
  taskId: number;
  image: string;
  config: TaskConfig;
  attempt: number;
  /** Who posted the task (researcher, organization, project), for the site's policy and audit. */
  postedBy?: PostedBy;
}

/** The run as its site sees it: enough to decide whether to go on. */
export interface SiteRunView {
  id: number;
  taskId: number;
  status: RunState;
  cancelRequested: boolean;
}

export interface ProgressReport {
  current: number;
  total?: number | null;
  message?: string | null;
}

export interface LogAppend {
  text: string;
}

export type FinishState = 'completed' | 'failed' | 'rejected' | 'timed_out' | 'cancelled';

export interface FinishReport {
  state: FinishState;
  exitCode?: number | null;
  reason?: string | null;
  digest?: string | null;
  durationMs?: number | null;
}

export interface ApiErrorBody {
  code: string;
  message: string;
  details?: unknown;
}
