/**
 * Issue 13, target 2: hand-out to one idle long-polling site against a push queue, in one run.
 * Celery (Debian's python3-celery) on RabbitMQ (Debian's rabbitmq-server): `.delay()` → the task's
 * body starts, on a prefork worker with concurrency 1 and on a solo-pool worker. PHT: the
 * researcher's POST /tasks → the idle site's long poll returns the run (bench/lib/handout.ts, the
 * same measurement as bench:dispatch). The three are interleaved sample by sample, in a rotating
 * order, so that the machine's load falls on all of them alike. Each figure is timed inside one
 * process with one clock (Celery's in the Python caller with time.time_ns(): the task returns its
 * own reading; PHT's in this process), so no clock is compared across processes.
 *
 * With --profile the registry runs under `node --cpu-prof` and the hand-out's hot spots are printed.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { POOLS, startPushQueue, ensurePackages, type Pool, type PushQueue } from './celery/push-queue.js';
import { type Build, buildBaseline, removeBuild } from './lib/baseline.js';
import { makeDataDir, startRegistryProcess } from './lib/registry-process.js';
import { PhtClient } from '../sdk/index.js';
import { handoutProfile } from './celery/handout-profile.js';
import { newestProfile } from './lib/cpu-profile.js';
import { HandoutProbe } from './lib/handout.js';
import { cpuPressure, writeSection } from './lib/report.js';
import { uniqueSite } from './lib/site.js';
import { ms, percentile, summarize, table, type Summary } from './lib/stats.js';
import { type BenchArgs, runMain, startWorld, type TrainWorld } from './lib/world.js';

const WARMUP = 20;
/** The hand-out never starts a container: the image is only a name the registry records. */
const IMAGE = '127.0.0.1:5050/pht-bench/workload:1';

type Contender = 'pht' | 'baseline' | Pool;

type Figure = Summary & { p90: number };

interface Samples {
  start: number[];
  roundTrip: number[];
  /** CPU per sample: PHT's registry; Celery's RabbitMQ. */
  serverCpu: number[];
  /** CPU per sample of the Celery worker (none for PHT: its site is this process). */
  workerCpu: number[];
}

async function main(args: BenchArgs): Promise<void> {
  const samples = args.number('samples', 1000);
  const profile = args.flag('profile');
  const baselineRef = args.string('baseline', '');
  const started = Date.now();
  ensurePackages();
  const baseline = baselineRef ? buildBaseline(baselineRef) : null;
  const contenders: Contender[] = ['pht', ...(baseline ? (['baseline'] as const) : []), ...POOLS];
  const site = uniqueSite('celery-poller');
  const profileDir = profile ? fs.mkdtempSync(path.join(os.tmpdir(), 'pht-bench-celery-prof-')) : null;
  const figures = Object.fromEntries(
    contenders.map((c) => [c, { start: [], roundTrip: [], serverCpu: [], workerCpu: [] }]),
  ) as unknown as Record<Contender, Samples>;
  const pht = {
    siteFirst: 0,
    health: [] as number[],
    windows: [] as { fromUs: number; toUs: number }[],
  };
  const worlds: TrainWorld[] = [];
  const probes: Partial<Record<Contender, HandoutProbe>> = {};
  let queue: PushQueue | null = null;
  try {
    const world = await startWorld([site], {
      nodeArgs: profileDir ? ['--cpu-prof', '--cpu-prof-interval=100', `--cpu-prof-dir=${profileDir}`] : [],
    });
    worlds.push(world);
    probes.pht = new HandoutProbe(world, site, IMAGE);
    if (baseline) {
      const other = await startBaselineWorld(baseline, site);
      worlds.push(other);
      probes.baseline = new HandoutProbe(other, site, IMAGE);
    }
    queue = await startPushQueue();
    console.log(`== ${samples} samples each after ${WARMUP} warm-up ones, interleaved (${contenders.join(', ')})`);
    for (let i = 0; i < samples + WARMUP; i++) {
      // Rotate who goes first, so that none always follows the same one.
      for (let k = 0; k < contenders.length; k++) {
        const who = contenders[(i + k) % contenders.length]!;
        const probe = probes[who];
        let start: number;
        let roundTrip: number;
        if (probe) {
          const s = await probe.sample();
          start = s.handoutMs;
          roundTrip = s.postMs;
          if (i >= WARMUP) figures[who].serverCpu.push(s.registryCpuMs);
          if (i >= WARMUP && who === 'pht') {
            if (s.siteFirst) pht.siteFirst++;
            pht.health.push(s.healthMs);
            pht.windows.push(s.window);
          }
        } else {
          const q = await queue.sample(who as Pool);
          ({ startMs: start, roundTripMs: roundTrip } = q);
          if (i >= WARMUP) {
            figures[who].serverCpu.push(q.brokerCpuMs);
            figures[who].workerCpu.push(q.workerCpuMs);
          }
        }
        if (i < WARMUP) continue;
        figures[who].start.push(start);
        figures[who].roundTrip.push(roundTrip);
      }
      if ((i + 1) % 100 === 0) console.log(`   ${Math.max(0, i + 1 - WARMUP)} of ${samples}`);
    }
  } finally {
    for (const probe of Object.values(probes)) await probe.close();
    await queue?.close();
    for (const world of worlds) await world.close();
    if (baseline) removeBuild(baseline);
  }
  const hot = profileDir ? profileText(profileDir, pht.windows) : '';
  report(figures, contenders, pht, { samples, profile, baselineRef, baseline }, hot, (Date.now() - started) / 1000);
}

/**
 * A registry of another commit (built by bench/lib/baseline.ts) with the same site and a
 * researcher, created through that build's own command line (its store's API may differ).
 */
async function startBaselineWorld(build: Build, site: string): Promise<TrainWorld> {
  const dataDir = makeDataDir();
  const cli = (args: string[]) =>
    execFileSync(process.execPath, [path.join(build.root, 'master/index.js'), ...args, '--data-dir', dataDir], {
      encoding: 'utf8',
    });
  const secret = (out: string) => {
    const found = /\(shown once\): (\S+)/.exec(out)?.[1];
    if (!found) throw new Error(`no key in the baseline's answer: ${out}`);
    return found;
  };
  const siteKey = secret(cli(['create-site', site]));
  const token = secret(cli(['create-user', 'bench-researcher', '--role', 'researcher']));
  const registry = await startRegistryProcess({ root: build.root, dataDir });
  const researcher = new PhtClient({ url: registry.url, token, timeoutMs: 120_000 });
  return {
    registry,
    researcher,
    siteKeys: new Map([[site, siteKey]]),
    async close() {
      await researcher.close();
      await registry.stop();
    },
  };
}

/** Where the registry's CPU went inside the hand-out windows (bench/celery/handout-profile.ts). */
function profileText(dir: string, windows: { fromUs: number; toUs: number }[]): string {
  const p = handoutProfile(newestProfile(dir), windows);
  fs.rmSync(dir, { recursive: true, force: true });
  const per = (x: number) => (x / p.windows).toFixed(3);
  const rows = (list: { name: string; ms: number }[]) =>
    list.map((h) => [h.name, per(h.ms), `${((h.ms / p.busyMs) * 100).toFixed(1)} %`]);
  const head = (what: string) => [what, 'ms per hand-out', 'share'];
  return `
Registry CPU profile (\`node --cpu-prof --cpu-prof-interval=100\`): only the samples inside the
${p.windows} PHT hand-out windows (before the POST → both answers in hand; ${per(p.windowMs)} ms per window
on average): ${per(p.busyMs)} ms per hand-out on the CPU, by step of the hand-out (the innermost
frame of the stack that names one), by package or file of the leaf, and by leaf function.

${table(head('step'), rows(p.steps))}

${table(head('leaf package or file'), rows(p.leaves))}

${table(head('leaf function'), rows(p.functions))}
`;
}

function report(
  f: Record<Contender, Samples>,
  contenders: Contender[],
  pht: { siteFirst: number; health: number[] },
  run: { samples: number; profile: boolean; baselineRef: string; baseline: Build | null },
  hot: string,
  seconds: number,
): void {
  const { samples, profile, baselineRef, baseline } = run;
  const withP90 = (xs: number[]) => ({
    ...summarize(xs),
    p90: percentile(
      [...xs].sort((a, b) => a - b),
      0.9,
    ),
  });
  const s = Object.fromEntries(contenders.map((c) => [c, withP90(f[c].start)])) as Record<Contender, Figure>;
  const rt = Object.fromEntries(contenders.map((c) => [c, withP90(f[c].roundTrip)])) as Record<Contender, Figure>;
  const ifBaseline = <T>(rows: () => T[]): T[] => (baseline ? rows() : []);
  const row = (label: string, x: Figure) => [label, x.n, ms(x.median), ms(x.p90), ms(x.p99), ms(x.mean), ms(x.max)];
  const ratio = (c: Pool) => (s.pht.median / s[c].median).toFixed(2);
  const met = s.pht.median <= s.prefork.median;
  const body = `
Target (issue 13, 2): hand-out to one idle long-polling site, median no slower than a push queue.
**${met ? 'Met' : 'Not met'}: PHT median ${ms(s.pht.median)} ms against Celery ${ms(s.prefork.median)} ms (prefork, concurrency 1; ratio ${ratio('prefork')}) and ${ms(s.solo.median)} ms (solo pool; ratio ${ratio('solo')}).**

In one run: Debian's RabbitMQ and Celery on loopback (own data folder and ports, no plugins),
one Celery worker per pool (\`--without-gossip --without-mingle\`, each on its own queue) and a
Python caller; a PHT registry process (\`node master\`, SQLite) with one site whose raw long poll
(undici, keep-alive) is parked at the registry before each POST, and the researcher's SDK${baseline ? `; the same for a registry built from ${baseline.label}` : ''}. All
are interleaved sample by sample in a rotating order; ${samples} samples each after ${WARMUP}
warm-up ones. Each figure is timed by one process with one clock: Celery's by the caller
(\`time.time_ns()\` before \`.delay()\`; the task's first statement returns its own reading), PHT's
by the benchmark (\`createTask\` called → the long poll's response headers). In ${pht.siteFirst} of the
PHT samples the site had its run before the researcher had the POST's answer. Run took ${seconds.toFixed(0)} s.

What each side has done when its clock stops. PHT: the registry has authenticated the POST,
validated it, committed the task and its run to SQLite, claimed the run for the waiting poll in a
second transaction and answered the poll (a task for at most 8 sites is handed out before the
POST is answered, so the site is first; a broadcast answers the POST first). Celery (its defaults: persistent messages, no
publisher confirms): \`.delay()\` has written the message to the broker's socket without waiting
for an acknowledgement, and RabbitMQ has pushed it to the idle worker, which has started the task
(through a pipe to its child process with prefork; in the same process with solo).

${table(
  ['producer → consumer has the work, ms', 'n', 'median', 'p90', 'p99', 'mean', 'max'],
  [
    row('**PHT: POST /tasks → idle long poll returns the run**', s.pht),
    ...ifBaseline(() => [row(`PHT at ${baseline?.label ?? ''}: the same`, s.baseline)]),
    row('**Celery prefork (concurrency 1): .delay() → task body starts**', s.prefork),
    row('**Celery solo pool: .delay() → task body starts**', s.solo),
  ],
)}

Round trips, for scale (PHT: the POST's answer in the researcher's hand; Celery: \`.delay()\` →
\`.get()\` returns the task's result through the rpc:// backend):

${table(
  ['round trip, ms', 'n', 'median', 'p90', 'p99', 'mean', 'max'],
  [
    row('PHT: POST /tasks', rt.pht),
    ...ifBaseline(() => [row(`PHT at ${baseline?.label ?? ''}: POST /tasks`, rt.baseline)]),
    row('Celery prefork: .delay() → .get()', rt.prefork),
    row('Celery solo: .delay() → .get()', rt.solo),
    row('PHT: GET /healthz just before the POST (the HTTP floor)', withP90(pht.health)),
  ],
)}

CPU time per sample (Linux schedstat of every thread: exact, and less sensitive than wall time to
a busy machine). PHT: the registry process, from before the POST to both answers in hand (the
POST, the claim, the poll's answer). Celery: from before the caller is asked to after it answers
(\`.delay()\`, the task, its result back through the rpc:// backend), RabbitMQ's processes and the
worker's (for prefork, its main process and its child).

${table(
  ['CPU per sample, ms', 'n', 'median', 'p90', 'p99', 'mean', 'max'],
  [
    row('PHT registry', withP90(f.pht.serverCpu)),
    ...ifBaseline(() => [row(`PHT registry at ${baseline?.label ?? ''}`, withP90(f.baseline.serverCpu))]),
    row('RabbitMQ, prefork samples', withP90(f.prefork.serverCpu)),
    row('Celery prefork worker', withP90(f.prefork.workerCpu)),
    row('RabbitMQ, solo samples', withP90(f.solo.serverCpu)),
    row('Celery solo worker', withP90(f.solo.workerCpu)),
  ],
)}
${hot}`;
  console.log(body);
  console.log(`CPU pressure at the end: ${cpuPressure()}`);
  writeSection({
    id: 'celery',
    title: 'Hand-out to one idle site against a push queue (Celery on RabbitMQ)',
    command: `npm run bench:celery -- --samples ${samples}${profile ? ' --profile' : ''}${baselineRef ? ` --baseline ${baselineRef}` : ''}`,
    body,
  });
}

runMain(
  {
    usage:
      'Usage: node dist/bench/celery.js [--samples N] [--profile] [--baseline GIT_REF]   (npm run bench:celery)\n' +
      '  PHT hand-out to an idle long-polling site against Celery .delay() → task start on RabbitMQ,\n' +
      '  interleaved in one run (installs rabbitmq-server and python3-celery with apt if missing);\n' +
      '  rewrites its section of BENCHMARKS.md. --profile runs the registry under node --cpu-prof;\n' +
      '  --baseline measures the registry of another commit too, interleaved.',
    options: { samples: 'value', profile: 'boolean', baseline: 'value' },
  },
  main,
);
