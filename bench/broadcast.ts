/**
 * Issue 13, target 1: one task posted to 1,000 sites that are all long polling. Measures, for
 * each site, the time from the researcher's POST to the site having its run, and the registry's
 * CPU time for the whole hand-out. The sites only take their run (no start, no finish), so the
 * figure is the hand-out alone. With `--baseline REF` the same is measured for that commit,
 * interleaved round by round in the same run.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Agent, fetch } from 'undici';
import { type Build, buildBaseline, removeBuild, THIS_CHECKOUT } from './lib/baseline.js';
import { openBuildStore } from './lib/build-store.js';
import { hotSpots, monotonicUs, newestProfile, type MonotonicWindow } from './lib/cpu-profile.js';
import { RawHttpConnection } from './lib/raw-http.js';
import { readProc } from './lib/proc-stats.js';
import { makeDataDir, startRegistryProcess } from './lib/registry-process.js';
import { cpuPressure, writeSection } from './lib/report.js';
import { ms, summarize, table, wallMs, type Summary } from './lib/stats.js';
import { type BenchArgs, runMain } from './lib/world.js';
import { sleep } from '../shared/abortable.js';

const TARGET_P99_MS = 100;
const IMAGE = '127.0.0.1:5050/pht-bench/workload:1';

interface Round {
  build: string;
  round: number;
  handout: Summary;
  postMs: number;
  registryCpuMs: number;
  /** From the POST to the last answer, for a profile of the broadcast alone. */
  window: MonotonicWindow;
  load: string;
  pressure: string;
}

async function oneRound(build: Build, round: number, siteCount: number, profileDir: string | null): Promise<Round> {
  const dataDir = makeDataDir();
  const store = await openBuildStore(build.root, dataDir);
  const keys: string[] = [];
  let token: string;
  try {
    for (let i = 0; i < siteCount; i++)
      keys.push((await store.createPrincipal('site', `bench-bc-${String(i).padStart(4, '0')}`, 'site')).secret);
    token = (await store.createPrincipal('user', 'bench-researcher', 'researcher')).secret;
  } finally {
    await store.close();
  }
  const registry = await startRegistryProcess({
    root: build.root,
    dataDir,
    nodeArgs: profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
  });
  const dispatcher = new Agent({ connections: 10, headersTimeout: 120_000, bodyTimeout: 120_000 });
  const connections: RawHttpConnection[] = [];
  try {
    for (let i = 0; i < siteCount; i++) connections.push(await RawHttpConnection.open(registry.port));
    let postedAt = Infinity;
    const received: number[] = [];
    const polls = keys.map(async (key, i) => {
      const connection = connections[i]!;
      for (;;) {
        const res = await connection.request('GET', '/api/v1/site/runs/next?wait=60', {
          authorization: `Bearer ${key}`,
        });
        if (res.status === 200) {
          received.push(res.firstByteAt - postedAt);
          return;
        }
        if (res.status !== 204) throw new Error(`poll answered ${res.status}: ${res.body.toString()}`);
      }
    });
    // Every site parked: the registry reports its waiting polls.
    for (;;) {
      const health = (await (await fetch(`${registry.url}/healthz`, { dispatcher })).json()) as {
        waiting: { sites: number };
      };
      if (health.waiting.sites >= siteCount) break;
      await sleep(100);
    }
    const cpuBefore = readProc(registry.pid).cpuMs;
    const fromUs = monotonicUs();
    postedAt = wallMs();
    const post = await fetch(`${registry.url}/api/v1/tasks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ image: IMAGE }),
      dispatcher,
    });
    const postMs = wallMs() - postedAt;
    await post.arrayBuffer();
    if (post.status !== 201) throw new Error(`POST /tasks answered ${post.status}`);
    await Promise.all(polls);
    const window = { fromUs, toUs: monotonicUs() };
    const registryCpuMs = readProc(registry.pid).cpuMs - cpuBefore;
    return {
      build: build.label,
      round,
      handout: summarize(received),
      postMs,
      registryCpuMs,
      window,
      load: os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(' / '),
      pressure: cpuPressure(),
    };
  } finally {
    for (const c of connections) c.close();
    await dispatcher.close();
    await registry.stop();
  }
}

async function main(args: BenchArgs): Promise<void> {
  const siteCount = args.number('sites', 1000);
  const rounds = args.number('rounds', 3);
  const ref = args.string('baseline', '');
  const builds: Build[] = ref ? [buildBaseline(ref), THIS_CHECKOUT] : [THIS_CHECKOUT];
  // A profiled run (this checkout only, one round) prints the registry's hot spots and records nothing.
  const profileDir = args.flag('profile') ? fs.mkdtempSync(path.join(os.tmpdir(), 'pht-bench-profile-')) : null;
  const results: Round[] = [];
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const build of builds) {
        const r = await oneRound(build, round, siteCount, profileDir);
        console.log(
          `${r.build} round ${round}: hand-out p50 ${ms(r.handout.median)} p99 ${ms(r.handout.p99)} max ${ms(r.handout.max)} ms, POST ${ms(r.postMs)} ms, registry CPU ${ms(r.registryCpuMs)} ms, load ${r.load}`,
        );
        results.push(r);
      }
    }
  } finally {
    builds.forEach(removeBuild);
  }
  if (profileDir) {
    const spots = hotSpots(newestProfile(profileDir), 25, results.at(-1)?.window);
    console.log(`registry CPU profile, ${ms(spots.totalMs)} ms sampled from the POST to the last answer:`);
    for (const f of spots.functions) console.log(`  ${f.name}  ${ms(f.selfMs)} ms  ${(f.share * 100).toFixed(1)} %`);
    for (const f of spots.files) console.log(`  [file] ${f.name}  ${ms(f.selfMs)} ms  ${(f.share * 100).toFixed(1)} %`);
    fs.rmSync(profileDir, { recursive: true, force: true });
    return;
  }
  const rows = results.map((r) => [
    r.build,
    r.round,
    `${ms(r.handout.median)} / ${ms(r.handout.p99)} / ${ms(r.handout.max)}`,
    ms(r.postMs),
    ms(r.registryCpuMs),
    r.load,
    r.pressure,
  ]);
  const median = (xs: number[]) => summarize(xs).median;
  const perBuild = builds.map((b) => {
    const mine = results.filter((r) => r.build === b.label);
    return `${b.label}: hand-out p99 ${ms(median(mine.map((r) => r.handout.p99)))} ms, registry CPU ${ms(median(mine.map((r) => r.registryCpuMs)))} ms per broadcast (medians of ${mine.length} rounds)`;
  });
  const args0 = process.argv.slice(2).join(' ');
  writeSection({
    id: 'broadcast',
    title: `3g. Broadcast: one task to ${siteCount} long-polling sites`,
    command: `npm run bench:broadcast${args0 ? ` -- ${args0}` : ''}`,
    body: `Target (issue 13, target 1): every site holds its run within ${TARGET_P99_MS} ms of the POST at p99.
${siteCount} sites park a long poll each (one keep-alive connection per site, all from the benchmark's
process, through a minimal HTTP/1.1 client on raw sockets: undici's fetch cost the benchmark's own process
more per answer than the registry spent); once the registry reports them all waiting, one researcher posts
a task for every site. Hand-out = POST sent → the first byte of that site's answer received (ms); registry CPU = the registry process's user+system time from
the POST to the last site's answer. The sites only take their run: no start or finish. Each round is a
fresh registry and database; builds alternate within a round. Load = load average (1/5/15 min) and CPU
pressure (avg60) at the end of the round.

**${perBuild.join('; ')}.**

${table(['build', 'round', 'hand-out p50 / p99 / max', 'POST', 'registry CPU', 'load', 'CPU pressure'], rows)}`,
  });
}

runMain(
  {
    usage: 'usage: npm run bench:broadcast -- [--baseline GIT_REF] [--sites 1000] [--rounds 3] [--profile]',
    options: { baseline: 'value', sites: 'value', rounds: 'value', profile: 'boolean' },
  },
  main,
);
