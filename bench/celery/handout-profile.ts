/**
 * Where the registry's CPU goes during hand-outs: the samples of a V8 CPU profile (`node
 * --cpu-prof`) that fall inside the benchmark's hand-out windows (before the POST → both answers
 * in hand), so that start-up, the /healthz checks and the runs' start and finish calls are left
 * out. Each sample is put under the step of the hand-out its stack belongs to, and its leaf
 * under the package or file that spent it.
 */
import fs from 'node:fs';
import { groupOf, shortUrl, type CpuProfile, type ProfileNode } from '../lib/cpu-profile.js';

export interface Share {
  name: string;
  ms: number;
}

export interface HandoutProfile {
  /** Number of windows and their summed length, in ms. */
  windows: number;
  windowMs: number;
  /** Profile samples inside the windows that were not idle, in ms. */
  busyMs: number;
  /** By step of the hand-out (the route or module on the stack). */
  steps: Share[];
  /** By the leaf's package or file. */
  leaves: Share[];
  /** By the leaf function. */
  functions: Share[];
}

/** Steps of the hand-out; a sample belongs to the innermost frame of its stack that matches one. */
const STEPS: ReadonlyArray<[string, (url: string, fn: string) => boolean]> = [
  // The answers' socket writes (file writes, the log's, are not writev). On loopback the syscall
  // also runs the receiver's TCP work, and a busy machine may switch to the receiver inside it.
  ['socket writes of the answers (writev)', (u, fn) => !u && fn === 'writev'],
  ['logging (winston)', (u) => /node_modules\/(winston|logform|triple-beam|@colors|safe-stable-stringify)\//.test(u)],
  [
    'request body parsing and validation (ajv)',
    (u) => u.includes('/master/http/request-parsing.js') || /node_modules\/(ajv|body-parser|raw-body)\//.test(u),
  ],
  ['SQLite store', (u) => u.includes('/master/store/sqlite-store.js') || u.includes('node_modules/better-sqlite3/')],
  [
    'authentication (auth.js)',
    (u) => u.includes('/master/http/auth.js') || u.includes('/master/store/principal-cache.js'),
  ],
  ['batch claim for the waiting poll (hand-out.js offer)', (u) => u.includes('/master/hand-out.js')],
  ['POST /tasks handler, the rest (researcher-routes.js)', (u) => u.includes('/master/http/researcher-routes.js')],
  ['long poll answer (site-routes.js)', (u) => u.includes('/master/http/site-routes.js')],
  ['events (events.js)', (u) => u.includes('/master/events.js')],
];

export function handoutProfile(file: string, windows: ReadonlyArray<{ fromUs: number; toUs: number }>): HandoutProfile {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const sorted = [...windows].sort((a, b) => a.fromUs - b.fromUs);
  const steps = new Map<string, number>();
  const leaves = new Map<string, number>();
  const functions = new Map<string, number>();
  let busy = 0;
  let t = profile.startTime;
  let w = 0;
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    t += delta;
    while (w < sorted.length && sorted[w]!.toUs < t) w++;
    const win = sorted[w];
    if (!win || t < win.fromUs) return;
    const leaf = byId.get(id)!.callFrame;
    if (leaf.functionName === '(idle)') return;
    const ms = delta / 1000;
    busy += ms;
    add(leaves, groupOf(leaf.url, leaf.functionName), ms);
    add(functions, `${leaf.functionName || '(anonymous)'} ${shortUrl(leaf.url)}`.trim(), ms);
    add(steps, stepOf(id, byId, parent), ms);
  });
  const top = (m: Map<string, number>, n: number) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, ms]) => ({ name, ms }));
  return {
    windows: windows.length,
    windowMs: windows.reduce((s, x) => s + (x.toUs - x.fromUs) / 1000, 0),
    busyMs: busy,
    steps: top(steps, 20),
    leaves: top(leaves, 12),
    functions: top(functions, 15),
  };
}

function stepOf(id: number, byId: Map<number, ProfileNode>, parent: Map<number, number>): string {
  const frames: ProfileNode['callFrame'][] = [];
  for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) frames.push(byId.get(n)!.callFrame);
  for (const f of frames) {
    const step = STEPS.find(([, test]) => test(f.url, f.functionName));
    if (!step) continue;
    if (step[0] !== 'SQLite store') return step[0];
    // Which store operation: the outermost frame of the store module.
    const op = [...frames].reverse().find((g) => g.url.includes('/master/store/sqlite-store.js'));
    return `SQLite store: ${op?.functionName || 'better-sqlite3'}`;
  }
  const leaf = frames[0]!;
  if (leaf.functionName.startsWith('(')) return `${leaf.functionName} (V8 and native)`;
  return 'HTTP server, Express routing and the rest';
}
