/**
 * Shared pieces of the registry's test suite: a per-test registry that is always torn down, a
 * small HTTP client with keys, and the site/researcher moves every test repeats.
 */
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import type { FinishReport, RunAssignment, RunDetail, SiteRunView, Task } from '../../shared/types.js';
import { capturingLogger, type LoggedLine } from '../helpers/capturing-logger.js';
import { startTestRegistry, storeArgs, type TestRegistry } from '../helpers/registry-fixture.js';

// The registry logs an error only for a 5xx or a failed sweep: every test checks afterwards that
// none was logged (capturingLogger keeps warnings and errors).
export { capturingLogger, type LoggedLine };

const REPO_ROOT = path.resolve(__dirname, '../..');
/** An image reference that is never pulled: the registry only stores it. */
export const IMAGE = '127.0.0.1:5050/pht/test-analysis:1';

/** Registries started by `registry()` and the error-level lines each has logged. */
const live = new Map<TestRegistry, LoggedLine[]>();

/**
 * Starts a registry for the current test; it is destroyed after the test whatever happens, and
 * the test fails if the registry logged an error (an internal error or a failed sweep).
 */
export async function registry(overrides: Record<string, unknown> = {}): Promise<TestRegistry> {
  const lines: LoggedLine[] = [];
  const r = await startTestRegistry(overrides, { logger: capturingLogger(lines) });
  live.set(r, lines);
  return r;
}

/** Restarts a registry from `registry()` on the same data dir and keeps tracking it. */
export async function restart(r: TestRegistry): Promise<TestRegistry> {
  const lines = live.get(r) ?? [];
  live.delete(r);
  const next = await r.restart();
  live.set(next, lines);
  return next;
}

afterEach(async () => {
  const left = [...live];
  live.clear();
  await Promise.all(left.map(([r]) => r.destroy()));
  const errors = left.flatMap(([, lines]) => lines.filter((l) => l.level === 'error'));
  expect(errors, 'the registry logged errors during this test').toEqual([]);
});

/** Authenticated supertest calls against a listening registry. */
export class Client {
  constructor(
    readonly url: string,
    readonly key: string | null,
  ) {}

  private auth(t: request.Test): request.Test {
    return this.key === null ? t : t.set('Authorization', `Bearer ${this.key}`);
  }

  get(p: string): request.Test {
    return this.auth(request(this.url).get(p));
  }
  post(p: string, body?: unknown): request.Test {
    const t = this.auth(request(this.url).post(p));
    return body === undefined ? t : t.send(body as object);
  }
  put(p: string, bytes: Buffer, contentType = 'application/octet-stream'): request.Test {
    return this.auth(request(this.url).put(p)).set('Content-Type', contentType).send(bytes);
  }
  method(m: string, p: string): request.Test {
    return this.auth(
      (request(this.url) as unknown as Record<string, (p: string) => request.Test>)[m.toLowerCase()]!(p),
    );
  }
}

/** A site's client: the moves the site client makes, each asserting success. */
export class SiteClient extends Client {
  constructor(
    url: string,
    key: string,
    readonly name: string,
  ) {
    super(url, key);
  }

  /** Claims the next run; fails the test when there is none. */
  async claim(): Promise<RunAssignment> {
    const res = await this.get('/api/v1/site/runs/next').expect(200);
    return res.body as RunAssignment;
  }
  async start(runId: number): Promise<SiteRunView> {
    return (await this.post(`/api/v1/site/runs/${runId}/start`).expect(200)).body as SiteRunView;
  }
  async finish(runId: number, report: FinishReport): Promise<SiteRunView> {
    return (await this.post(`/api/v1/site/runs/${runId}/finish`, report).expect(200)).body as SiteRunView;
  }
  async log(runId: number, text: string): Promise<void> {
    await this.post(`/api/v1/site/runs/${runId}/log`, { text }).expect(200);
  }
  upload(runId: number, name: string, bytes: Buffer): request.Test {
    return this.put(`/api/v1/site/runs/${runId}/files/${name}`, bytes);
  }
  /** Claims and starts the next run. */
  async claimAndStart(): Promise<RunAssignment> {
    const run = await this.claim();
    await this.start(run.id);
    return run;
  }
}

/** A researcher's (or admin's) client. */
export class ResearcherClient extends Client {
  async createTask(body: Record<string, unknown> = {}): Promise<Task> {
    const res = await this.post('/api/v1/tasks', { image: IMAGE, config: { query: 'SELECT 1' }, ...body });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body as Task;
  }
  async task(id: number): Promise<Task> {
    return (await this.get(`/api/v1/tasks/${id}`).expect(200)).body as Task;
  }
  async run(id: number): Promise<RunDetail> {
    return (await this.get(`/api/v1/runs/${id}`).expect(200)).body as RunDetail;
  }
}

export interface World {
  reg: TestRegistry;
  sites: SiteClient[];
  researcher: ResearcherClient;
  other: ResearcherClient;
  admin: ResearcherClient;
}

/**
 * A registry with `siteCount` sites (site-a, site-b, ...), two researchers (alice, bob) and an
 * admin (root).
 */
export async function world(options: { siteCount?: number; overrides?: Record<string, unknown> } = {}): Promise<World> {
  const reg = await registry(options.overrides);
  return populate(reg, options.siteCount ?? 2);
}

/**
 * One world for every test of the enclosing describe block, for tests that only read or are
 * refused (and so change nothing another test could see). Read it inside a test: `shared().sites`.
 */
export function sharedWorld(options: { siteCount?: number; overrides?: Record<string, unknown> } = {}): () => World {
  let w: World | null = null;
  const lines: LoggedLine[] = [];
  beforeAll(async () => {
    w = await populate(
      await startTestRegistry(options.overrides ?? {}, { logger: capturingLogger(lines) }),
      options.siteCount ?? 2,
    );
  });
  afterAll(async () => {
    await w?.reg.destroy();
    expect(
      lines.filter((l) => l.level === 'error'),
      'the registry logged errors',
    ).toEqual([]);
  });
  return () => {
    if (!w) throw new Error('sharedWorld() is only available inside tests');
    return w;
  };
}

export async function populate(reg: TestRegistry, siteCount: number): Promise<World> {
  const sites: SiteClient[] = [];
  for (let i = 0; i < siteCount; i++) {
    const name = `site-${String.fromCharCode(97 + i)}`;
    sites.push(new SiteClient(reg.url, await reg.createSite(name), name));
  }
  return {
    reg,
    sites,
    researcher: new ResearcherClient(reg.url, await reg.createUser('alice')),
    other: new ResearcherClient(reg.url, await reg.createUser('bob')),
    admin: new ResearcherClient(reg.url, await reg.createUser('root', 'admin')),
  };
}

/**
 * Polls `read` until `accept` holds. For states that change in the background (lease expiry, the
 * sweeper): the bound is generous and only there so a broken registry fails instead of hanging.
 */
export async function eventually<T>(read: () => Promise<T>, accept: (value: T) => boolean, what: string): Promise<T> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const value = await read();
    if (accept(value)) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}; last value: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Asserts the REST error shape: a JSON {code, message} and nothing that looks like a stack. */
export function expectApiError(res: request.Response, status: number | number[], code?: string): void {
  const statuses = Array.isArray(status) ? status : [status];
  expect(statuses, `status ${res.status}: ${res.text}`).toContain(res.status);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(typeof res.body.code).toBe('string');
  expect(typeof res.body.message).toBe('string');
  if (code !== undefined) expect(res.body.code).toBe(code);
  expect(res.text).not.toMatch(/\n\s+at /);
}

/** The task and run rows as an admin sees them, for "nothing changed" comparisons. */
export async function snapshot(admin: ResearcherClient): Promise<unknown> {
  const res = await admin.get('/api/v1/tasks?limit=500').expect(200);
  const tasks = res.body.tasks as Task[];
  const files: Record<number, unknown> = {};
  const logs: Record<number, string> = {};
  for (const t of tasks) {
    for (const r of t.runs) {
      files[r.id] = (await admin.get(`/api/v1/runs/${r.id}/files`).expect(200)).body;
      logs[r.id] = (await admin.get(`/api/v1/runs/${r.id}/log`).expect(200)).text;
    }
  }
  return { tasks, files, logs };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

const MAIN_JS = path.join(REPO_ROOT, 'dist/master/main.js');
let built: Promise<void> | null = null;

/**
 * Builds dist/ (what `npm run build` does) when it is missing or older than the master/shared
 * sources, so `node master` runs the code under test. Test files run in parallel workers: a lock
 * directory makes them build one at a time. tsc emits even when some other part of the repository
 * has a type error; what counts here is that dist/master is fresh afterwards.
 */
export function ensureBuilt(): Promise<void> {
  const fresh = () => fs.existsSync(MAIN_JS) && !sourcesNewerThan(fs.statSync(MAIN_JS).mtimeMs);
  built ??= withBuildLock(async () => {
    if (fresh()) return;
    const tsc = await exec(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'], {});
    const assets = await exec(process.execPath, ['scripts/copy-assets.js'], {});
    if (!fresh() || assets.code !== 0)
      throw new Error(`building dist/ failed:\n${tsc.stdout}\n${tsc.stderr}\n${assets.stderr}`);
  });
  return built;
}

async function withBuildLock(fn: () => Promise<void>): Promise<void> {
  const lock = path.join(
    os.tmpdir(),
    `pht-build-${crypto.createHash('sha256').update(REPO_ROOT).digest('hex').slice(0, 12)}.lock`,
  );
  for (;;) {
    try {
      fs.mkdirSync(lock);
      break;
    } catch (e) {
      if ((e as { code?: string }).code !== 'EEXIST') throw e;
      // A lock left by a killed test run is stale after a few minutes.
      if (Date.now() - fs.statSync(lock, { throwIfNoEntry: false })!.mtimeMs > 180_000)
        fs.rmSync(lock, { recursive: true, force: true });
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    await fn();
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

function sourcesNewerThan(ms: number): boolean {
  const dirs = [path.join(REPO_ROOT, 'master'), path.join(REPO_ROOT, 'shared')];
  const walk = (dir: string): boolean =>
    fs.readdirSync(dir, { withFileTypes: true }).some((e) => {
      const p = path.join(dir, e.name);
      return e.isDirectory() ? walk(p) : fs.statSync(p).mtimeMs > ms;
    });
  return dirs.some(walk);
}

/**
 * Runs `node master ARGS` as a child process with a clean environment (no PHT_* variables).
 * `--data-dir DIR` of a test registry reaches that registry's store on either backend.
 */
export function runMaster(args: string[]): Promise<CliResult> {
  const i = args.indexOf('--data-dir');
  const dir = i >= 0 ? args[i + 1] : undefined;
  const withStore = dir === undefined ? args : [...args.slice(0, i), ...storeArgs(dir), ...args.slice(i + 2)];
  return exec(process.execPath, [path.join(REPO_ROOT, 'master'), ...withStore], {});
}

function exec(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { cwd: REPO_ROOT, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, timeout: 120_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}
