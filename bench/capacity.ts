/**
 * Issue 13, target 3: request capacity of one registry process, seen from a standard HTTP load
 * generator (autocannon) at 16 and 64 connections. Empty polls (a site polling plainly with
 * nothing queued) rotate over 1,000 site keys, task creations over 10 researcher tokens (one key
 * for every request would flatter any cache). The registry's own CPU time is read from /proc, so
 * the figure is also given per registry core: generator and registry share this small machine.
 *
 * With `--baseline REF` the same cells are measured for that commit too, in the same run and
 * interleaved (baseline, then this checkout, for every cell), built from `git archive` in a
 * temporary directory.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { type Build, buildBaseline, removeBuild, THIS_CHECKOUT } from './lib/baseline.js';
import { openBuildStore } from './lib/build-store.js';
import { hotSpots, monotonicUs, newestProfile, type MonotonicWindow } from './lib/cpu-profile.js';
import { ProcSampler } from './lib/proc-stats.js';
import { makeDataDir, startRegistryProcess, stopChild } from './lib/registry-process.js';
import { writeSection } from './lib/report.js';
import { ms, table } from './lib/stats.js';
import { type BenchArgs, runMain } from './lib/world.js';
import { UsageError } from '../shared/command-line.js';

const POLLS_PER_CORE_TARGET = 10_000;
const CREATIONS_TARGET = 5_000;
const IMAGE = '127.0.0.1:5050/pht-bench/workload:1';

interface Cell {
  build: string;
  scenario: 'empty polls' | 'task creations';
  connections: number;
  perSecond: number;
  failed: number;
  p50: number;
  p99: number;
  max: number;
  /** The slowest answer but for the first one of each connection (see maxAfterFirst). */
  maxAfterFirst: number;
  registryCores: number;
  generatorCores: number;
  load: string;
}

/** Sites and researchers created with the build's own store (its own migrations). */
async function seed(root: string, dataDir: string, sites: string[], users: string[]) {
  const store = await openBuildStore(root, dataDir);
  try {
    const siteKeys: string[] = [];
    const userTokens: string[] = [];
    for (const name of sites) siteKeys.push((await store.createPrincipal('site', name, 'site')).secret);
    for (const name of users) userTokens.push((await store.createPrincipal('user', name, 'researcher')).secret);
    return { siteKeys, userTokens };
  } finally {
    await store.close();
  }
}

/** What a cell measures: a registry build, or one of the floors (bench/capacity-floor.ts). */
type Server = { kind: 'registry'; build: Build } | { kind: 'floor'; mode: FloorMode };
type FloorMode = 'http' | 'per-request' | 'batched';

const FLOOR_LABELS: Record<FloorMode, string> = {
  'per-request': 'floor: node:http + SQLite, a transaction per request',
  batched: 'floor: node:http + SQLite, a transaction per event-loop turn',
  http: 'floor: node:http answering only',
};

function serverLabel(server: Server): string {
  return server.kind === 'registry' ? server.build.label : FLOOR_LABELS[server.mode];
}

/** A running server under test: the registry process or a floor process. */
interface Running {
  url: string;
  pid: number;
  logFile: string | null;
  stop(): Promise<void>;
}

/** Starts bench/capacity-floor.ts on the seeded database of `dataDir` and waits for its port. */
async function startFloor(mode: FloorMode, dataDir: string): Promise<Running> {
  const script = path.join(THIS_CHECKOUT.root, 'dist/bench/capacity-floor.js');
  const args = mode === 'http' ? [script, mode] : [script, mode, path.join(dataDir, 'registry.sqlite')];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      const m = /floor listening (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`the floor (${mode}) exited with ${code}`)));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    logFile: null,
    async stop() {
      await stopChild(child, 5000);
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function measureCell(
  server: Server,
  scenario: Cell['scenario'],
  connections: number,
  seconds: number,
  siteCount: number,
  researcherCount: number,
  profileDir: string | null,
  traceGc = false,
): Promise<Cell> {
  const dataDir = makeDataDir();
  const siteNames = Array.from({ length: siteCount }, (_, i) => `bench-cap-${String(i).padStart(4, '0')}`);
  // A floor writes into a database migrated and seeded by this checkout's store.
  const { siteKeys, userTokens } = await seed(
    server.kind === 'registry' ? server.build.root : THIS_CHECKOUT.root,
    dataDir,
    siteNames,
    Array.from({ length: researcherCount }, (_, i) => `bench-researcher-${i}`),
  );
  const registry: Running =
    server.kind === 'floor'
      ? await startFloor(server.mode, dataDir)
      : await startRegistryProcess({
          root: server.build.root,
          dataDir,
          // The per-researcher quota of open tasks (1,000 by default) would refuse most creations
          // after the first second: capacity is measured with it out of the way (every creation
          // must succeed).
          config: scenario === 'task creations' ? { limits: { openTasksPerUser: 100_000_000 } } : undefined,
          nodeArgs: [
            ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []),
            ...(traceGc ? ['--trace-gc'] : []),
          ],
        });
  let window: MonotonicWindow | null = null;
  try {
    let i = 0;
    const request =
      scenario === 'empty polls'
        ? {
            method: 'GET',
            path: '/api/v1/site/runs/next',
            setupRequest: (req: object) => ({
              ...req,
              headers: { authorization: `Bearer ${siteKeys[i++ % siteKeys.length]!}` },
            }),
          }
        : {
            method: 'POST',
            path: '/api/v1/tasks',
            setupRequest: (req: object) => {
              const n = i++;
              return {
                ...req,
                headers: {
                  authorization: `Bearer ${userTokens[n % userTokens.length]!}`,
                  'content-type': 'application/json',
                },
                body: JSON.stringify({ image: IMAGE, sites: [siteNames[n % siteNames.length]!] }),
              };
            },
          };
    const run = (duration: number) => autocannon({ url: registry.url, connections, duration, requests: [request] });
    // Warm-up: JIT, connection set-up, statement caches.
    await run(2);
    const sampler = new ProcSampler(registry.pid).start();
    const cpuBefore = process.cpuUsage();
    const fromUs = monotonicUs();
    const measured = run(seconds);
    // The first answer of each of the run's new connections is where the maximum came from
    // (target 4): a connection opened while the others already keep the registry busy waits for
    // its first answer. Recorded apart so that the maximum of established connections shows.
    const answered = new WeakSet<object>();
    let maxAfterFirst = 0;
    measured.on('response', (client, _status, _bytes, responseTimeMs) => {
      if (answered.has(client)) maxAfterFirst = Math.max(maxAfterFirst, responseTimeMs);
      else answered.add(client);
    });
    const result = await measured;
    window = { fromUs, toUs: monotonicUs() };
    const usage = sampler.stop();
    const cpu = process.cpuUsage(cpuBefore);
    return {
      build: serverLabel(server),
      scenario,
      connections,
      // Answers that succeeded: a refusal is cheap and would flatter the figure.
      perSecond: result['2xx'] / (usage.wallMs / 1000),
      failed: result.errors + result.timeouts + result.non2xx,
      p50: result.latency.p50,
      p99: result.latency.p99,
      max: result.latency.max,
      maxAfterFirst,
      registryCores: usage.cores,
      generatorCores: (cpu.user + cpu.system) / 1000 / usage.wallMs,
      load: os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(' / '),
    };
  } finally {
    const what = `${serverLabel(server)} ${scenario} c=${connections}`;
    if (traceGc && registry.logFile) console.log(`GC pauses (${what}): ${gcPauses(registry.logFile)}`);
    await registry.stop();
    if (profileDir && window && server.kind === 'registry') printProfile(profileDir, window, what);
  }
}

/** Summary of the pauses `node --trace-gc` logged (the registry's log file holds its stdout). */
function gcPauses(logFile: string): string {
  const kinds = new Map<string, number[]>();
  for (const m of fs
    .readFileSync(logFile, 'utf8')
    .matchAll(/ms: (Scavenge|Mark-Compact|Mark-sweep|Minor Mark-Sweep)[^,\n]*, ([\d.]+) \/ [\d.]+ ms/g)) {
    const list = kinds.get(m[1]!) ?? [];
    list.push(Number(m[2]));
    kinds.set(m[1]!, list);
  }
  if (kinds.size === 0) return 'none logged';
  return [...kinds.entries()]
    .map(([kind, pauses]) => {
      const sum = pauses.reduce((a, b) => a + b, 0);
      return `${kind} ${pauses.length} × (total ${ms(sum)} ms, max ${ms(Math.max(...pauses))} ms)`;
    })
    .join('; ');
}

function printProfile(dir: string, window: MonotonicWindow, what: string): void {
  const spots = hotSpots(newestProfile(dir), 30, window);
  console.log(`registry CPU profile (${what}), ${ms(spots.totalMs)} ms sampled while measured:`);
  for (const f of spots.functions) console.log(`  ${f.name}  ${ms(f.selfMs)} ms  ${(f.share * 100).toFixed(1)} %`);
  for (const f of spots.files) console.log(`  [file] ${f.name}  ${ms(f.selfMs)} ms  ${(f.share * 100).toFixed(1)} %`);
}

async function main(args: BenchArgs): Promise<void> {
  const seconds = args.number('seconds', 10);
  const siteCount = args.number('sites', 1000);
  const researcherCount = args.number('researchers', 10);
  const rounds = args.number('rounds', 1);
  const baselineRef = args.string('baseline', '');
  const connectionsList = args
    .string('connections', '16,64')
    .split(',')
    .map((c) => Number(c));
  const names = args.string('scenarios', 'polls,creations,floors').split(',');
  for (const name of names)
    if (name !== 'polls' && name !== 'creations' && name !== 'floors')
      throw new UsageError(`--scenarios takes polls, creations and/or floors, got "${name}"`);
  // A profiled run prints the registry's hot spots while each cell is measured and records nothing.
  const profileDir = args.flag('profile') ? fs.mkdtempSync(path.join(os.tmpdir(), 'pht-bench-profile-')) : null;
  const builds: Build[] = [];
  if (baselineRef) builds.push(buildBaseline(baselineRef));
  builds.push(THIS_CHECKOUT);
  const registries: Server[] = builds.map((build) => ({ kind: 'registry', build }));
  // The creation cells, in order: the registries, then the floors (bench/capacity-floor.ts).
  const creationServers: Server[] = [
    ...(names.includes('creations') ? registries : []),
    ...(names.includes('floors')
      ? (['per-request', 'batched', 'http'] as const).map((mode): Server => ({ kind: 'floor', mode }))
      : []),
  ];
  const plan: [Cell['scenario'], Server[]][] = [];
  if (names.includes('polls')) plan.push(['empty polls', registries]);
  if (creationServers.length > 0) plan.push(['task creations', creationServers]);
  const cells: Cell[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      for (const [scenario, servers] of plan) {
        for (const connections of connectionsList) {
          for (const server of servers) {
            const cell = await measureCell(
              server,
              scenario,
              connections,
              seconds,
              siteCount,
              researcherCount,
              profileDir,
              args.flag('trace-gc'),
            );
            console.log(
              `${cell.build} ${scenario} c=${connections}: ${cell.perSecond.toFixed(0)}/s, registry ${cell.registryCores.toFixed(2)} cores, generator ${cell.generatorCores.toFixed(2)} cores, p50 ${cell.p50} p99 ${cell.p99} max ${cell.max} (after each connection's first answer ${cell.maxAfterFirst}) ms, failed ${cell.failed}, load ${cell.load}`,
            );
            cells.push(cell);
          }
        }
      }
    }
  } finally {
    builds.forEach(removeBuild);
    if (profileDir) fs.rmSync(profileDir, { recursive: true, force: true });
  }
  if (profileDir) return;
  const rows = cells.map((c) => [
    c.build,
    c.scenario,
    c.connections,
    c.perSecond.toFixed(0),
    c.failed,
    ms(c.p50),
    ms(c.p99),
    ms(c.max),
    ms(c.maxAfterFirst),
    c.registryCores.toFixed(2),
    (c.perSecond / Math.max(c.registryCores, 0.01)).toFixed(0),
    c.generatorCores.toFixed(2),
    c.load,
  ]);
  const args0 = process.argv.slice(2).join(' ');
  writeSection({
    id: 'capacity',
    title: '3d. Request capacity (autocannon, 1,000 site keys, 10 researcher tokens)',
    command: `npm run bench:capacity${args0 ? ` -- ${args0}` : ''}`,
    body: `Targets (issue 13, target 3): empty polls at least ${POLLS_PER_CORE_TARGET.toLocaleString('en')} per second per
registry core; task creations at least ${CREATIONS_TARGET.toLocaleString('en')} per second. Each cell is a fresh
registry process and database (${siteCount} sites, ${researcherCount} researchers), ${seconds} s measured after a 2 s
warm-up; autocannon runs in the benchmark's own process on the same machine, so "registry cores" (the registry's
CPU time over wall time, from /proc) is what the registry itself used. Empty polls: \`GET /site/runs/next\` without
\`wait\` (204), keys in rotation. Creations: \`POST /tasks\` for one site each, tokens in rotation, the open-task quota raised out of the way;
"per s" counts successful answers only. Latencies in ms; "max after first answers" leaves out the first answer of
each connection (autocannon opens its connections anew for the measured run: the maximum is a connection opened
while the others already keep the server busy, waiting for its first answer; the floors show it too).
Load = load average (1/5/15 min) at the end of the cell.

The registry writes the creations that arrive in one turn of its event loop in one SQLite transaction, each in
its own savepoint, and answers each after the commit (master/creation-batcher.ts). The floors (\`bench/capacity-floor.ts\`,
same autocannon, connections and request bodies, one process each like the registry): a bare \`node:http\` server
that parses the JSON body and writes the same rows into a database of the registry's own schema (tables, indexes,
triggers; same pragmas), "a transaction per request" or "a transaction per event-loop turn", then answers the task
as JSON; and one that only reads the body and answers. They have no authentication, validation, quota, routing,
logging or metrics: what is left is what no registry on this machine can avoid. "per s per registry core" divides
by the CPU the server process used; on 2 shared cores the load generator's CPU ("generator cores") is taken from
the same two.

${table(
  [
    'build',
    'requests',
    'connections',
    'per s',
    'failed',
    'p50',
    'p99',
    'max',
    'max after first answers',
    'registry cores',
    'per s per registry core',
    'generator cores',
    'load',
  ],
  rows,
)}`,
  });
}

runMain(
  {
    usage:
      'usage: npm run bench:capacity -- [--baseline GIT_REF] [--seconds 10] [--connections 16,64] [--sites 1000] [--researchers 10] [--rounds 1] [--scenarios polls,creations,floors] [--profile] [--trace-gc]',
    options: {
      baseline: 'value',
      seconds: 'value',
      connections: 'value',
      sites: 'value',
      researchers: 'value',
      rounds: 'value',
      scenarios: 'value',
      profile: 'boolean',
      'trace-gc': 'boolean',
    },
  },
  main,
);
