import { imageSignatureListSchema, type ImageSignature, type PostImageSignature } from '../shared/governance.js';
import { responseCheck } from '../shared/response-checks.js';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { isFinalRunState, type TaskStatus } from '../shared/run-state.js';
import { LIMITS } from '../shared/schemas.js';
import type {
  CreateTaskRequest,
  ResultFile,
  RunDetail,
  SiteInfo,
  Task,
  TaskDeleted,
  TaskList,
} from '../shared/types.js';
import { childSignal, sleep } from '../shared/abortable.js';
import { mapLimit } from './concurrency.js';
import { PhtApiError, PhtResultError, PhtTimeoutError, PhtResponseError } from './errors.js';
import { readServerSentEvents } from './event-stream.js';
import { localPathOf, writeVerified } from './local-files.js';
import {
  asFileList,
  asMe,
  asRun,
  asSiteList,
  asTask,
  asTaskDeleted,
  asTaskList,
  asWaitResult,
  type Me,
} from './response-shapes.js';
import { RegistryTransport } from './transport.js';

export interface PhtClientOptions {
  /** The registry's base URL, e.g. `http://localhost:5000` (a trailing `/api/v1` is accepted). */
  url: string;
  /** A researcher token (`node master create-user NAME --role researcher`). */
  token: string;
  /**
   * How long the registry may stay silent before a request fails with PhtTimeoutError
   * (default 30 s). Long polls add the time they ask the registry to hold the request.
   */
  timeoutMs?: number;
  /** An undici dispatcher to send requests through (a proxy agent, custom TLS); the client will not close it. */
  dispatcher?: Dispatcher;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface ListTasksOptions extends CallOptions {
  status?: TaskStatus;
  /** Page size, 1–500 (the registry's default is 50). */
  limit?: number;
  offset?: number;
}

export interface WaitForTaskOptions extends CallOptions {
  /** Give up after this long with a PhtTimeoutError (the task keeps running). Default: wait forever. */
  timeoutMs?: number;
  /** Called with the task whenever it changes while waiting, and once with the final task. */
  onUpdate?: (task: Task) => void;
}

export interface FollowRunLogOptions extends CallOptions {
  /** Called with each new piece of the log, in order. */
  onText: (text: string) => void;
  /** How often to look for new log text (default 1000 ms). */
  intervalMs?: number;
}

export interface RunTaskOptions extends WaitForTaskOptions {
  /** The JSON result file to read from every completed run (default `result.json`). */
  resultFile?: string;
}

/** A run of a finished task, with its parsed JSON result when it completed and sent one. */
export interface RunWithResult extends RunDetail {
  result?: unknown;
}

export interface TaskWithResults extends Omit<Task, 'runs'> {
  runs: RunWithResult[];
}

export interface SavedFile extends ResultFile {
  /** Where the file was written. */
  path: string;
}

const DEFAULT_TIMEOUT_MS = 30_000;
/** The registry holds a long poll for at most this long (shared/schemas.ts LIMITS.maxWaitSeconds). */
const MAX_WAIT_SECONDS = LIMITS.maxWaitSeconds;
/** The registry sends a keep-alive comment on a quiet event stream about this often. */
const EVENT_KEEPALIVE_MS = 15_000;
const PARALLEL_DOWNLOADS = 4;

/**
 * A researcher's client for the PHT registry's REST API: post tasks, wait for them, read logs and
 * fetch results. Failures are PhtApiError, PhtTimeoutError, PhtConnectionError or
 * PhtResponseError (all PhtError); a call whose `signal` aborts rejects with the signal's reason.
 */
const checkSignatureList = responseCheck<ImageSignature[]>(imageSignatureListSchema);
function asSignatureList(body: unknown, origin: { method: string; path: string }): ImageSignature[] {
  const result = checkSignatureList(body);
  if (result.ok) return result.value;
  throw new PhtResponseError(
    `unexpected answer from the registry to ${origin.method} ${origin.path}: ${result.problems.join('; ')}`,
    origin.method,
    origin.path,
  );
}

export class PhtClient {
  private readonly transport: RegistryTransport;

  constructor(options: PhtClientOptions) {
    if (typeof options?.url !== 'string' || !/^https?:\/\/[^/]/.test(options.url)) {
      throw new TypeError(`PhtClient: url must be an http(s) URL, got ${JSON.stringify(options?.url)}`);
    }
    try {
      new URL(options.url);
    } catch {
      throw new TypeError(`PhtClient: url is not a valid URL: ${options.url}`);
    }
    if (typeof options.token !== 'string' || options.token.length === 0)
      throw new TypeError('PhtClient: token must be a non-empty string');
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs))
      throw new TypeError(`PhtClient: timeoutMs must be a positive number, got ${timeoutMs}`);
    this.transport = new RegistryTransport(options.url, options.token, timeoutMs, options.dispatcher);
  }

  /**
   * A client configured from the environment: PHT_URL and PHT_TOKEN (and optionally
   * PHT_TIMEOUT_MS). Values in `options` win over the environment.
   */
  static fromEnv(env: NodeJS.ProcessEnv = process.env, options: Partial<PhtClientOptions> = {}): PhtClient {
    const url = options.url ?? env.PHT_URL;
    const token = options.token ?? env.PHT_TOKEN;
    if (!url)
      throw new TypeError('PhtClient.fromEnv: PHT_URL is not set (the registry URL, e.g. http://localhost:5000)');
    if (!token)
      throw new TypeError(
        'PhtClient.fromEnv: PHT_TOKEN is not set (a researcher token from `node master create-user`)',
      );
    const timeoutMs = options.timeoutMs ?? (env.PHT_TIMEOUT_MS ? Number(env.PHT_TIMEOUT_MS) : undefined);
    return new PhtClient({ ...options, url, token, timeoutMs });
  }

  /** The registry's API base URL this client talks to. */
  get apiUrl(): string {
    return this.transport.apiBase;
  }

  /** Who the token belongs to. */
  async me(options: CallOptions = {}): Promise<Me> {
    return asMe(await this.transport.json('GET', '/me', options), { method: 'GET', path: '/me' });
  }

  /** Posts a task; `sites` omitted means every enabled site. Unknown sites: PhtApiError 422 `unknown_site`. */
  async createTask(request: CreateTaskRequest, options: CallOptions = {}): Promise<Task> {
    const { image, config, sites, name, project } = request;
    const body = await this.transport.json('POST', '/tasks', {
      ...options,
      json: { image, config, sites, name, project },
    });
    return asTask(body, { method: 'POST', path: '/tasks' });
  }

  async getTask(taskId: number, options: CallOptions = {}): Promise<Task> {
    const p = `/tasks/${checkId(taskId, 'task id')}`;
    return asTask(await this.transport.json('GET', p, options), { method: 'GET', path: p });
  }

  /** The caller's tasks (every task for an admin), newest first. */
  async listTasks(options: ListTasksOptions = {}): Promise<TaskList> {
    const { status, limit, offset, signal } = options;
    const body = await this.transport.json('GET', '/tasks', { query: { status, limit, offset }, signal });
    return asTaskList(body, { method: 'GET', path: '/tasks' });
  }

  /**
   * Resolves with the task once every run is final, using the registry's long poll (one request
   * held open at a time, never a busy loop). With `onUpdate`, changes in between arrive over the
   * task's event stream. After `timeoutMs` it rejects with a PhtTimeoutError carrying the task.
   */
  async waitForTask(taskId: number, options: WaitForTaskOptions = {}): Promise<Task> {
    const p = `/tasks/${checkId(taskId, 'task id')}/wait`;
    const { timeoutMs, onUpdate } = options;
    const deadline = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
    // One signal for the long poll and the event stream, so that either can end both.
    const inner = childSignal(options.signal);
    let lastReported: string | undefined;
    let finished = false;
    let updateFailed: { error: unknown } | null = null;
    const report = (task: Task) => {
      if (!onUpdate) return; // nobody to tell: no need to serialise every answer
      const key = JSON.stringify(task);
      if (finished || updateFailed || key === lastReported) return;
      lastReported = key;
      try {
        onUpdate(task);
      } catch (e) {
        updateFailed = { error: e };
        inner.stop();
      }
    };
    // Updates in between are a courtesy: the long poll decides when the wait is over, so a broken
    // event stream is not worth failing the wait for.
    const watching = onUpdate
      ? this.watchTask(taskId, { onUpdate: report, signal: inner.signal }).catch(() => undefined)
      : null;
    try {
      for (;;) {
        const seconds = Math.max(0, Math.min(MAX_WAIT_SECONDS, (deadline - Date.now()) / 1000));
        const body = await this.transport.json('GET', p, {
          query: { timeout: seconds.toFixed(3) },
          holdMs: seconds * 1000,
          signal: inner.signal,
        });
        const { done, ...task } = asWaitResult(body, { method: 'GET', path: p });
        report(task);
        if (updateFailed) break;
        if (done) return task;
        if (Date.now() >= deadline) {
          throw new PhtTimeoutError(
            `task ${taskId} did not finish within ${timeoutMs} ms (it is ${task.status} and keeps running)`,
            timeoutMs!,
            task,
          );
        }
      }
    } catch (e) {
      if (!updateFailed) throw e;
    } finally {
      finished = true;
      inner.stop();
      await watching;
    }
    // Only reached when onUpdate threw: its error is the caller's to see, unwrapped.
    throw (updateFailed as { error: unknown }).error;
  }

  /**
   * Follows the task's server-sent event stream, calling `onUpdate` with the task now and on every
   * change; resolves with the last task when the registry ends the stream (the task is final).
   */
  async watchTask(
    taskId: number,
    options: CallOptions & { onUpdate: (task: Task) => void },
  ): Promise<Task | undefined> {
    const p = `/tasks/${checkId(taskId, 'task id')}/events`;
    const origin = { method: 'GET', path: p };
    const requestOptions = { signal: options.signal, bodyTimeoutMs: this.transport.timeoutMs + EVENT_KEEPALIVE_MS };
    const response = await this.transport.open('GET', p, requestOptions);
    const events = readServerSentEvents(response.body);
    let last: Task | undefined;
    try {
      for (;;) {
        let next: IteratorResult<{ event: string; data: string }>;
        try {
          next = await events.next();
        } catch (e) {
          throw this.transport.networkError(e, 'GET', p, requestOptions);
        }
        if (next.done) return last;
        if (next.value.event !== 'task') continue;
        let parsed: unknown;
        try {
          parsed = JSON.parse(next.value.data);
        } catch {
          parsed = undefined;
        }
        last = asTask(parsed, origin);
        options.onUpdate(last);
      }
    } finally {
      response.body.destroy();
    }
  }

  /** Asks every unfinished run to stop; a task that is already final is returned unchanged. */
  async cancelTask(taskId: number, options: CallOptions = {}): Promise<Task> {
    const p = `/tasks/${checkId(taskId, 'task id')}/cancel`;
    return asTask(await this.transport.json('POST', p, { ...options, json: {} }), { method: 'POST', path: p });
  }

  /**
   * Deletes a finished task with its runs, logs and result files (yours, or any for an admin).
   * A task that is not finished yet is PhtApiError 409 `task_not_final`: cancel it first.
   */
  async deleteTask(taskId: number, options: CallOptions = {}): Promise<TaskDeleted> {
    const p = `/tasks/${checkId(taskId, 'task id')}`;
    return asTaskDeleted(await this.transport.json('DELETE', p, options), { method: 'DELETE', path: p });
  }

  async getRun(runId: number, options: CallOptions = {}): Promise<RunDetail> {
    const p = `/runs/${checkId(runId, 'run id')}`;
    return asRun(await this.transport.json('GET', p, options), { method: 'GET', path: p });
  }

  /** The run's log so far (what the container wrote to stdout and stderr). */
  async getRunLog(runId: number, options: CallOptions = {}): Promise<string> {
    return (await this.runLogBytes(runId, options.signal)).toString('utf8');
  }

  /**
   * Calls `onText` with the run's log as it grows, checking every `intervalMs`, and resolves with
   * the run once it is final and its whole log has been handed over.
   */
  async followRunLog(runId: number, options: FollowRunLogOptions): Promise<RunDetail> {
    const { onText, signal, intervalMs = 1000 } = options;
    // The cursor is the number of log bytes already handed over: the registry only ever appends.
    let cursor = 0;
    let seenLogBytes = -1;
    for (;;) {
      const run = await this.getRun(runId, { signal });
      const final = isFinalRunState(run.status);
      // Once final, read the log one last time whatever logBytes says: a truncation notice is
      // appended without being counted.
      if (final || run.logBytes !== seenLogBytes) {
        seenLogBytes = run.logBytes;
        const log = await this.runLogBytes(runId, signal);
        if (log.length > cursor) {
          onText(log.subarray(cursor).toString('utf8'));
          cursor = log.length;
        }
      }
      if (final) return run;
      await sleep(intervalMs, signal);
    }
  }

  /** The files the run sent back, with sizes and SHA-256 checksums. */
  async listRunFiles(runId: number, options: CallOptions = {}): Promise<ResultFile[]> {
    const p = `/runs/${checkId(runId, 'run id')}/files`;
    return asFileList(await this.transport.json('GET', p, options), { method: 'GET', path: p });
  }

  /**
   * One result file as a stream of bytes. Stream errors are SDK errors too; destroy the stream to
   * stop the download early.
   */
  async downloadRunFile(runId: number, name: string, options: CallOptions = {}): Promise<Readable> {
    const p = filePath(runId, name);
    const response = await this.transport.open('GET', p, options);
    const out = new PassThrough();
    const body = response.body;
    body.on('error', (e) => out.destroy(this.transport.networkError(e, 'GET', p, options) as Error));
    out.on('close', () => {
      if (!body.destroyed) body.destroy();
    });
    body.pipe(out);
    return out;
  }

  /**
   * Downloads every result file of the run into `dir` (sub-folders as in the run's output), each
   * checked against its listed size and SHA-256 and written under its name only once complete.
   */
  async saveRunFiles(runId: number, dir: string, options: CallOptions = {}): Promise<SavedFile[]> {
    const files = await this.listRunFiles(runId, options);
    const root = path.resolve(dir);
    // Every name is checked before any file is written: a bad one leaves nothing half-saved.
    const planned = files.map((file) => {
      const origin = { method: 'GET', path: filePath(runId, file.name) };
      return { file, origin, target: localPathOf(root, file.name, origin) };
    });
    return mapLimit(planned, PARALLEL_DOWNLOADS, async ({ file, origin, target }) => {
      await writeVerified(await this.downloadRunFile(runId, file.name, options), target, file, origin);
      return { ...file, path: target };
    });
  }

  /** A JSON result file of the run, parsed. A missing file is PhtApiError 404; invalid JSON is PhtResultError. */
  async readJsonResult(runId: number, name = 'result.json', options: CallOptions = {}): Promise<unknown> {
    const text = await this.transport.text('GET', filePath(runId, name), options);
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new PhtResultError(
        `result file ${name} of run ${runId} is not valid JSON: ${(e as Error).message}`,
        runId,
        name,
      );
    }
  }

  /**
   * Posts a task, waits for it and reads the JSON result of every completed run: one round of a
   * federated computation in one call. Resolves whatever the task's outcome (check `status` and
   * each run's `status`); a completed run that sent no result file has no `result`.
   */
  async runTask(request: CreateTaskRequest, options: RunTaskOptions = {}): Promise<TaskWithResults> {
    const { resultFile = 'result.json', signal } = options;
    const created = await this.createTask(request, { signal });
    const task = await this.waitForTask(created.id, options);
    const runs = await mapLimit(task.runs, PARALLEL_DOWNLOADS, async (run): Promise<RunWithResult> => {
      if (run.status !== 'completed') return run;
      try {
        return { ...run, result: await this.readJsonResult(run.id, resultFile, { signal }) };
      } catch (e) {
        if (e instanceof PhtApiError && e.status === 404) return run;
        throw e;
      }
    });
    return { ...task, runs };
  }

  /** Every site with whether it is enabled and when it last contacted the registry. */
  async listSites(options: CallOptions = {}): Promise<SiteInfo[]> {
    return asSiteList(await this.transport.json('GET', '/sites', options), { method: 'GET', path: '/sites' });
  }

  /** Closes idle connections. The client must not be used afterwards. */
  /** A site's, researcher's or TTP's public key record as the registry relays it (unchecked: see ResearcherKeys). */
  async publicKey(kind: 'site' | 'user' | 'ttp', name: string, options: CallOptions = {}): Promise<unknown> {
    return this.transport.json('GET', `/keys/${encodeURIComponent(kind)}/${encodeURIComponent(name)}`, options);
  }

  /** Registers the researcher's public key (with a signed rotation when it replaces one). */
  async registerPublicKey(
    body: { publicKey: unknown; rotation?: unknown },
    options: CallOptions = {},
  ): Promise<unknown> {
    return this.transport.json('POST', '/public-key', { ...options, json: body });
  }

  /** Stores a reviewer's signature of an image digest at the registry (see shared/governance.ts). */
  async postImageSignature(signature: PostImageSignature, options: CallOptions = {}): Promise<unknown> {
    return this.transport.json('POST', '/images/signatures', { ...options, json: signature });
  }

  /** The signatures stored for a digest (`sha256:…`); each is checked again by the sites that trust its key. */
  async listImageSignatures(digest: string, options: CallOptions = {}): Promise<ImageSignature[]> {
    const body = await this.transport.json('GET', '/images/signatures', { ...options, query: { digest } });
    return asSignatureList(body, { method: 'GET', path: '/images/signatures' });
  }

  async close(): Promise<void> {
    await this.transport.close();
  }

  private async runLogBytes(runId: number, signal?: AbortSignal): Promise<Buffer> {
    const p = `/runs/${checkId(runId, 'run id')}/log`;
    const response = await this.transport.open('GET', p, { signal });
    try {
      return Buffer.from(await response.body.arrayBuffer());
    } catch (e) {
      throw this.transport.networkError(e, 'GET', p, { signal });
    }
  }
}

function checkId(id: number, what: string): number {
  if (!Number.isInteger(id) || id < 1)
    throw new TypeError(`${what} must be a positive integer, got ${JSON.stringify(id)}`);
  return id;
}

function filePath(runId: number, name: string): string {
  if (typeof name !== 'string' || name.length === 0) throw new TypeError('file name must be a non-empty string');
  return `/runs/${checkId(runId, 'run id')}/files/${name.split('/').map(encodeURIComponent).join('/')}`;
}
