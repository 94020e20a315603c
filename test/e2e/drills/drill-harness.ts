import { execFile, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { CONTAINER_LABELS } from '../../../shared/container-contract.js';
import { isFinalTaskStatus } from '../../../shared/run-state.js';
import type { RunDetail, Task } from '../../../shared/types.js';
import { buildAndPushImage, containersLeft, docker } from '../../helpers/docker.js';
import { cleanupSite, E2E_REPO } from '../site-harness.js';

/**
 * What the fault drills share: the project's programs as child processes that can be SIGKILLed
 * and started again, a researcher that survives a registry that comes and goes, the drill image
 * and the checks that prove nothing was lost or done twice.
 */

export const ROOT = path.join(__dirname, '..', '..', '..');
const execFileAsync = promisify(execFile);
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A temp folder for one drill; its logs stay there when the drill fails. */
export function drillDir(name: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `pht-drill-${name}-`));
}

export { freePort } from '../../helpers/ports.js';

export type LogLine = Record<string, unknown> & { message?: string };

/**
 * `node master` or `node client` as an operator runs it. Its output (JSON log lines) goes to a
 * file, marked with the start it came from, and to listeners.
 */
export class ProgramProcess {
  child: ChildProcess | null = null;
  starts = 0;
  kills = 0;
  private readonly listeners: ((line: LogLine) => void)[] = [];
  private readonly logStream: fs.WriteStream;

  constructor(
    readonly program: 'master' | 'client',
    readonly args: string[],
    readonly logFile: string,
  ) {
    this.logStream = fs.createWriteStream(logFile, { flags: 'a' });
  }

  get alive(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  start(): void {
    if (this.alive) throw new Error(`${this.program} is already running`);
    this.starts++;
    const start = this.starts;
    const child = spawn(process.execPath, [this.program, ...this.args], {
      cwd: ROOT,
      env: { ...process.env, PHT_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    let partial = '';
    const onData = (chunk: Buffer) => {
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop()!;
      for (const line of lines) this.onLine(start, line);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code, signal) =>
      this.logStream.write(`[start ${start}] exited code=${code} signal=${signal}\n`),
    );
  }

  private onLine(start: number, line: string): void {
    this.logStream.write(`[start ${start}] ${line}\n`);
    let parsed: LogLine;
    try {
      parsed = JSON.parse(line) as LogLine;
    } catch {
      return;
    }
    for (const listener of this.listeners) listener(parsed);
  }

  onLog(listener: (line: LogLine) => void): void {
    this.listeners.push(listener);
  }

  /** Sends `signal` to the process this object started and waits until it has exited. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child || !this.alive) return;
    if (signal === 'SIGKILL') this.kills++;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill(signal);
    });
  }

  /** SIGTERM, then SIGKILL if it is still there after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.alive) return;
    const exited = this.kill('SIGTERM');
    const timer = setTimeout(() => void this.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  async close(): Promise<void> {
    await this.stop();
    await new Promise<void>((resolve) => this.logStream.end(resolve));
  }

  tail(lines = 40): string {
    try {
      return fs.readFileSync(this.logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }
}

/** `node master` on a fixed port and data dir, so it can be killed and come back as the same registry. */
export class MasterProcess extends ProgramProcess {
  readonly url: string;

  constructor(
    readonly port: number,
    readonly dataDir: string,
    logFile: string,
    configFile?: string,
    /** A postgres:// URL: the registry keeps its records there (several may share it). */
    readonly database?: string,
  ) {
    super(
      'master',
      [
        '--port',
        String(port),
        '--host',
        '127.0.0.1',
        '--data-dir',
        dataDir,
        ...(configFile ? ['--config', configFile] : []),
        ...(database ? ['--database', database] : []),
      ],
      logFile,
    );
    this.url = `http://127.0.0.1:${port}`;
  }

  /** Starts the registry and resolves once /healthz answers. */
  async startReady(): Promise<void> {
    this.start();
    const until = Date.now() + 30_000;
    while (Date.now() < until) {
      if (!this.alive) throw new Error(`node master exited during start-up:\n${this.tail()}`);
      try {
        const res = await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(1000) });
        if (res.status === 200) return;
      } catch {
        /* not listening yet */
      }
      await sleep(25);
    }
    throw new Error(`node master did not answer /healthz within 30 s:\n${this.tail()}`);
  }

  /** The admin CLI against this registry's data dir (works whether the server runs or not). */
  async admin(args: string[]): Promise<Record<string, string>> {
    const { stdout } = await execFileAsync(
      process.execPath,
      [
        'master',
        ...args,
        '--json',
        '--data-dir',
        this.dataDir,
        ...(this.database ? ['--database', this.database] : []),
      ],
      { cwd: ROOT },
    );
    return JSON.parse(stdout) as Record<string, string>;
  }

  async createSite(name: string): Promise<string> {
    return (await this.admin(['create-site', name])).apiKey!;
  }

  async createUser(name: string): Promise<string> {
    return (await this.admin(['create-user', name, '--role', 'researcher'])).token!;
  }
}

export interface ClientFileOptions {
  registryUrl: string;
  apiKey: string;
  sparqlEndpoint: string;
  workDir: string;
  concurrency: number;
  /** Any other field of the client config. */
  extra?: Record<string, unknown>;
}

/** Writes a client config file as a site would, with fast polling and no container network. */
export function writeClientConfig(file: string, o: ClientFileOptions): void {
  fs.writeFileSync(
    file,
    JSON.stringify(
      {
        registryUrl: o.registryUrl,
        apiKey: o.apiKey,
        sparqlEndpoint: o.sparqlEndpoint,
        allowedImages: [`${E2E_REPO.replace(/\./g, '\\.')}/.*`],
        workDir: o.workDir,
        concurrency: o.concurrency,
        pullPolicy: 'if-not-present',
        network: { mode: 'none' },
        limits: { timeout: '120s', memoryMb: 256 },
        poll: { longPollSeconds: 5, cancelCheck: '1s', maxBackoff: '1s' },
        ...o.extra,
      },
      null,
      2,
    ),
  );
}

/** One site of a drill: its key, its `node client` process and where that keeps its state. */
export interface DrillSite {
  name: string;
  apiKey: string;
  workDir: string;
  client: ProgramProcess;
}

export async function createDrillSite(
  dir: string,
  master: MasterProcess,
  name: string,
  sparqlEndpoint: string,
  concurrency: number,
  extra?: Record<string, unknown>,
): Promise<DrillSite> {
  const apiKey = await master.createSite(name);
  const workDir = path.join(dir, `${name}-work`);
  const configFile = path.join(dir, `${name}.json`);
  writeClientConfig(configFile, { registryUrl: master.url, apiKey, sparqlEndpoint, workDir, concurrency, extra });
  return {
    name,
    apiKey,
    workDir,
    client: new ProgramProcess('client', ['--config', configFile], path.join(dir, `${name}.log`)),
  };
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${crypto.randomBytes(3).toString('hex')}`;
}

// ---------------------------------------------------------------------------------------------
// The drill image and the bytes it writes

export const DRILL_IMAGE_TAG = `${E2E_REPO}/drill:1`;

/** Builds and pushes the drill image; returns its digest reference (what tasks name). */
export async function buildDrillImage(): Promise<string> {
  const source = fs.readFileSync(path.join(__dirname, 'image', 'drill.js'), 'utf8');
  return buildAndPushImage(DRILL_IMAGE_TAG, { 'drill.js': source }, { cmd: ['/app/drill.js'] });
}

export interface DrillFile {
  name: string;
  bytes: number;
}

export interface DrillConfig {
  seed: string;
  sleepMs: number;
  files: DrillFile[];
}

/** The bytes image/drill.js writes for this file of this run (AES-128-CTR keystream). */
export function drillBytes(seed: string, runId: number, name: string, bytes: number): Buffer {
  const key = crypto.createHash('sha256').update(`${seed}/${runId}/${name}`).digest().subarray(0, 16);
  return crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(bytes));
}

export function expectedSha256(seed: string, runId: number, file: DrillFile): string {
  return crypto
    .createHash('sha256')
    .update(drillBytes(seed, runId, file.name, file.bytes))
    .digest('hex');
}

// ---------------------------------------------------------------------------------------------
// A researcher for a registry that may be down at any moment

export class DrillResearcher {
  constructor(
    readonly url: string,
    readonly token: string,
  ) {}

  /** One request; throws on a network failure (the registry may be down). */
  async call(method: string, route: string, body?: unknown): Promise<{ status: number; json: any; bytes: Buffer }> {
    const res = await fetch(`${this.url}/api/v1${route}`, {
      method,
      headers: {
        authorization: `Bearer ${this.token}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const bytes = Buffer.from(await res.arrayBuffer());
    let json: any = null;
    try {
      json = JSON.parse(bytes.toString('utf8'));
    } catch {
      /* not JSON */
    }
    return { status: res.status, json, bytes };
  }

  /** A read, retried while the registry is unreachable or restarting (a 5xx from a dying process). */
  async get(route: string, maxSeconds = 120): Promise<{ status: number; json: any; bytes: Buffer }> {
    const until = Date.now() + maxSeconds * 1000;
    for (;;) {
      try {
        const res = await this.call('GET', route);
        if (res.status < 500) return res;
        if (Date.now() > until) return res;
      } catch (e) {
        if (Date.now() > until) throw e;
      }
      await sleep(200);
    }
  }

  /**
   * Creates a task named `name` exactly once, however often the registry dies around the POST:
   * after a failed attempt the task list says whether the registry got it.
   */
  async postOnce(
    name: string,
    image: string,
    config: unknown,
    sites: string[],
  ): Promise<{ task: Task; attempts: number }> {
    for (let attempts = 1; ; attempts++) {
      try {
        const res = await this.call('POST', '/tasks', { name, image, config, sites });
        if (res.status === 201) return { task: res.json as Task, attempts };
        if (res.status < 500) throw new Error(`POST /tasks answered ${res.status}: ${res.bytes.toString()}`);
      } catch (e) {
        if (e instanceof Error && e.message.startsWith('POST /tasks answered')) throw e;
      }
      await sleep(200);
      const existing = (await this.allTasks()).find((t) => t.name === name);
      if (existing) return { task: existing, attempts };
    }
  }

  /** Long polls until every run of the task is final. */
  async waitDone(taskId: number, maxSeconds = 150): Promise<Task> {
    const until = Date.now() + maxSeconds * 1000;
    while (Date.now() < until) {
      const res = await this.get(`/tasks/${taskId}/wait?timeout=20`);
      if (res.status !== 200) throw new Error(`wait answered ${res.status}: ${res.bytes.toString()}`);
      if (res.json.done) return res.json as Task;
    }
    throw new Error(`task ${taskId} did not finish within ${maxSeconds}s`);
  }

  async allTasks(): Promise<Task[]> {
    const tasks: Task[] = [];
    for (let offset = 0; ; offset += 500) {
      const res = await this.get(`/tasks?limit=500&offset=${offset}`);
      if (res.status !== 200) throw new Error(`GET /tasks answered ${res.status}`);
      tasks.push(...(res.json.tasks as Task[]));
      if (tasks.length >= res.json.total || res.json.tasks.length === 0) return tasks;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Checks

/**
 * Docker's own record of container starts, per site and run. It listens from before the first run:
 * the engine keeps only the last 256 events for queries into the past, far fewer than a drill makes.
 */
export class ContainerStartRecorder {
  private readonly starts = new Map<string, Map<number, number>>();
  private stream: NodeJS.ReadableStream & { destroy?: () => void } = null!;
  private partial = '';
  private closed = false;

  static async listen(): Promise<ContainerStartRecorder> {
    const recorder = new ContainerStartRecorder();
    recorder.stream = (await docker().getEvents({
      filters: { type: ['container'], event: ['start'], label: [`${CONTAINER_LABELS.managedBy}=pht-client`] },
    })) as unknown as NodeJS.ReadableStream;
    recorder.stream.on('data', (chunk: Buffer) => recorder.onData(chunk));
    recorder.stream.on('error', () => undefined);
    return recorder;
  }

  private onData(chunk: Buffer): void {
    const lines = (this.partial + chunk.toString('utf8')).split('\n');
    this.partial = lines.pop()!;
    for (const line of lines) {
      if (!line.trim()) continue;
      const attributes =
        (JSON.parse(line) as { Actor?: { Attributes?: Record<string, string> } }).Actor?.Attributes ?? {};
      const site = attributes[CONTAINER_LABELS.site] ?? '';
      const runId = Number(attributes[CONTAINER_LABELS.runId]);
      const perRun = this.starts.get(site) ?? new Map<number, number>();
      perRun.set(runId, (perRun.get(runId) ?? 0) + 1);
      this.starts.set(site, perRun);
    }
  }

  /** How many times a container of this run of this site was started. */
  count(site: string, runId: number): number {
    return this.starts.get(site)?.get(runId) ?? 0;
  }

  /** Waits a moment for events still in flight, then stops listening. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await sleep(1000);
    this.stream.destroy?.();
  }
}

/**
 * Containers of `site` that still exist (a client removes each one just after reporting its run),
 * after waiting up to `settleMs` for them to go.
 */
export async function leftoverContainers(site: string, settleMs = 5000): Promise<string[]> {
  const list = await containersLeft([`${CONTAINER_LABELS.site}=${site}`], settleMs);
  return list.map((c) => `${c.Names[0]} (${c.State})`);
}

/**
 * Run folders a client still holds in its workDir. Each is deleted just after its run is reported,
 * so this waits up to `settleMs` for the list to empty before answering.
 */
export async function leftoverWorkspaces(workDir: string, settleMs = 5000): Promise<string[]> {
  const runs = path.join(workDir, 'runs');
  const list = () => (fs.existsSync(runs) ? fs.readdirSync(runs) : []);
  const until = Date.now() + settleMs;
  while (list().length > 0 && Date.now() < until) await sleep(100);
  return list();
}

export interface FileCheck {
  runId: number;
  problem: string;
}

/**
 * Checks one completed run's result files against what the drill image must have written: the
 * listing (names, sizes, sha256) and the bytes served back.
 */
export async function checkRunFiles(
  researcher: DrillResearcher,
  runId: number,
  config: DrillConfig,
): Promise<FileCheck[]> {
  const problems: FileCheck[] = [];
  const listing = await researcher.get(`/runs/${runId}/files`);
  const files = listing.json as { name: string; size: number; sha256: string }[];
  const expected = [...config.files].sort((a, b) => (a.name < b.name ? -1 : 1));
  if (files.length !== expected.length)
    problems.push({
      runId,
      problem: `files ${JSON.stringify(files.map((f) => f.name))}, expected ${JSON.stringify(expected.map((f) => f.name))}`,
    });
  for (const file of expected) {
    const sha = expectedSha256(config.seed, runId, file);
    const listed = files.find((f) => f.name === file.name);
    if (!listed) continue;
    if (listed.size !== file.bytes || listed.sha256 !== sha) {
      problems.push({
        runId,
        problem: `${file.name}: listed ${listed.size} bytes sha ${listed.sha256.slice(0, 12)}, expected ${file.bytes} bytes sha ${sha.slice(0, 12)}`,
      });
      continue;
    }
    const body = await researcher.get(`/runs/${runId}/files/${file.name}`);
    const served = crypto.createHash('sha256').update(body.bytes).digest('hex');
    if (served !== sha)
      problems.push({
        runId,
        problem: `${file.name}: served bytes have sha ${served.slice(0, 12)}, expected ${sha.slice(0, 12)}`,
      });
  }
  return problems;
}

/** Result files on the registry's disk that no run refers to (an upload that died half way in). */
export function storedFileCount(dataDir: string): { files: number; tmp: number } {
  const count = (d: string) => (fs.existsSync(d) ? fs.readdirSync(d).length : 0);
  return { files: count(path.join(dataDir, 'files')), tmp: count(path.join(dataDir, 'files-tmp')) };
}

/** Removes what the drill's sites left in Docker. */
export async function cleanupSites(sites: readonly { name: string }[]): Promise<void> {
  for (const site of sites) await cleanupSite(site.name);
}

/** Counts values: { "1": 198, "2": 2 }. */
export function histogram(values: readonly (string | number)[]): Record<string, number> {
  const h: Record<string, number> = {};
  for (const v of values) h[String(v)] = (h[String(v)] ?? 0) + 1;
  return h;
}

export function randomBetween(min: number, max: number): number {
  return min + Math.random() * (max - min);
}

// ---------------------------------------------------------------------------------------------
// A drill's tasks and the verdict on their runs

export interface PlannedTask {
  name: string;
  sites: string[];
  config: DrillConfig;
}

export interface DrillRun {
  run: RunDetail;
  config: DrillConfig;
}

/** Polls the task list until `expected` tasks exist and all are final; returns them. */
export async function waitUntilAllFinal(researcher: DrillResearcher, expected: number, maxMs: number): Promise<Task[]> {
  const until = Date.now() + maxMs;
  for (;;) {
    const tasks = await researcher.allTasks();
    if (tasks.length >= expected && tasks.every((t) => isFinalTaskStatus(t.status))) return tasks;
    if (Date.now() > until) {
      const runs = tasks.flatMap((t) => t.runs);
      throw new Error(
        `not every task ended within ${maxMs / 1000} s: runs ${JSON.stringify(histogram(runs.map((r) => r.status)))}`,
      );
    }
    await sleep(1000);
  }
}

/** Each run of the planned tasks with the config its files derive from. */
export function runsOf(tasks: readonly Task[], plan: readonly PlannedTask[]): DrillRun[] {
  return tasks.flatMap((task) => {
    const planned = plan.find((t) => t.name === task.name);
    if (!planned) throw new Error(`task ${task.id} (${String(task.name)}) was not planned`);
    return task.runs.map((run) => ({ run, config: planned.config }));
  });
}

/** Runs whose container Docker did not start exactly once. */
export function startProblems(recorder: ContainerStartRecorder, runs: readonly DrillRun[]): string[] {
  return runs
    .map(({ run }) => ({ run, n: recorder.count(run.site, run.id) }))
    .filter(({ n }) => n !== 1)
    .map(({ run, n }) => `run ${run.id} at ${run.site}: ${n} container starts`);
}

export async function allFileProblems(researcher: DrillResearcher, runs: readonly DrillRun[]): Promise<FileCheck[]> {
  const problems: FileCheck[] = [];
  for (const { run, config } of runs) problems.push(...(await checkRunFiles(researcher, run.id, config)));
  return problems;
}

export function notCompleted(
  runs: readonly DrillRun[],
): { id: number; site: string; status: string; reason: string | null }[] {
  return runs
    .filter(({ run }) => run.status !== 'completed')
    .map(({ run }) => ({ id: run.id, site: run.site, status: run.status, reason: run.reason }));
}
