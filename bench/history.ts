/**
 * Issue 13, target 9: cost as history grows. Builds a registry database holding N finished runs
 * (default 1,000,000) with their logs, and times five operations through the real HTTP API against
 * a registry on an empty database in the same run (requests interleaved between the two): hand-out
 * to a long-polling site, task creation, a researcher's task list (first page), GET of a task with
 * 1,000 runs, and the site list. Also records what each run costs on disk, from the file's size
 * measured between the fill's phases.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { openStore } from '../master/server.js';
import { readMigrations } from '../master/store/migrate.js';
import { LIMITS } from '../shared/schemas.js';
import { makeDataDir, seedPrincipals, startRegistryProcess, type RegistryProcess } from './lib/registry-process.js';
import { writeSection } from './lib/report.js';
import { ms, summarize, table } from './lib/stats.js';
import { type BenchArgs, runMain } from './lib/world.js';

const SITES = 1000;
const OTHER_RESEARCHERS = 3;
const IMAGE = '127.0.0.1:5050/pht-bench/history:1';
/** Runs per task in the "broadcast" share of the history. */
const WIDE_TASK_RUNS = 100;
/**
 * The task list's default page size: the warm-up creates more tasks than that, so that in both
 * registries the first page holds the same kind of task (never the one with 1,000 runs).
 */
const PAGE = LIMITS.defaultPageSize;

interface World {
  dataDir: string;
  siteKeys: Map<string, string>;
  token: string;
  /** The task with 1,000 runs whose GET is timed. */
  bigTaskId: number;
}

interface FillFigures {
  /** Bytes per task with one run (task row, run row, their index entries), no log. */
  perSingleRunTask: number;
  /** Bytes per run of tasks with many runs, no log. */
  perWideRun: number;
  /** Bytes per run once each has its log, and the log bytes each holds. */
  perRunWithLog: number;
  logBytes: number;
  fillMs: number;
  fileBytes: number;
}

const siteName = (i: number) => `hist-site-${String(i).padStart(4, '0')}`;

/** Principals and the one task with 1,000 runs, in both databases (the operations' fixed part). */
async function makeWorld(): Promise<World> {
  const dataDir = makeDataDir();
  const sites = Array.from({ length: SITES }, (_, i) => siteName(i));
  const users = ['hist-researcher', ...Array.from({ length: OTHER_RESEARCHERS }, (_, i) => `hist-other-${i}`)];
  const { siteKeys, userTokens } = await seedPrincipals(dataDir, sites, users);
  const store = await openStore({ dataDir });
  try {
    const me = (await store.listPrincipals('user')).find((p) => p.name === 'hist-researcher')!;
    const big = await store.createTask(me, {
      name: 'thousand',
      image: IMAGE,
      config: Buffer.from('{}'),
      configType: 'application/json',
      sites: sites,
    });
    return { dataDir, siteKeys, token: userTokens.get('hist-researcher')!, bigTaskId: big.id };
  } finally {
    await store.close();
  }
}

function fileSize(db: Database.Database, file: string): number {
  if (db.pragma('journal_mode', { simple: true }) === 'wal') db.pragma('wal_checkpoint(TRUNCATE)');
  return fs.statSync(file).size;
}

/**
 * Direct bulk inserts through the store's own schema, in one transaction per phase: half the runs
 * in tasks with one run, half in tasks with 100 runs, tasks spread over four researchers (a
 * quarter each, the timed researcher among them), then a log of `logBytes` for every run.
 */
function fill(file: string, runs: number, logBytes: number): FillFigures {
  const started = performance.now();
  const db = new Database(file);
  // A bulk load, not the registry's workload: no WAL (each page written once, not twice), no
  // fsync, and a cache large enough to hold the indexes' hot pages. WAL is back before the end.
  db.pragma('journal_mode = MEMORY');
  db.pragma('synchronous = OFF');
  db.pragma('cache_size = -262144');
  try {
    const owners = db.prepare("SELECT id FROM principals WHERE kind = 'user' ORDER BY id").pluck().all() as number[];
    const sites = db.prepare("SELECT id FROM principals WHERE kind = 'site' ORDER BY id").pluck().all() as number[];
    const insertTask = db.prepare(
      "INSERT INTO tasks (owner_id, name, image, config, config_bytes, config_type, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'application/json', 'completed', ?, ?)",
    );
    const insertRun = db.prepare(
      "INSERT INTO runs (task_id, site_id, status, attempt, exit_code, digest, duration_ms, log_bytes, created_at, started_at, finished_at) VALUES (?, ?, 'completed', 1, 0, ?, ?, ?, ?, ?, ?)",
    );
    const digest = `sha256:${crypto.createHash('sha256').update(IMAGE).digest('hex')}`;
    // A year of history ending a day ago, so that retention has something to find.
    const end = Date.now() - 86_400_000;
    const span = 365 * 86_400_000;
    let made = 0;
    const addTasks = (total: number, perTask: number) => {
      db.transaction(() => {
        let done = 0;
        for (let t = 0; done < total; t++) {
          const at = new Date(end - span + Math.floor(((made + done) / runs) * span)).toISOString();
          const config = Buffer.from(JSON.stringify({ task: made + done, threshold: 0.5 }));
          const owner = owners[t % owners.length]!;
          const taskId = Number(
            insertTask.run(owner, `history ${made + done}`, IMAGE, config, config.length, at, at).lastInsertRowid,
          );
          const n = Math.min(perTask, total - done);
          const first = t % sites.length;
          for (let k = 0; k < n; k++)
            insertRun.run(taskId, sites[(first + k) % sites.length], digest, 1234, logBytes, at, at, at);
          done += n;
        }
      })();
      made += total;
    };
    const empty = fileSize(db, file);
    const single = Math.floor(runs / 2);
    addTasks(single, 1);
    const afterSingle = fileSize(db, file);
    addTasks(runs - single, WIDE_TASK_RUNS);
    const afterWide = fileSize(db, file);
    // Logs arrive in chunks of a few hundred bytes in real life; two rows per run is the middle.
    const line = 'step 42 of 100: loss 0.0123 accuracy 0.9876 (epoch 7, batch 512)\n';
    const half = line.repeat(Math.ceil(logBytes / 2 / line.length)).slice(0, Math.floor(logBytes / 2));
    const rest = line.repeat(Math.ceil(logBytes / line.length)).slice(0, logBytes - half.length);
    // Chunks of one run end up apart in run_logs, as with runs that log at the same time.
    const insertLogs = db.prepare(
      "INSERT INTO run_logs (run_id, text) SELECT id, ? FROM runs WHERE status = 'completed' ORDER BY id",
    );
    if (logBytes > 0)
      db.transaction(() => {
        insertLogs.run(half);
        insertLogs.run(rest);
      })();
    const afterLogs = fileSize(db, file);
    db.pragma('optimize');
    db.pragma('journal_mode = WAL');
    return {
      perSingleRunTask: (afterSingle - empty) / single,
      perWideRun: (afterWide - afterSingle) / (runs - single),
      perRunWithLog: (afterLogs - empty) / runs,
      logBytes,
      fillMs: performance.now() - started,
      fileBytes: fs.statSync(file).size,
    };
  } finally {
    db.close();
  }
}

/**
 * The empty and the filled database, cached in the temp dir under the schema version and the
 * fill's shape (a second run copies the files instead of filling again), each copied into a data
 * dir of its own for this run.
 */
async function prepare(
  runs: number,
  logBytes: number,
  fresh: boolean,
): Promise<{ world: World; emptyDir: string; fullDir: string; figures: FillFigures }> {
  // The migrations' text, not only their names: a migration edited before it landed changes the key.
  const version = readMigrations()
    .map((m) => `${m.name}\n${m.sql}`)
    .join('\n');
  const key = crypto
    .createHash('sha256')
    .update(`${version}|${runs}|${logBytes}|${SITES}|v1`)
    .digest('hex')
    .slice(0, 16);
  const cacheDir = path.join(os.tmpdir(), `pht-bench-history-${key}`);
  const figuresFile = path.join(cacheDir, 'figures.json');
  if (fresh || !fs.existsSync(figuresFile)) {
    fs.rmSync(cacheDir, { recursive: true, force: true });
    fs.mkdirSync(cacheDir, { recursive: true });
    const made = await makeWorld();
    fs.copyFileSync(path.join(made.dataDir, 'registry.sqlite'), path.join(cacheDir, 'empty.sqlite'));
    fs.copyFileSync(path.join(made.dataDir, 'registry.sqlite'), path.join(cacheDir, 'full.sqlite'));
    fs.rmSync(made.dataDir, { recursive: true, force: true });
    // The principals' keys belong to the cached files: kept beside them (a temp dir, bench only).
    const { dataDir: _unused, ...saved } = made;
    fs.writeFileSync(path.join(cacheDir, 'world.json'), JSON.stringify({ ...saved, siteKeys: [...made.siteKeys] }));
    console.log(`filling ${runs} runs (logs of ${logBytes} bytes) into ${cacheDir}`);
    fs.writeFileSync(figuresFile, JSON.stringify(fill(path.join(cacheDir, 'full.sqlite'), runs, logBytes)));
  } else console.log(`using the cached databases in ${cacheDir}`);
  const copy = (name: string) => {
    const dir = makeDataDir();
    fs.copyFileSync(path.join(cacheDir, name), path.join(dir, 'registry.sqlite'));
    return dir;
  };
  const saved = JSON.parse(fs.readFileSync(path.join(cacheDir, 'world.json'), 'utf8')) as Omit<World, 'siteKeys'> & {
    siteKeys: [string, string][];
  };
  const emptyDir = copy('empty.sqlite');
  return {
    world: { ...saved, dataDir: emptyDir, siteKeys: new Map(saved.siteKeys) },
    emptyDir,
    fullDir: copy('full.sqlite'),
    figures: JSON.parse(fs.readFileSync(figuresFile, 'utf8')) as FillFigures,
  };
}

/**
 * Times `batches` retention batches on the filled database (logs older than half its history), the
 * longest a sweep holds SQLite's write lock; removes the data dir afterwards.
 */
async function timeRetentionBatches(
  dataDir: string,
  batches: number,
  batch: number,
): Promise<{ n: number; batch: number; median: number; p99: number; max: number; logs: number }> {
  const store = await openStore({ dataDir });
  try {
    const cutoffs = { logsBefore: new Date(Date.now() - 183 * 86_400_000), filesBefore: null };
    const times: number[] = [];
    let logs = 0;
    for (let i = 0; i < batches; i++) {
      const t = performance.now();
      const done = await store.expireBatch(cutoffs, batch);
      times.push(performance.now() - t);
      logs += done.logs;
      if (done.logs < batch) break;
    }
    const s = summarize(times);
    return { n: s.n, batch, median: s.median, p99: s.p99, max: s.max, logs };
  } finally {
    await store.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

type Operation = 'hand-out' | 'create task' | 'task list' | 'task with 1,000 runs' | 'site list';
const OPERATIONS: Operation[] = ['hand-out', 'create task', 'task list', 'task with 1,000 runs', 'site list'];

async function call(url: string, key: string, init: RequestInit = {}): Promise<Response> {
  const res = await fetch(url, {
    ...init,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
  });
  if (res.status >= 400) throw new Error(`${init.method ?? 'GET'} ${url}: ${res.status} ${await res.text()}`);
  return res;
}

/** One timing of `op` against one registry, in milliseconds. */
async function timeOnce(op: Operation, registry: RegistryProcess, world: World, round: number): Promise<number> {
  const api = `${registry.url}/api/v1`;
  const researcher = world.token;
  // Hand-out goes to site 0, creations to site 1: the created tasks never queue in front of a hand-out.
  const pollSite = siteName(0);
  const createSite = siteName(1);
  const t0 = performance.now();
  switch (op) {
    case 'hand-out': {
      const poll = call(`${api}/site/runs/next?wait=30`, world.siteKeys.get(pollSite)!);
      // Let the poll arrive and wait before the task is posted (a long poll is the normal state).
      await new Promise((r) => setTimeout(r, 20));
      const posted = performance.now();
      await call(`${api}/tasks`, researcher, {
        method: 'POST',
        body: JSON.stringify({ image: IMAGE, config: { round }, sites: [pollSite] }),
      });
      const res = await poll;
      if (res.status !== 200) throw new Error(`hand-out: poll answered ${res.status}`);
      const run = (await res.json()) as { id: number };
      const took = performance.now() - posted;
      // Finish it, so the task is not left open (the open-task quota) and the next poll waits.
      const site = world.siteKeys.get(pollSite)!;
      await call(`${api}/site/runs/${run.id}/start`, site, { method: 'POST', body: '{}' });
      await call(`${api}/site/runs/${run.id}/finish`, site, {
        method: 'POST',
        body: JSON.stringify({ state: 'completed', exitCode: 0 }),
      });
      return took;
    }
    case 'create task':
      await (
        await call(`${api}/tasks`, researcher, {
          method: 'POST',
          body: JSON.stringify({ image: IMAGE, config: { round }, sites: [createSite] }),
        })
      ).arrayBuffer();
      break;
    case 'task list':
      await (await call(`${api}/tasks`, researcher)).arrayBuffer();
      break;
    case 'task with 1,000 runs':
      await (await call(`${api}/tasks/${world.bigTaskId}`, researcher)).arrayBuffer();
      break;
    case 'site list':
      await (await call(`${api}/sites`, researcher)).arrayBuffer();
      break;
  }
  return performance.now() - t0;
}

async function main(args: BenchArgs): Promise<void> {
  const runs = args.number('runs', 1_000_000);
  const logBytes = args.number('log-bytes', 2048);
  const samples = args.number('samples', 100);
  const fresh = args.flag('fresh');
  const { world, emptyDir, fullDir, figures } = await prepare(runs, logBytes, fresh);
  const config = { limits: { openTasksPerUser: 1_000_000 } };
  const started: RegistryProcess[] = [];
  try {
    started.push(await startRegistryProcess({ dataDir: emptyDir, logLevel: 'info', config }));
    started.push(await startRegistryProcess({ dataDir: fullDir, logLevel: 'info', config }));
  } catch (e) {
    // A copy of the full database is gigabytes: never left behind in the temp dir.
    for (const r of started) await r.stop();
    for (const dir of [emptyDir, fullDir]) fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const [empty, full] = started as [RegistryProcess, RegistryProcess];
  const results = new Map<string, number[]>();
  const sampling = performance.now();
  // The full database stays for the retention figures below, unless this part failed.
  let sampled = false;
  try {
    // Warm-up, then interleave: each sample times the same operation on both registries back to back.
    for (const op of OPERATIONS)
      for (const reg of [empty, full])
        for (let i = 0; i < (op === 'create task' ? PAGE + 5 : 5); i++) await timeOnce(op, reg, world, -1);
    for (let i = 0; i < samples; i++)
      for (const op of OPERATIONS)
        for (const [label, reg] of (i % 2
          ? [
              ['full', full],
              ['empty', empty],
            ]
          : [
              ['empty', empty],
              ['full', full],
            ]) as [string, RegistryProcess][]) {
          const key = `${op}|${label}`;
          const list = results.get(key) ?? [];
          list.push(await timeOnce(op, reg, world, i));
          results.set(key, list);
        }
    sampled = true;
  } finally {
    await empty.stop();
    await full.stop({ keepData: sampled });
  }
  const sweep = await timeRetentionBatches(fullDir, args.number('batches', 40), args.number('batch', 500));
  const rows = OPERATIONS.map((op) => {
    const e = summarize(results.get(`${op}|empty`) ?? []);
    const f = summarize(results.get(`${op}|full`) ?? []);
    return [
      op,
      ms(e.median),
      ms(e.p99),
      ms(f.median),
      ms(f.p99),
      (f.median / e.median).toFixed(2),
      (f.p99 / e.p99).toFixed(2),
    ];
  });
  const samplingS = (performance.now() - sampling) / 1000;
  const worst = Math.max(...rows.map((r) => Number(r[5])));
  const body = `
Target (issue 13, 9): with ${runs.toLocaleString('en')} finished runs and their logs in the database, these operations
stay within 2× of the same operations on an empty database. Both registries (SQLite, \`node master serve\`)
run side by side on the same principals (${SITES} sites, ${OTHER_RESEARCHERS + 1} researchers) and the same task
with 1,000 runs; the full one also holds the history, filled by direct inserts through the registry's
schema: half the runs in tasks with one run, half in tasks with ${WIDE_TASK_RUNS} runs, a quarter of the tasks
the timed researcher's, every run completed with a log of ${logBytes} bytes (two rows). ${samples} samples of each
operation, alternating between the registries. Hand-out: a site's long poll is waiting when the task is posted,
timed from the POST to the poll's answer. Task list: \`GET /tasks\`, first page.

${table(['operation', 'empty: median (ms)', 'empty: p99 (ms)', `${runs.toLocaleString('en')} runs: median (ms)`, 'p99 (ms)', 'ratio of medians', 'ratio of p99'], rows)}

Worst ratio of medians: ${worst.toFixed(2)} (target ≤ 2).

Retention on the full database (the store called directly, after the registries stopped): logs older
than half the history expire in batches of ${sweep.batch} runs, each one write transaction; ${sweep.n} batches
timed: median ${ms(sweep.median)} ms, p99 ${ms(sweep.p99)} ms, longest ${ms(sweep.max)} ms holding the write lock,
${sweep.logs} logs expired in all.

Bytes on disk (SQLite file size after a checkpoint, between the fill's phases): ${Math.round(figures.perSingleRunTask)} bytes
per task with one run (task, run, their index entries; no log), ${Math.round(figures.perWideRun)} bytes per run of
a task with ${WIDE_TASK_RUNS} runs, ${Math.round(figures.perRunWithLog)} bytes per run on average with its log of
${figures.logBytes} bytes. The file: ${(figures.fileBytes / 2 ** 20).toFixed(0)} MiB, filled in ${(figures.fillMs / 1000).toFixed(1)} s
(once: later runs with the same schema and shape copy the cached file); the timed part took ${samplingS.toFixed(0)} s.
`;
  console.log(body);
  writeSection({
    id: 'history',
    title: '9. Cost as history grows',
    command: `npm run bench:history -- --runs ${runs} --log-bytes ${logBytes} --samples ${samples} --batches ${sweep.n} --batch ${sweep.batch}`,
    body,
  });
}

runMain(
  {
    usage:
      'Usage: node dist/bench/history.js [--runs 1000000] [--log-bytes 2048] [--samples 100] [--batches 40] [--batch 500] [--fresh]\n' +
      '  Target 9: operations on a registry with N finished runs against an empty one (--fresh: refill the cached database).',
    options: {
      runs: 'value',
      'log-bytes': 'value',
      samples: 'value',
      batches: 'value',
      batch: 'value',
      fresh: 'boolean',
    },
  },
  main,
);
