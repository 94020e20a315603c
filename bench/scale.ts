/**
 * Figure 3: one registry process against 1,000 simulated sites (HTTP connections from a few
 * load-generator processes, not containers), while researchers post tasks. Long polling
 * (broadcast tasks to every site, then single-site tasks at a steady rate), then plain polling
 * at a 1 s interval. Every run is started and finished by its site.
 */
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { PhtClient } from '../sdk/index.js';
import { IMAGE_REGISTRY } from '../test/helpers/docker.js';
import { hotSpots, newestProfile } from './lib/cpu-profile.js';
import {
  memoryAtPeak,
  perBroadcast,
  readDatabaseLog,
  readProbes,
  samplePressure,
  summarizeTimeline,
} from './lib/scale-timeline.js';
import { ProcSampler, readProc, TreeSampler, type UsageWindow } from './lib/proc-stats.js';
import { ensureFdLimit, startDeployment, type Deployment } from './lib/registry-deployment.js';
import { freePort } from '../test/helpers/nginx.js';
import { startPostgresCluster, type PostgresCluster } from '../test/helpers/postgres.js';
import { makeDataDir, stopChild } from './lib/registry-process.js';
import { type Build, buildBaseline, removeBuild, THIS_CHECKOUT } from './lib/baseline.js';
import { writeSection } from './lib/report.js';
import { mib, ms, summarize, table, wallMs, type Summary } from './lib/stats.js';
import { type BenchArgs, runMain } from './lib/world.js';
import type { DoneMessage, StartMessage } from './scale-sites.js';
import { sleep } from '../shared/abortable.js';

const HANDOUT_P99_TARGET_MS = 100;
/** Issue 10/13: 300 MB at 1,000 sites; 500 MB at 10,000 (issue 13, target 5). */
const rssTargetBytes = (sites: number) => (sites >= 10_000 ? 500 : 300) * 1048576;
/** The benchmark's own PostgreSQL server when no --database is given (room for 3 × 20 pooled connections and more). */
const BENCH_PG_MAX_CONNECTIONS = 300;
const IMAGE = `${IMAGE_REGISTRY}/pht-bench/workload:1`;
const RESEARCHERS = 4;

interface Posted {
  taskId: number;
  postedAt: number;
  answeredAt: number;
}

interface PhaseResult {
  name: string;
  usage: UsageWindow;
  generatorCores: number;
  /** PostgreSQL's server and backends, and nginx's workers (null: none, or not on this machine). */
  postgresCores: number | null;
  nginxCores: number | null;
  /** Per registry process: CPU (cores) and peak RSS over the phase. */
  perProcess: { cores: number; peakRssBytes: number }[];
  handout: Summary;
  post: Summary;
  dispatchedPerSecond: number;
  runs: number;
  extra: Record<string, string>;
}

interface Backend {
  label: string;
  database: boolean;
  registries: number;
}

/** `sqlite`, `postgres`, `postgres×3` (or `postgresx3`): what --backends lists. */
function parseBackends(list: string): Backend[] {
  return list.split(',').map((item) => {
    const m = /^(sqlite|postgres)(?:[×x]([1-9][0-9]?))?$/.exec(item.trim());
    if (!m || (m[1] === 'sqlite' && m[2] !== undefined))
      throw new Error(`--backends: "${item}" is not sqlite, postgres or postgres×N (N processes behind nginx)`);
    const registries = Number(m[2] ?? 1);
    return { label: item.trim(), database: m[1] === 'postgres', registries };
  });
}

interface Measured {
  backend: string;
  phases: PhaseResult[];
  errors: number;
  peakRss: number;
}

async function main(args: BenchArgs): Promise<void> {
  const ref = args.string('baseline', '');
  const backendList = args.string('backends', '');
  if (backendList) {
    if (ref) throw new Error('--backends and --baseline do not go together');
    return consortium(args, parseBackends(backendList));
  }
  if (!ref) return void (await measure(args, THIS_CHECKOUT, null));
  // Before and after in one run: the baseline commit's registry first, then this checkout's.
  const baseline = buildBaseline(ref);
  try {
    await measure(args, baseline, 'before');
    await measure(args, THIS_CHECKOUT, 'after');
  } finally {
    removeBuild(baseline);
  }
}

/**
 * The same workload on each backend in turn, in one run: SQLite, one PostgreSQL registry, N
 * behind nginx. PostgreSQL is --database (a superuser URL) or a throwaway server of the
 * benchmark's own on a free port (fsync off as in the test cluster; synchronous_commit on).
 */
async function consortium(args: BenchArgs, backends: Backend[]): Promise<void> {
  let cluster: PostgresCluster | null = null;
  let adminUrl = args.string('database', '') || null;
  const results: Measured[] = [];
  try {
    if (!adminUrl && backends.some((b) => b.database)) {
      const own = (cluster = await startPostgresCluster(await freePort(), {
        maxConnections: BENCH_PG_MAX_CONNECTIONS,
      }));
      adminUrl = own.url;
      await logDatabaseMaintenance(own.url);
      // Interrupted (Ctrl-C, timeout): the server must not outlive the benchmark.
      for (const signal of ['SIGINT', 'SIGTERM'] as const)
        process.once(signal, () => void own.destroy().finally(() => process.exit(130)));
      console.log(`PostgreSQL for the benchmark on port ${cluster.port} (max_connections ${BENCH_PG_MAX_CONNECTIONS})`);
    }
    for (const b of backends) {
      console.log(`--- ${b.label} ---`);
      results.push(
        await measure(args, THIS_CHECKOUT, null, {
          postgresAdminUrl: b.database ? adminUrl : null,
          registries: b.registries,
          databaseLog: b.database && cluster ? path.join(cluster.dir, 'pg.log') : null,
        }),
      );
    }
  } finally {
    await cluster?.destroy();
  }
  reportConsortium(results, args);
}

async function measure(
  args: BenchArgs,
  build: Build,
  comparison: 'before' | 'after' | null,
  backend?: { postgresAdminUrl: string | null; registries: number; databaseLog: string | null },
): Promise<Measured> {
  const siteCount = args.number('sites', 1000);
  const generators = args.number('generators', 2);
  const broadcasts = args.number('broadcasts', 5);
  const rate = args.number('rate', 100);
  const seconds = args.number('seconds', 20);
  const plainSeconds = args.number('plain-seconds', 30);
  const profile = args.flag('profile');
  const keepData = args.flag('keep-data');
  // V8's old-space limit for the registry processes (node --max-old-space-size), in MiB: what
  // bounds the JS heap's growth under a 10,000-site broadcast (issue 13, target 5).
  const oldSpaceMib = args.number('registry-max-old-space', 0);
  const registryNodeArgs = oldSpaceMib > 0 ? [`--max-old-space-size=${oldSpaceMib}`] : [];
  const which = args.string('phases', 'long,plain').split(',');
  // --database: a PostgreSQL superuser URL (a fresh database is made and dropped); --registries N:
  // N processes on it behind nginx.
  const postgresAdminUrl = backend ? backend.postgresAdminUrl : args.string('database', '') || null;
  const registries = backend ? backend.registries : args.number('registries', 1);
  const siteNames = Array.from({ length: siteCount }, (_, i) => `bench-scale-${String(i).padStart(4, '0')}`);
  const dataDir = makeDataDir();
  console.log(`seeding ${siteCount} sites`);
  const profileDir = profile ? fs.mkdtempSync(path.join(os.tmpdir(), 'pht-bench-profile-')) : null;
  // Each registry process writes its GC pauses, event-loop delay and memory here (timeline-probe.ts).
  const timelineDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pht-bench-timeline-'));
  process.env.PHT_TIMELINE_DIR = timelineDir;
  const databaseLog = backend?.databaseLog ?? null;
  const pressure = samplePressure();
  const context = () => ({
    pressure: pressure.samples,
    probes: readProbes(timelineDir),
    database: databaseLog ? readDatabaseLog(databaseLog) : [],
  });
  const {
    deployment: registry,
    siteKeys,
    userTokens,
  } = await startDeployment({
    root: build.root,
    dataDir,
    postgresAdminUrl,
    registries,
    sites: siteNames,
    users: Array.from({ length: RESEARCHERS }, (_, i) => `bench-researcher-${i}`),
    nodeArgs: [
      '--require',
      path.join(__dirname, 'lib', 'timeline-probe.js'),
      ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []),
      ...registryNodeArgs,
    ],
  });
  const researchers = [...userTokens.values()].map(
    (token) => new PhtClient({ url: registry.url, token, timeoutMs: 120_000 }),
  );
  const sites = siteNames.map((name) => ({ name, key: siteKeys.get(name)! }));
  const phases: PhaseResult[] = [];
  const running: Generators[] = [];
  let errors = 0;
  const errorSamples: string[] = [];
  try {
    if (which.includes('long')) {
      // Long polling: broadcasts first, then steady single-site tasks, on the same parked polls.
      const gens = await startGenerators(registry, sites, generators, { mode: 'long', waitSeconds: 30, intervalMs: 0 });
      running.push(gens);
      await waitParked(registry, siteCount);
      const broadcast = broadcasts > 0 ? await runBroadcasts(registry, researchers[0]!, broadcasts, gens) : null;
      // The steady phase measures hand-outs to parked sites: it starts once the broadcasts' tail
      // is over (nearly every site has reported its last run and parked again; a task for a site
      // still doing so waits for that site, not for the registry, and belongs to the broadcast).
      // Not all: with 10,000 sites some polls are always between a timeout and the next poll.
      if (broadcast) await waitParked(registry, Math.floor(siteCount * 0.99));
      const targeted = await runTargeted(registry, researchers, siteNames, rate, seconds, gens);
      const done = await stopGenerators(gens);
      errors += done.errors + targeted.postErrors;
      errorSamples.push(...done.errorSamples);
      if (broadcast)
        phases.push(
          finishPhase(
            `long poll: ${broadcasts} tasks to all ${siteCount} sites, one after another`,
            broadcast,
            done,
            context(),
          ),
        );
      phases.push(finishPhase(`long poll: single-site tasks at ${rate}/s for ${seconds} s`, targeted, done, context()));
      phases.at(-1)!.extra['site-side errors during the long-poll phases'] = String(done.errors);
      phases.at(-1)!.extra['requests retried by the sites during the long-poll phases'] = describeRetries(done.retries);
    }
    if (which.includes('plain')) {
      const gens = await startGenerators(registry, sites, generators, {
        mode: 'plain',
        waitSeconds: 0,
        intervalMs: 1000,
      });
      running.push(gens);
      await sleep(2000); // every site has polled once: steady state
      const plain = await runTargeted(registry, researchers, siteNames, rate, plainSeconds, gens);
      const done = await stopGenerators(gens);
      errors += done.errors + plain.postErrors;
      errorSamples.push(...done.errorSamples);
      const plainPhase = finishPhase(
        `plain polling every 1 s: single-site tasks at ${rate}/s for ${plainSeconds} s`,
        plain,
        done,
        context(),
      );
      const lat = summarize(done.pollLatencies);
      plainPhase.extra['polls/s'] = ((done.polls / plain.usage.wallMs) * 1000).toFixed(0);
      plainPhase.extra['poll request p50 / p99 (ms)'] = `${ms(lat.median)} / ${ms(lat.p99)}`;
      plainPhase.extra['site-side errors'] = String(done.errors);
      plainPhase.extra['requests retried by the sites'] = describeRetries(done.retries);
      phases.push(plainPhase);
    }
  } catch (e) {
    // Leave nothing running: the generators hold their parent open, the registry its port.
    // Their reports first: what the sites saw explains most failures.
    for (const g of running) {
      const report = await Promise.race([
        stopGenerators(g),
        new Promise<null>((r) => setTimeout(() => r(null), 15_000)),
      ]).catch(() => null);
      if (report)
        console.error(
          `sites saw: ${report.errors} errors (${report.errorSamples.slice(0, 5).join('; ')}); retried: ${describeRetries(report.retries)}`,
        );
      for (const child of g.children) await stopChild(child, 1000);
    }
    await Promise.all(researchers.map((r) => r.close()));
    await registry.stop({ keepData: true });
    console.error(`registry data and log kept in ${registry.dataDir}`);
    throw e;
  }
  await Promise.all(researchers.map((r) => r.close()));
  const peakRss = Math.max(...registry.processes.map((p) => readProc(p.pid).peakRssBytes));
  // --keep-data: the registry's log and database stay for reading (which run was handed out when).
  await registry.stop({ keepData });
  if (keepData) console.log(`registry data and log kept in ${registry.dataDir}`);
  fs.rmSync(timelineDir, { recursive: true, force: true });
  pressure.stop();
  // A profiled run's figures are slowed by the profiler: printed, not recorded.
  report(phases, !profileDir, {
    phases: which.join(','),
    siteCount,
    generators,
    broadcasts,
    rate,
    seconds,
    plainSeconds,
    errors,
    errorSamples,
    peakRss,
    deployment: registry.label,
    registries,
    database: postgresAdminUrl !== null,
    build,
    comparison,
    args: process.argv.slice(2).join(' '),
  });
  if (profileDir) reportProfile(profileDir, process.argv.slice(2).join(' '), which);
  return { backend: registry.label, phases, errors, peakRss };
}

interface Generators {
  children: ChildProcess[];
  done: Promise<DoneMessage[]>;
}

async function startGenerators(
  registry: Deployment,
  sites: { name: string; key: string }[],
  count: number,
  options: Pick<StartMessage, 'mode' | 'waitSeconds' | 'intervalMs'>,
): Promise<Generators> {
  const children: ChildProcess[] = [];
  const ready: Promise<void>[] = [];
  const done: Promise<DoneMessage>[] = [];
  for (let g = 0; g < count; g++) {
    const child = fork(path.join(__dirname, 'scale-sites.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.push(child);
    // Its share of 10,000 sites is as many sockets: more than a default `ulimit -n` of 1,024.
    const needed = Math.ceil(sites.length / count) + 256;
    if (!ensureFdLimit(child.pid!, needed))
      console.warn(`load generator ${child.pid} may open fewer than ${needed} files and prlimit could not raise it`);
    const share = sites.filter((_, i) => i % count === g);
    ready.push(new Promise((resolve) => child.once('message', () => resolve())));
    done.push(
      new Promise((resolve, reject) => {
        child.on('message', (m: DoneMessage | { type: 'ready' }) => m.type === 'done' && resolve(m));
        child.once('exit', (code) => reject(new Error(`load generator exited with ${code} before reporting`)));
      }),
    );
    child.send({ type: 'start', url: registry.url, sites: share, ...options } satisfies StartMessage);
  }
  await Promise.all(ready);
  const all = Promise.all(done);
  all.catch(() => undefined); // awaited by stopGenerators; after a failure nobody waits for it
  return { children, done: all };
}

async function stopGenerators(gens: Generators): Promise<DoneMessage> {
  // A generator that died (its exit already failed the run) has no channel left to send on.
  for (const child of gens.children) if (child.connected) child.send({ type: 'stop' });
  const timer = setTimeout(() => gens.children.forEach((c) => void stopChild(c, 1000)), 30_000);
  const reports = await gens.done;
  clearTimeout(timer);
  return {
    type: 'done',
    receipts: reports.flatMap((r) => r.receipts),
    polls: reports.reduce((n, r) => n + r.polls, 0),
    pollLatencies: reports.flatMap((r) => r.pollLatencies),
    timeouts: reports.flatMap((r) => r.timeouts),
    loopDelays: reports.flatMap((r) => r.loopDelays),
    errors: reports.reduce((n, r) => n + r.errors, 0),
    errorSamples: reports.flatMap((r) => r.errorSamples),
    retries: reports.reduce<Record<string, number>>((all, r) => {
      for (const [k, v] of Object.entries(r.retries)) all[k] = (all[k] ?? 0) + v;
      return all;
    }, {}),
  };
}

/** Until `count` site polls wait, summed over the registry processes (each asked directly). */
async function waitParked(registry: Deployment, count: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    let waiting = 0;
    for (const p of registry.processes) {
      const body = (await (await fetch(`${p.url}/healthz`)).json()) as { waiting: { sites: number } };
      waiting += body.waiting.sites;
    }
    if (waiting >= count) return;
    await sleep(100);
  }
  throw new Error(`fewer than ${count} long polls reached the registry within 60 s`);
}

interface Workload {
  posted: Posted[];
  usage: UsageWindow;
  generatorCores: number;
  postgresCores: number | null;
  nginxCores: number | null;
  perProcess: { cores: number; peakRssBytes: number }[];
  postErrors: number;
  /** The phase's wall-clock span (ms). */
  window: { start: number; end: number };
  /** Per broadcast task: POST sent → every run final (the researcher's waitForTask returned). */
  completion?: number[];
}

/** CPU summed over the registry processes; peak RSS of the largest one. */
function samplers(
  registry: Deployment,
  gens: Generators,
): {
  stop(): {
    usage: UsageWindow;
    generatorCores: number;
    postgresCores: number | null;
    nginxCores: number | null;
    perProcess: { cores: number; peakRssBytes: number }[];
    window: { start: number; end: number };
  };
} {
  const start = wallMs();
  const regs = registry.processes.map((p) => new ProcSampler(p.pid).start());
  const gen = gens.children.map((c) => new ProcSampler(c.pid!, 1000).start());
  // Where the rest of the machine's CPU goes: the database's backends and the balancer.
  const postgres = registry.postgresPid === null ? null : new TreeSampler(registry.postgresPid).start();
  const nginx = registry.nginxPid === null ? null : new TreeSampler(registry.nginxPid).start();
  return {
    stop: () => {
      const windows = regs.map((r) => r.stop());
      const usage: UsageWindow = {
        wallMs: windows[0]!.wallMs,
        cpuMs: windows.reduce((n, w) => n + w.cpuMs, 0),
        cores: windows.reduce((n, w) => n + w.cores, 0),
        peakRssBytes: Math.max(...windows.map((w) => w.peakRssBytes)),
        startRssBytes: Math.max(...windows.map((w) => w.startRssBytes)),
        endRssBytes: Math.max(...windows.map((w) => w.endRssBytes)),
      };
      return {
        usage,
        generatorCores: gen.map((s) => s.stop().cores).reduce((a, b) => a + b, 0),
        postgresCores: postgres?.stop() ?? null,
        nginxCores: nginx?.stop() ?? null,
        perProcess: windows.map((w) => ({ cores: w.cores, peakRssBytes: w.peakRssBytes })),
        window: { start, end: wallMs() },
      };
    },
  };
}

/** Broadcast tasks, one at a time: the researcher waits (long poll) for all runs before the next. */
async function runBroadcasts(
  registry: Deployment,
  researcher: PhtClient,
  count: number,
  gens: Generators,
): Promise<Workload> {
  const sampling = samplers(registry, gens);
  const posted: Posted[] = [];
  const completion: number[] = [];
  for (let i = 0; i < count; i++) {
    const postedAt = wallMs();
    const task = await researcher.createTask({ image: IMAGE, config: {} });
    const answeredAt = wallMs();
    posted.push({ taskId: task.id, postedAt, answeredAt });
    const final = await researcher.waitForTask(task.id, { timeoutMs: 300_000 }).catch(async (e: unknown) => {
      // Say where the runs are stuck, so a failed run of the benchmark explains itself.
      const now = await researcher.getTask(task.id);
      const counts: Record<string, number> = {};
      for (const run of now.runs) counts[run.status] = (counts[run.status] ?? 0) + 1;
      throw new Error(
        `broadcast task ${task.id} not final after 300 s (${(e as Error).message}); runs: ${JSON.stringify(counts)}; registry logs in ${registry.dataDir}`,
      );
    });
    if (final.status !== 'completed') throw new Error(`broadcast task ${task.id} ended ${final.status}`);
    completion.push(wallMs() - postedAt);
    console.log(
      `  broadcast ${i + 1}/${count}: ${task.runs.length} runs, all final after ${ms(completion.at(-1)!)} ms`,
    );
  }
  return { posted, ...sampling.stop(), postErrors: 0, completion };
}

/** Single-site tasks to random sites at `rate` per second from several researchers; waits until all are final. */
async function runTargeted(
  registry: Deployment,
  researchers: PhtClient[],
  siteNames: string[],
  rate: number,
  seconds: number,
  gens: Generators,
): Promise<Workload> {
  const sampling = samplers(registry, gens);
  const posted: Posted[] = [];
  const pending: Promise<void>[] = [];
  let postErrors = 0;
  const total = Math.round(rate * seconds);
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const wait = start + (i * 1000) / rate - performance.now();
    if (wait > 0) await sleep(wait);
    const site = siteNames[Math.floor(Math.random() * siteNames.length)]!;
    const postedAt = wallMs();
    pending.push(
      researchers[i % researchers.length]!.createTask({ image: IMAGE, config: {}, sites: [site] }).then(
        (task) => void posted.push({ taskId: task.id, postedAt, answeredAt: wallMs() }),
        () => void postErrors++,
      ),
    );
  }
  await Promise.all(pending);
  // Every run is final once no researcher has a queued or running task left.
  const deadline = Date.now() + 120_000;
  for (;;) {
    const open = await Promise.all(
      researchers.flatMap((r) => [
        r.listTasks({ status: 'queued', limit: 1 }),
        r.listTasks({ status: 'running', limit: 1 }),
      ]),
    );
    if (open.every((l) => l.total === 0)) break;
    if (Date.now() > deadline) throw new Error('targeted tasks did not all finish within 120 s');
    await sleep(200);
  }
  console.log(`  ${posted.length} single-site tasks posted at ${rate}/s, all final`);
  return { posted, ...sampling.stop(), postErrors };
}

/**
 * The benchmark's own PostgreSQL logs its checkpoints and every autovacuum run, so that they can be
 * laid over the hand-outs' timeline (scale-timeline.ts).
 */
async function logDatabaseMaintenance(adminUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query('ALTER SYSTEM SET log_checkpoints = on');
    await client.query('ALTER SYSTEM SET log_autovacuum_min_duration = 0');
    await client.query('SELECT pg_reload_conf()');
  } finally {
    await client.end();
  }
}

function describeRetries(retries: Record<string, number>): string {
  const entries = Object.entries(retries).sort((a, b) => b[1] - a[1]);
  return entries.length === 0 ? 'none' : entries.map(([k, v]) => `${v}× ${k}`).join('; ');
}

function finishPhase(
  name: string,
  work: Workload,
  done: DoneMessage,
  context: Pick<Parameters<typeof summarizeTimeline>[0], 'probes' | 'database' | 'pressure'>,
): PhaseResult {
  const byTask = new Map(work.posted.map((p) => [p.taskId, p]));
  const receipts = done.receipts.filter(([taskId]) => byTask.has(taskId));
  const handouts = receipts.map(([taskId, , at]) => at - byTask.get(taskId)!.postedAt);
  const first = Math.min(...work.posted.map((p) => p.postedAt));
  const last = Math.max(...receipts.map(([, , at]) => at));
  const extra: Record<string, string> = {};
  if (work.completion) {
    // Per broadcast: runs handed out per second, from the POST to the last site's receipt.
    const rates = work.posted.map((p) => {
      const times = receipts.filter(([t]) => t === p.taskId).map(([, , at]) => at);
      return times.length / ((Math.max(...times) - p.postedAt) / 1000);
    });
    const c = summarize(work.completion);
    extra['runs handed out/s within a broadcast (median)'] = summarize(rates).median.toFixed(0);
    extra['POST → all runs final, per task (median / max ms)'] = `${ms(c.median)} / ${ms(c.max)}`;
    // In order: a time that grows from one broadcast to the next is the history's cost.
    extra['POST → all runs final, each task in order (s)'] = work.completion
      .map((t) => (t / 1000).toFixed(1))
      .join(', ');
    extra['each broadcast in order'] = perBroadcast(
      work.posted.map((p, i) => ({
        postedAt: p.postedAt,
        finalAt: p.postedAt + work.completion![i]!,
        latencies: receipts.filter(([t]) => t === p.taskId).map(([, , at]) => at - p.postedAt),
      })),
      context.probes,
    );
  }
  const memory = memoryAtPeak(context.probes, work.window.start, work.window.end);
  if (memory) extra['registry memory at its highest RSS in the phase'] = memory;
  if (!work.completion) {
    // Steady single-site tasks: what else happened second by second (issue 10's p99 spread).
    const timeline = summarizeTimeline({
      handouts: receipts.map(([taskId, , at]) => {
        const postedAt = byTask.get(taskId)!.postedAt;
        return { postedAt, latencyMs: at - postedAt };
      }),
      timeouts: done.timeouts,
      generatorLoops: done.loopDelays,
      ...context,
    });
    Object.assign(extra, timeline.figures);
    console.log(`  ${name}, second by second:\n${timeline.rows.join('\n')}`);
  }
  return {
    name,
    usage: work.usage,
    generatorCores: work.generatorCores,
    postgresCores: work.postgresCores,
    nginxCores: work.nginxCores,
    perProcess: work.perProcess,
    handout: summarize(handouts),
    post: summarize(work.posted.map((p) => p.answeredAt - p.postedAt)),
    dispatchedPerSecond: receipts.length / ((last - first) / 1000),
    runs: receipts.length,
    extra,
  };
}

function report(
  phases: PhaseResult[],
  record: boolean,
  o: {
    phases: string;
    siteCount: number;
    generators: number;
    broadcasts: number;
    rate: number;
    seconds: number;
    plainSeconds: number;
    errors: number;
    errorSamples: string[];
    peakRss: number;
    deployment: string;
    registries: number;
    database: boolean;
    build: Build;
    comparison: 'before' | 'after' | null;
    args: string;
  },
): void {
  const longPhases = phases.filter((p) => p.name.startsWith('long'));
  const worstP99 = Math.max(...longPhases.map((p) => p.handout.p99), 0);
  const verdicts = [
    `errors: ${o.errors} (${o.errors === 0 ? 'met' : 'NOT met'})`,
    `p99 hand-out with long polling: ${longPhases.map((p) => `${ms(p.handout.p99)} ms`).join(' (broadcast), ')} (steady) (${worstP99 < HANDOUT_P99_TARGET_MS ? 'met' : longPhases.some((p) => p.handout.p99 < HANDOUT_P99_TARGET_MS) ? `met for steady single-site tasks, NOT met within ${o.siteCount.toLocaleString('en')}-run bursts` : 'NOT met'})`,
    `registry peak RSS ${mib(o.peakRss)} (${o.peakRss < rssTargetBytes(o.siteCount) ? 'met' : 'NOT met'})`,
  ];
  const rows = phases.map((p) => [
    p.name,
    p.runs,
    p.dispatchedPerSecond.toFixed(0),
    `${ms(p.handout.median)} / ${ms(p.handout.p99)} / ${ms(p.handout.max)}`,
    `${ms(p.post.median)} / ${ms(p.post.p99)}`,
    p.usage.cores.toFixed(2),
    mib(p.usage.peakRssBytes),
    p.generatorCores.toFixed(2),
  ]);
  const extras = phases.flatMap((p) => [
    ...Object.entries(p.extra).map(([k, v]) => `- ${p.name}: ${k}: ${v}`),
    ...(p.perProcess.length > 1
      ? [`- ${p.name}: per registry process, CPU (cores) / peak RSS: ${perProcessText(p)}`]
      : []),
  ]);
  const body = `
Targets: no errors; p99 hand-out < ${HANDOUT_P99_TARGET_MS} ms; registry RSS < ${rssTargetBytes(o.siteCount) / 1048576} MB.
**${verdicts.join('; ')}.**

${o.registries === 1 ? `One \`node master\` process on ${o.database ? 'PostgreSQL (a local throwaway server on the same 2 cores)' : 'SQLite'}` : `${o.registries} \`node master\` processes on one PostgreSQL database (a local throwaway server on the same 2 cores) behind nginx (deploy/nginx/pht-registry.conf); registry CPU is summed over the processes, RSS is the largest process's`} (info logging to a file); ${o.siteCount} sites simulated by ${o.generators}
load-generator processes (undici, one keep-alive connection per parked poll), each site completing
every run it gets (POST start, POST finish) before polling again; ${RESEARCHERS} researchers (SDK) in
the benchmark's process; the steady single-site tasks start once 99 % of the sites are parked
again after the broadcasts. Hand-out = researcher's POST sent → the site has the run (wall clock
across processes). CPU is the registry's user+system time over the phase's wall time (1.00 = one of
the ${os.cpus().length} cores); RSS is sampled every 100 ms. The load generators and the researchers
share the same ${os.cpus().length} cores (their CPU is in the last column).

${table(['phase', 'runs', 'runs handed out/s', 'hand-out p50 / p99 / max (ms)', 'POST p50 / p99 (ms)', 'registry CPU (cores)', 'registry peak RSS', 'load generators CPU (cores)'], rows)}

${extras.join('\n')}

Registry peak RSS over the whole benchmark (VmHWM): ${mib(o.peakRss)}. Errors: ${o.errors}${o.errorSamples.length ? ` (first: ${o.errorSamples.slice(0, 3).join('; ')})` : ''}.
`;
  console.log(body);
  if (!record) return;
  const variant = !o.database ? '' : o.registries > 1 ? `-postgres-${o.registries}` : '-postgres';
  writeSection({
    id: o.comparison
      ? `scale-${o.comparison}${variant}`
      : `scale${variant}${o.siteCount === 1000 ? '' : `-${o.siteCount}`}`,
    title: o.comparison
      ? `3${o.comparison === 'before' ? 'e' : 'f'}. Registry scale, ${o.comparison} (${o.build.label}; 3e and 3f are one run), ${o.deployment}`
      : `3${variant ? (o.registries > 1 ? 'd' : 'c') : ''}. Registry scale: ${o.siteCount.toLocaleString('en')} sites, ${o.deployment}`,
    command: o.comparison
      ? `npm run bench:scale -- ${o.args}`
      : `npm run bench:scale -- --sites ${o.siteCount} --generators ${o.generators} --broadcasts ${o.broadcasts} --rate ${o.rate} --seconds ${o.seconds} --plain-seconds ${o.plainSeconds} --phases ${o.phases}${o.database ? ` --database postgres://… --registries ${o.registries}` : ''}`,
    body,
  });
}

function perProcessText(p: PhaseResult): string {
  return p.perProcess.map((w) => `${w.cores.toFixed(2)} / ${mib(w.peakRssBytes)}`).join(', ');
}

/** A backend's label ("postgres ×3 behind nginx") as a section id part ("postgres-x3"). */
function backendSlug(backend: string): string {
  return backend
    .replace(/ behind .*/, '')
    .replace(/ ×/, '-x')
    .replace(/[^a-z0-9-]/g, '');
}

/** One table, the backends side by side: the figures of one run, on one machine load. */
function reportConsortium(results: Measured[], args: BenchArgs): void {
  const rows = results.flatMap((r) =>
    r.phases.map((p) => [
      r.backend,
      p.name,
      p.runs,
      p.dispatchedPerSecond.toFixed(0),
      `${ms(p.handout.median)} / ${ms(p.handout.p99)}`,
      p.usage.cores.toFixed(2),
      p.perProcess.length > 1 ? perProcessText(p) : mib(p.usage.peakRssBytes),
      p.generatorCores.toFixed(2),
      p.postgresCores === null ? '–' : p.postgresCores.toFixed(2),
      p.nginxCores === null ? '–' : p.nginxCores.toFixed(2),
    ]),
  );
  const extras = results.flatMap((r) =>
    r.phases.flatMap((p) => Object.entries(p.extra).map(([k, v]) => `- ${r.backend}, ${p.name}: ${k}: ${v}`)),
  );
  const sites = args.number('sites', 1000);
  const body = `
The same workload (figure 3: long polling, broadcasts then single-site tasks, which start once 99 %
of the sites are parked again; plain polling every 1 s) on each backend in turn, in one run. PostgreSQL is a local server on the same ${os.cpus().length} cores
(the benchmark's own unless --database is given: fsync off, synchronous_commit on); "×N" is N
registry processes on it behind nginx (deploy/nginx/pht-registry.conf). Hand-out = researcher's POST
sent → the site has the run. Registry CPU is summed over its processes (1.00 = one core); then
what the load generators themselves cost, PostgreSQL's server with all its backends, and nginx's
workers (they all share the cores). Errors per backend:
${results.map((r) => `${r.backend} ${r.errors}`).join(', ')}.

${table(['backend', 'phase', 'runs', 'runs handed out/s', 'hand-out p50 / p99 (ms)', 'registry CPU (cores)', 'peak RSS (per process: CPU / RSS)', 'load generators CPU (cores)', 'PostgreSQL CPU (cores)', 'nginx CPU (cores)'], rows)}

${extras.join('\n')}
`;
  console.log(body);
  writeSection({
    // At 1,000 sites the three backends share one section; larger runs are made one backend at a
    // time, so each keeps its own (scale-consortium-10000-sqlite, …-postgres-x3).
    id: `scale-consortium${sites === 1000 ? '' : `-${sites}-${results.map((r) => backendSlug(r.backend)).join('-')}`}`,
    title: `3g. Registry scale side by side: ${sites.toLocaleString('en')} sites on ${results.map((r) => r.backend).join(', ')}`,
    command: `npm run bench:scale -- ${process.argv.slice(2).join(' ')}`,
    body,
  });
}

function reportProfile(dir: string, args: string, which: string[]): void {
  const file = newestProfile(dir);
  const spots = hotSpots(file, 20);
  const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
  const body = `
A separate run of the same benchmark with the registry under \`node --cpu-prof\` (the profiler slows
it a little; the figures above come from a run without it). Self time of the registry process over
the whole benchmark: ${(spots.totalMs / 1000).toFixed(1)} s of CPU samples.

By module:

${table(
  ['module', 'self ms', 'share'],
  spots.files.map((f) => [f.name, f.selfMs.toFixed(0), pct(f.share)]),
)}

By function:

${table(
  ['function', 'self ms', 'share'],
  spots.functions.map((f) => [f.name, f.selfMs.toFixed(0), pct(f.share)]),
)}
`;
  console.log(body);
  writeSection({
    id: `scale-profile-${which.join('-')}`,
    title: `3b. Registry CPU profile under the scale benchmark (${which.join(' and ')} polling)`,
    command: `npm run bench:scale -- ${args}`,
    body,
  });
  fs.rmSync(dir, { recursive: true, force: true });
}

runMain(
  {
    usage:
      'Usage: node dist/bench/scale.js [--sites N] [--generators N] [--broadcasts N] [--rate N] [--seconds N]\n         [--plain-seconds N] [--phases long,plain] [--profile]\n         [--database POSTGRES_SUPERUSER_URL [--registries N]] [--baseline GIT_REF]\n         [--backends sqlite,postgres,postgres×3]\n         [--registry-max-old-space MIB] [--keep-data]\n  Figure 3: one registry (SQLite, or PostgreSQL in a fresh database; N > 1: N processes behind nginx)\n  against many simulated sites; rewrites its section of BENCHMARKS.md. --backends: each in turn, in one\n  run, side by side (PostgreSQL: --database, or a throwaway server of its own).',
    options: {
      sites: 'value',
      generators: 'value',
      broadcasts: 'value',
      rate: 'value',
      seconds: 'value',
      'plain-seconds': 'value',
      phases: 'value',
      profile: 'boolean',
      database: 'value',
      registries: 'value',
      baseline: 'value',
      backends: 'value',
      'registry-max-old-space': 'value',
      'keep-data': 'boolean',
    },
  },
  main,
);
