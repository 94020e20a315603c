/**
 * Issue 13, target 5: what a parked long poll costs the registry, against the floor of a bare
 * node:http server holding the same number of parked requests from the same client (measured in
 * the same run). For each N: the floor server parks N requests, reports its memory, then answers
 * them all with the bytes the registry answers a broadcast with; the registry (this checkout, and
 * a baseline build with --baseline) parks N sites' long polls, reports its memory, and hands one
 * broadcast task to all of them. Same client for both: one raw keep-alive connection per request
 * from this process (bench/lib/raw-http.ts).
 */
import { fork, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Agent, fetch } from 'undici';
import { type Build, buildBaseline, removeBuild, THIS_CHECKOUT } from './lib/baseline.js';
import { measureMemory, type MemoryFigures } from './lib/memory-probe.js';
import { readProc } from './lib/proc-stats.js';
import { RawHttpConnection, type RawResponse } from './lib/raw-http.js';
import { benchRegistryLimits, ensureFdLimit } from './lib/registry-deployment.js';
import { makeDataDir, seedPrincipals, startRegistryProcess, stopChild } from './lib/registry-process.js';
import { cpuPressure, writeSection } from './lib/report.js';
import { mib, ms, summarize, table, wallMs, type Summary } from './lib/stats.js';
import { type BenchArgs, runMain } from './lib/world.js';
import { sleep } from '../shared/abortable.js';

const HANDOUT_P99_TARGET_MS = 100;
const RSS_TARGET_BYTES = 500 * 1048576;
const IMAGE = '127.0.0.1:5050/pht-bench/workload:1';
const PROBE = path.join(__dirname, 'lib', 'memory-probe.js');
/** Set in the child process that serves the floor. */
const FLOOR_ROLE = 'PHT_BENCH_PARKED_FLOOR';

interface Measurement {
  what: string;
  parked: number;
  /** Resident set before any connection and with every request parked (after a collection). */
  idle: MemoryFigures;
  loaded: MemoryFigures;
  /** "Answer all" (the floor's command, the registry's POST) → each answer's first byte, ms. */
  answer: Summary;
  /** Until the last answer arrived, ms. */
  lastMs: number;
  cpuMs: number;
  answerBytes: number;
  load: string;
  pressure: string;
}

type FloorMessage = { type: 'measure' } | { type: 'answer'; body: string };

/** The floor: node:http with the registry's server settings, parking every request until told. */
function serveFloor(): void {
  const parked: http.ServerResponse[] = [];
  const server = http.createServer((_req, res) => {
    parked.push(res);
  });
  server.keepAliveTimeout = 65_000;
  server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => {
    process.send!({ type: 'listening', port: (server.address() as { port: number }).port });
  });
  process.on('message', (message: FloorMessage) => {
    if (message.type === 'measure') {
      process.send!({ type: 'memory', parked: parked.length, memory: measureMemory() });
      return;
    }
    const length = Buffer.byteLength(message.body);
    for (const res of parked.splice(0)) {
      res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': length });
      res.end(message.body);
    }
  });
}

function loadNow(): string {
  return os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' / ');
}

/** Opens `n` connections (a few at a time: the accept queue is finite). */
async function openConnections(port: number, n: number): Promise<RawHttpConnection[]> {
  const out: RawHttpConnection[] = [];
  for (let i = 0; i < n; i += 100) {
    const batch = Math.min(100, n - i);
    out.push(...(await Promise.all(Array.from({ length: batch }, () => RawHttpConnection.open(port)))));
  }
  return out;
}

function receiveFloorMessage<T>(child: ChildProcess, type: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: { type: string }) => {
      if (m.type !== type) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(m as T);
    };
    const onExit = (code: number | null) => reject(new Error(`floor server exited with ${code}`));
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

async function measureFloor(n: number, body: string): Promise<Measurement> {
  const child = fork(__filename, [], { env: { ...process.env, [FLOOR_ROLE]: '1' }, execArgv: ['--expose-gc'] });
  const connections: RawHttpConnection[] = [];
  try {
    const { port } = await receiveFloorMessage<{ port: number }>(child, 'listening');
    ensureFdLimit(child.pid!, n + 256);
    const measure = async () => {
      child.send({ type: 'measure' });
      return receiveFloorMessage<{ parked: number; memory: MemoryFigures }>(child, 'memory');
    };
    const idle = (await measure()).memory;
    connections.push(...(await openConnections(port, n)));
    const answers = connections.map((c) => c.request('GET', '/parked', {}));
    let loaded: { parked: number; memory: MemoryFigures };
    while ((loaded = await measure()).parked < n) await sleep(100);
    const cpuBefore = readProc(child.pid!).cpuMs;
    const sentAt = wallMs();
    child.send({ type: 'answer', body });
    const received = await Promise.all(answers);
    return result(`bare node:http`, n, idle, loaded.memory, sentAt, received, readProc(child.pid!).cpuMs - cpuBefore);
  } finally {
    for (const c of connections) c.close();
    await stopChild(child, 5000);
  }
}

function result(
  what: string,
  n: number,
  idle: MemoryFigures,
  loaded: MemoryFigures,
  sentAt: number,
  received: RawResponse[],
  cpuMs: number,
): Measurement {
  for (const r of received) if (r.status !== 200) throw new Error(`${what}: an answer had status ${r.status}`);
  const times = received.map((r) => r.firstByteAt - sentAt);
  return {
    what,
    parked: n,
    idle,
    loaded,
    answer: summarize(times),
    lastMs: Math.max(...times),
    cpuMs,
    answerBytes: received[0]?.body.length ?? 0,
    load: loadNow(),
    pressure: cpuPressure(),
  };
}

/** Asks the registry's preloaded probe for its memory figures. */
async function probeRegistry(pid: number, file: string): Promise<MemoryFigures> {
  fs.rmSync(file, { force: true });
  process.kill(pid, 'SIGUSR2');
  for (let i = 0; i < 600; i++) {
    await sleep(50);
    if (fs.existsSync(file)) return JSON.parse(fs.readFileSync(file, 'utf8')) as MemoryFigures;
  }
  throw new Error('the registry did not answer the memory probe within 30 s');
}

async function measureRegistry(build: Build, n: number): Promise<{ m: Measurement; body: string }> {
  const dataDir = makeDataDir();
  const names = Array.from({ length: n }, (_, i) => `bench-pp-${String(i).padStart(5, '0')}`);
  const { siteKeys, userTokens } = await seedPrincipals(dataDir, names, ['bench-researcher']);
  const probeFile = path.join(dataDir, 'memory.json');
  process.env.PHT_MEMORY_PROBE_FILE = probeFile;
  const registry = await startRegistryProcess({
    root: build.root,
    dataDir,
    nodeArgs: ['--expose-gc', '--require', PROBE],
    config: { limits: benchRegistryLimits(n) },
  });
  delete process.env.PHT_MEMORY_PROBE_FILE;
  ensureFdLimit(registry.pid, n + 256);
  const dispatcher = new Agent({ connections: 4, headersTimeout: 300_000, bodyTimeout: 300_000 });
  const connections: RawHttpConnection[] = [];
  try {
    const idle = await probeRegistry(registry.pid, probeFile);
    connections.push(...(await openConnections(registry.port, n)));
    let postedAt = Infinity;
    const answers = names.map(async (name, i): Promise<RawResponse> => {
      for (;;) {
        const res = await connections[i]!.request('GET', '/api/v1/site/runs/next?wait=60', {
          authorization: `Bearer ${siteKeys.get(name)!}`,
        });
        if (res.status !== 204 || postedAt !== Infinity) return res;
      }
    });
    for (;;) {
      const health = (await (await fetch(`${registry.url}/healthz`, { dispatcher })).json()) as {
        waiting: { sites: number };
      };
      if (health.waiting.sites >= n) break;
      await sleep(200);
    }
    const loaded = await probeRegistry(registry.pid, probeFile);
    const cpuBefore = readProc(registry.pid).cpuMs;
    postedAt = wallMs();
    const post = await fetch(`${registry.url}/api/v1/tasks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${userTokens.get('bench-researcher')!}`, 'content-type': 'application/json' },
      body: JSON.stringify({ image: IMAGE }),
      dispatcher,
    });
    await post.arrayBuffer();
    if (post.status !== 201) throw new Error(`POST /tasks answered ${post.status}`);
    const received = await Promise.all(answers);
    const m = result(
      `registry (${build.label})`,
      n,
      idle,
      loaded,
      postedAt,
      received,
      readProc(registry.pid).cpuMs - cpuBefore,
    );
    return { m, body: received[0]!.body.toString() };
  } finally {
    for (const c of connections) c.close();
    await dispatcher.close();
    await registry.stop();
  }
}

const perPoll = (m: Measurement, key: keyof MemoryFigures) => (m.loaded[key] - m.idle[key]) / m.parked;
const kib = (bytes: number) => (bytes / 1024).toFixed(1);

async function main(args: BenchArgs): Promise<void> {
  const sizes = args
    .string('sites', '1000,10000')
    .split(',')
    .map((s) => Number(s.trim()));
  if (sizes.some((s) => !Number.isInteger(s) || s < 1 || s > 20_000))
    throw new Error('--sites: a comma-separated list of whole numbers from 1 to 20000');
  const ref = args.string('baseline', '');
  const builds: Build[] = ref ? [buildBaseline(ref), THIS_CHECKOUT] : [THIS_CHECKOUT];
  const results: Measurement[] = [];
  const started = Date.now();
  try {
    for (const n of sizes) {
      let body = '';
      for (const build of builds) {
        const r = await measureRegistry(build, n);
        body = r.body;
        results.push(r.m);
        print(r.m);
      }
      const floor = await measureFloor(n, body);
      results.push(floor);
      print(floor);
    }
  } finally {
    builds.forEach(removeBuild);
  }
  console.log(`took ${((Date.now() - started) / 1000).toFixed(0)} s`);
  const rows = results.map((m) => [
    m.what,
    m.parked,
    mib(m.loaded.rssBytes),
    kib(perPoll(m, 'rssBytes')),
    kib(perPoll(m, 'heapUsedBytes')),
    kib(perPoll(m, 'heapTotalBytes')),
    kib(perPoll(m, 'externalBytes') + perPoll(m, 'mallocedBytes')),
    kib(perPoll(m, 'rssBytes') - perPoll(m, 'heapTotalBytes')),
    `${ms(m.answer.median)} / ${ms(m.answer.p99)} / ${ms(m.lastMs)}`,
    ms(m.cpuMs),
    `${(m.cpuMs / m.parked).toFixed(3)}`,
    m.answerBytes,
    `${m.load}; ${m.pressure}`,
  ]);
  const args0 = process.argv.slice(2).join(' ');
  const findings = sizes.map((n) =>
    finding(
      n,
      results.filter((m) => m.parked === n),
    ),
  );
  writeSection({
    id: 'parked-polls',
    title: 'Parked long polls: the registry against a bare node:http floor',
    command: `npm run bench:parked-polls${args0 ? ` -- ${args0}` : ''}`,
    body: `Issue 13, target 5: 10,000 long-polling sites on one SQLite registry with p99 hand-out of a broadcast
under ${HANDOUT_P99_TARGET_MS} ms and RSS under ${mib(RSS_TARGET_BYTES)}. The floor is a bare node:http server
(the registry's keep-alive and backlog settings) that parks every request and, when told, answers them all
with the bytes the registry's broadcast answered (same length); the registry parks one long poll per site
(\`GET /api/v1/site/runs/next?wait=60\`), then one researcher posts a task for every site. Both are served
by one raw keep-alive connection per request from the benchmark's process (bench/lib/raw-http.ts), N
after N, in the same run. Memory is read inside the server after a forced collection (\`--expose-gc\`,
bench/lib/memory-probe.ts), before any connection and with all N parked; "per poll" is the difference
over N. Answer = "answer all" (the floor's command; the registry's POST) → the first byte of each answer
(p50 / p99 / last, ms); CPU = the server's user+system time until the last answer. The sites only take
their run. At 1,000 the resident-set differences are within the noise of the heap's own reservations (some
come out negative): read the JS heap columns there, and the resident set at 10,000.

${findings.map((f) => `- ${f}`).join('\n')}

${table(
  [
    'server',
    'parked',
    'RSS parked',
    'RSS per poll (KiB)',
    'JS heap used per poll',
    'JS heap reserved per poll',
    'external + malloced per poll',
    'RSS outside the JS heap per poll',
    'answer p50 / p99 / last',
    'CPU (ms)',
    'CPU per answer (ms)',
    'answer bytes',
    'load; CPU pressure',
  ],
  rows,
)}`,
  });
}

/**
 * What the figures at one N say about the target: the floor's own CPU time for N answers bounds
 * the last answer from below (node:http answers on one thread), and the registry's memory and
 * CPU beyond the floor's are what the registry can still cut.
 */
function finding(n: number, measured: Measurement[]): string {
  const floor = measured.find((m) => m.what.startsWith('bare'));
  const registry = measured.filter((m) => !m.what.startsWith('bare')).at(-1);
  if (!floor || !registry) return `N=${n}: incomplete`;
  const perAnswerUs = (m: Measurement) => ((m.cpuMs / m.parked) * 1000).toFixed(0);
  const floorVerdict =
    floor.cpuMs > HANDOUT_P99_TARGET_MS
      ? `above the ${HANDOUT_P99_TARGET_MS} ms target by itself: one node:http process cannot answer ${n} parked requests within it on this machine`
      : `within the ${HANDOUT_P99_TARGET_MS} ms target`;
  const rssVerdict =
    registry.loaded.rssBytes < RSS_TARGET_BYTES
      ? `under the ${mib(RSS_TARGET_BYTES)} target`
      : `over the ${mib(RSS_TARGET_BYTES)} target`;
  return (
    `**N=${n}**: the bare server spent ${ms(floor.cpuMs)} ms of CPU (${perAnswerUs(floor)} µs per answer) and its last answer ` +
    `arrived ${ms(floor.lastMs)} ms after "answer all", ${floorVerdict}. The ${registry.what} spent ${ms(registry.cpuMs)} ms ` +
    `(${perAnswerUs(registry)} µs per answer, the task's creation included), last answer after ${ms(registry.lastMs)} ms. ` +
    `Memory per parked poll: registry ${kib(perPoll(registry, 'rssBytes'))} KiB of RSS (${kib(perPoll(registry, 'heapUsedBytes'))} KiB ` +
    `of JS heap in use) against the floor's ${kib(perPoll(floor, 'rssBytes'))} (${kib(perPoll(floor, 'heapUsedBytes'))}); ` +
    `the registry held ${mib(registry.loaded.rssBytes)} with all ${n} parked, ${rssVerdict}.`
  );
}

function print(m: Measurement): void {
  console.log(
    `${m.what} N=${m.parked}: RSS ${mib(m.idle.rssBytes)} → ${mib(m.loaded.rssBytes)} (${kib(perPoll(m, 'rssBytes'))} KiB per poll; heap used ${kib(perPoll(m, 'heapUsedBytes'))}, reserved ${kib(perPoll(m, 'heapTotalBytes'))} KiB), answer p50 ${ms(m.answer.median)} p99 ${ms(m.answer.p99)} last ${ms(m.lastMs)} ms, CPU ${ms(m.cpuMs)} ms, load ${m.load}`,
  );
}

if (process.env[FLOOR_ROLE] === '1') serveFloor();
else
  runMain(
    {
      usage: 'usage: npm run bench:parked-polls -- [--sites 1000,10000] [--baseline GIT_REF]',
      options: { sites: 'value', baseline: 'value' },
    },
    main,
  );
