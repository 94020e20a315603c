import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { handoutProfile } from '../../bench/celery/handout-profile.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

const DIST = 'file:///repo/dist';
const frame = (functionName: string, url = '') => ({
  functionName,
  url,
  lineNumber: 0,
  columnNumber: 0,
  scriptId: '0',
});

/**
 * A small V8 profile: (root) → (idle); (root) → handler (researcher-routes) → createTask
 * (sqlite-store) → run (better-sqlite3); handler → log (winston); (root) → writev.
 */
const NODES = [
  { id: 1, callFrame: frame('(root)'), children: [2, 3, 7] },
  { id: 2, callFrame: frame('(idle)') },
  { id: 3, callFrame: frame('handler', `${DIST}/master/http/researcher-routes.js`), children: [4, 6] },
  { id: 4, callFrame: frame('createTask', `${DIST}/master/store/sqlite-store.js`), children: [5] },
  { id: 5, callFrame: frame('run', 'file:///repo/node_modules/better-sqlite3/lib/methods/wrappers.js') },
  { id: 6, callFrame: frame('log', 'file:///repo/node_modules/winston/lib/winston/logger.js') },
  { id: 7, callFrame: frame('writev') },
];

let dir = '';
afterEach(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  dir = '';
});

/** Writes a profile whose samples (node id, at µs) are given in time order; starts at t = 1000 µs. */
function writeProfile(samples: [number, number][]): string {
  dir = makeTempDir('pht-handout-profile-');
  const file = path.join(dir, 'x.cpuprofile');
  let t = 1000;
  const timeDeltas = samples.map(([, at]) => {
    const d = at - t;
    t = at;
    return d;
  });
  fs.writeFileSync(
    file,
    JSON.stringify({ nodes: NODES, startTime: 1000, endTime: t, samples: samples.map(([id]) => id), timeDeltas }),
  );
  return file;
}

describe('the registry profile of the hand-out windows', () => {
  it('counts only the busy samples inside the windows, each for the time since the previous sample', () => {
    const file = writeProfile([
      [5, 1100], // before the window: start-up, not counted
      [5, 2100], // inside [2000, 3000]: 1,000 µs since the previous sample
      [2, 2300], // idle inside: not counted
      [7, 2500], // writev: 200 µs
      [5, 3500], // between the windows: not counted
      [6, 4100], // inside [4000, 5000]: 600 µs
      [5, 6000], // after the last window
    ]);
    const p = handoutProfile(file, [
      { fromUs: 4000, toUs: 5000 },
      { fromUs: 2000, toUs: 3000 },
    ]);
    expect(p.windows).toBe(2);
    expect(p.windowMs).toBe(2);
    expect(p.busyMs).toBeCloseTo(1.8);
    expect(p.steps).toEqual([
      { name: 'SQLite store: createTask', ms: 1 },
      { name: 'logging (winston)', ms: 0.6 },
      { name: 'socket writes of the answers (writev)', ms: 0.2 },
    ]);
    expect(p.leaves.map((l) => l.name)).toEqual(['npm:better-sqlite3', 'npm:winston', '(native)']);
  });

  it('puts a sample under the innermost step on its stack (logging inside the POST handler is logging)', () => {
    const file = writeProfile([
      [6, 2100],
      [3, 2200],
    ]);
    const p = handoutProfile(file, [{ fromUs: 2000, toUs: 3000 }]);
    expect(p.steps.map((s) => s.name)).toEqual([
      'logging (winston)',
      'POST /tasks handler, the rest (researcher-routes.js)',
    ]);
  });
});
