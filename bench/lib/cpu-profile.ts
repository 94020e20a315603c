import fs from 'node:fs';
import path from 'node:path';

/** A node of a V8 .cpuprofile (node --cpu-prof). */
export interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface HotSpot {
  name: string;
  selfMs: number;
  share: number;
}

/**
 * A stretch of time on the machine's monotonic clock in microseconds: V8 stamps profile samples
 * with it, and `process.hrtime.bigint() / 1000n` reads it in any process on the same machine.
 */
export interface MonotonicWindow {
  fromUs: number;
  toUs: number;
}

/** Now, on the clock profile samples are stamped with (see MonotonicWindow). */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/**
 * Self time per function and per package/file of a V8 .cpuprofile (what `node --cpu-prof`
 * writes): where the process spent its CPU, without a profiler UI. With `window`, only the
 * samples taken within it count (e.g. a broadcast, without the process's start and set-up).
 */
export function hotSpots(
  file: string,
  top = 15,
  window?: MonotonicWindow,
): { functions: HotSpot[]; files: HotSpot[]; totalMs: number } {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let at = profile.startTime;
  profile.samples.forEach((id, i) => {
    at += profile.timeDeltas[i] ?? 0;
    if (window && (at < window.fromUs || at > window.toUs)) return;
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  });
  const functions = new Map<string, number>();
  const files = new Map<string, number>();
  let total = 0;
  for (const [id, t] of self) {
    const frame = byId.get(id)!.callFrame;
    const where = shortUrl(frame.url);
    const fn = `${frame.functionName || '(anonymous)'} ${where ? `${where}:${frame.lineNumber + 1}` : ''}`.trim();
    functions.set(fn, (functions.get(fn) ?? 0) + t);
    const group = groupOf(frame.url, frame.functionName);
    files.set(group, (files.get(group) ?? 0) + t);
    total += t;
  }
  const rank = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, selfMs]) => ({ name, selfMs, share: selfMs / total }));
  return { functions: rank(functions), files: rank(files), totalMs: total };
}

/** The newest .cpuprofile in a folder. */
export function newestProfile(dir: string): string {
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) throw new Error(`no .cpuprofile in ${dir}`);
  return path.join(dir, files.sort().at(-1)!);
}

/** A script URL as reports show it: the package path, or the path from dist/. */
export function shortUrl(url: string): string {
  if (!url) return '';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) return url.slice(nm + 'node_modules/'.length);
  const dist = url.indexOf('/dist/');
  if (dist >= 0) return url.slice(dist + 1);
  return url.replace(/^file:\/\//, '');
}

/** The group a frame's time is filed under: an npm package, a node: module, a project file or V8. */
export function groupOf(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native)';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return `npm:${rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  const dist = url.indexOf('/dist/');
  if (dist >= 0) return url.slice(dist + 1);
  return url;
}
