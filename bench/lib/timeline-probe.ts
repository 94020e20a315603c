/**
 * Preloaded into a registry under measurement (`node --require …/timeline-probe.js`) when
 * PHT_TIMELINE_DIR is set: appends to `<dir>/probe-<pid>.jsonl` one line per garbage collection
 * (wall time, kind, pause) and, every 250 ms, the process's memory figures and the event loop's
 * worst delay over the interval. bench:scale lays these over the hand-outs' timeline to tell what
 * else happened when a hand-out was slow, and what holds the resident set (issue 13, target 5),
 * without any hook in the registry's own code.
 */
import fs from 'node:fs';
import { monitorEventLoopDelay, performance, PerformanceObserver } from 'node:perf_hooks';

/** A garbage collection: `t` is its start (wall ms), `ms` its pause. */
export interface GcLine {
  t: number;
  gc: string;
  ms: number;
}

/** A sample: memory figures (bytes) and the event loop's delay over the interval before `t`. */
export interface SampleLine {
  t: number;
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  loopMaxMs: number;
}

export type ProbeLine = GcLine | SampleLine;

/** V8's GC kinds (perf_hooks constants NODE_PERFORMANCE_GC_*). */
const GC_KINDS: Record<number, string> = { 1: 'major', 2: 'minor', 4: 'incremental', 8: 'weakcb' };

/** Reads a probe file (lines written by a process that may have been killed mid-line). */
export function readProbe(file: string): ProbeLine[] {
  const out: ProbeLine[] = [];
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line) continue;
    try {
      out.push(JSON.parse(line) as ProbeLine);
    } catch {
      // the last line of a killed process
    }
  }
  return out;
}

const dir = process.env.PHT_TIMELINE_DIR;
if (dir) {
  const fd = fs.openSync(`${dir}/probe-${process.pid}.jsonl`, 'a');
  let buffered: string[] = [];
  const flush = () => {
    if (buffered.length === 0) return;
    fs.writeSync(fd, buffered.join(''));
    buffered = [];
  };
  const wall = (perfMs: number) => performance.timeOrigin + perfMs;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0;
      buffered.push(
        `${JSON.stringify({ t: wall(e.startTime), gc: GC_KINDS[kind] ?? String(kind), ms: e.duration })}\n`,
      );
    }
  }).observe({ entryTypes: ['gc'] });
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  setInterval(() => {
    const m = process.memoryUsage();
    const line: SampleLine = {
      t: wall(performance.now()),
      rss: m.rss,
      heapUsed: m.heapUsed,
      heapTotal: m.heapTotal,
      external: m.external,
      arrayBuffers: m.arrayBuffers,
      loopMaxMs: delay.max / 1e6,
    };
    delay.reset();
    buffered.push(`${JSON.stringify(line)}\n`);
    flush();
  }, 250).unref();
  process.on('exit', flush);
}
