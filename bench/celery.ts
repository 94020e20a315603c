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
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { POOLS, startPushQueue, ensurePackages, type Pool } from './celery/push-queue.js';
import { handoutProfile } from './celery/handout-profile.js';
import { newestProfile } from './lib/cpu-profile.js';
import { HandoutProbe } from './lib/handout.js';
import { cpuPressure, writeSection } from './lib/report.js';
import { uniqueSite } from './lib/site.js';
import { ms, percentile, summarize, table, type Summary } from './lib/stats.js';
import { type BenchArgs, runMain, startWorld } from './lib/world.js';

const WARMUP = 20;
/** The hand-out never starts a container: the image is only a name the registry records. */
const IMAGE = '127.0.0.1:5050/pht-bench/workload:1';

type Contender = 'pht' | Pool;
const CONTENDERS: readonly Contender[] = ['pht', ...POOLS];

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
  const samples = args.number('samples', 500);
  const profile = args.flag('profile');
  const started = Date.now();
  ensurePackages();
  const site = uniqueSite('celery-poller');
  const profileDir = profile ? fs.mkdtempSync(path.join(os.tmpdir(), 'pht-bench-celery-prof-')) : null;
  const world = await startWorld([site], {
    nodeArgs: profileDir ? ['--cpu-prof', '--cpu-prof-interval=100', `--cpu-prof-dir=${profileDir}`] : [],
  });
  const figures: Record<Contender, Samples> = {
    pht: { start: [], roundTrip: [], serverCpu: [], workerCpu: [] },
    prefork: { start: [], roundTrip: [], serverCpu: [], workerCpu: [] },
    solo: { start: [], roundTrip: [], serverCpu: [], workerCpu: [] },
  };
  const pht = {
    siteFirst: 0,
    health: [] as number[],
    cpu: [] as number[],
    windows: [] as { fromUs: number; toUs: number }[],
  };
  try {
    const queue = await startPushQueue();
    const probe = new HandoutProbe(world, site, IMAGE);
    try {
      console.log(
        `== ${samples} samples each after ${WARMUP} warm-up ones, interleaved (PHT, Celery prefork, Celery solo)`,
      );
      for (let i = 0; i < samples + WARMUP; i++) {
        // Rotate who goes first, so that none always follows the same one.
        for (let k = 0; k < CONTENDERS.length; k++) {
          const who = CONTENDERS[(i + k) % CONTENDERS.length]!;
          let start: number;
          let roundTrip: number;
          if (who === 'pht') {
            const s = await probe.sample();
            start = s.handoutMs;
            roundTrip = s.postMs;
            if (i >= WARMUP) {
              if (s.siteFirst) pht.siteFirst++;
              pht.health.push(s.healthMs);
              figures.pht.serverCpu.push(s.registryCpuMs);
              pht.windows.push(s.window);
            }
          } else {
            const q = await queue.sample(who);
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
        if ((i + 1) % 100 === 0) console.log(`   ${i + 1 - WARMUP > 0 ? i + 1 - WARMUP : 0} of ${samples}`);
      }
    } finally {
      await probe.close();
      await queue.close();
    }
  } finally {
    await world.close();
  }
  const hot = profileDir ? profileText(profileDir, pht.windows) : '';
  report(figures, pht, samples, profile, hot, (Date.now() - started) / 1000);
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
  pht: { siteFirst: number; health: number[] },
  samples: number,
  profile: boolean,
  hot: string,
  seconds: number,
): void {
  const withP90 = (xs: number[]) => ({
    ...summarize(xs),
    p90: percentile(
      [...xs].sort((a, b) => a - b),
      0.9,
    ),
  });
  const s = Object.fromEntries(CONTENDERS.map((c) => [c, withP90(f[c].start)])) as Record<Contender, Figure>;
  const rt = Object.fromEntries(CONTENDERS.map((c) => [c, withP90(f[c].roundTrip)])) as Record<Contender, Figure>;
  const row = (label: string, x: Figure) => [label, x.n, ms(x.median), ms(x.p90), ms(x.p99), ms(x.mean), ms(x.max)];
  const ratio = (c: Pool) => (s.pht.median / s[c].median).toFixed(2);
  const met = s.pht.median <= s.prefork.median;
  const body = `
Target (issue 13, 2): hand-out to one idle long-polling site, median no slower than a push queue.
**${met ? 'Met' : 'Not met'}: PHT median ${ms(s.pht.median)} ms against Celery ${ms(s.prefork.median)} ms (prefork, concurrency 1; ratio ${ratio('prefork')}) and ${ms(s.solo.median)} ms (solo pool; ratio ${ratio('solo')}).**

In one run: Debian's RabbitMQ and Celery on loopback (own data folder and ports, no plugins),
one Celery worker per pool (\`--without-gossip --without-mingle\`, each on its own queue) and a
Python caller; a PHT registry process (\`node master\`, SQLite) with one site whose raw long poll
(undici, keep-alive) is parked at the registry before each POST, and the researcher's SDK. The
three are interleaved sample by sample in a rotating order; ${samples} samples each after ${WARMUP}
warm-up ones. Each figure is timed by one process with one clock: Celery's by the caller
(\`time.time_ns()\` before \`.delay()\`; the task's first statement returns its own reading), PHT's
by the benchmark (\`createTask\` called → the long poll's response headers). In ${pht.siteFirst} of the
PHT samples the site had its run before the researcher had the POST's answer. Run took ${seconds.toFixed(0)} s.

${table(
  ['producer → consumer has the work, ms', 'n', 'median', 'p90', 'p99', 'mean', 'max'],
  [
    row('**PHT: POST /tasks → idle long poll returns the run**', s.pht),
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
    command: `npm run bench:celery -- --samples ${samples}${profile ? ' --profile' : ''}`,
    body,
  });
}

runMain(
  {
    usage:
      'Usage: node dist/bench/celery.js [--samples N] [--profile]   (npm run bench:celery)\n' +
      '  PHT hand-out to an idle long-polling site against Celery .delay() → task start on RabbitMQ,\n' +
      '  interleaved in one run (installs rabbitmq-server and python3-celery with apt if missing);\n' +
      '  rewrites its section of BENCHMARKS.md. --profile runs the registry under node --cpu-prof.',
    options: { samples: 'value', profile: 'boolean' },
  },
  main,
);
