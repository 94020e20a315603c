/**
 * What else happened while bench:scale's hand-outs were measured: each hand-out with its time, laid
 * over the long polls that ended with nothing (204, the site polls again at once), the registry
 * processes' garbage collections, event-loop delay and memory (timeline-probe.ts), and PostgreSQL's
 * checkpoints and autovacuum runs (its log). Issue 10: the steady single-site p99 at 10,000 sites
 * was 29–34 ms in some runs and 266–332 ms in others.
 */
import fs from 'node:fs';
import path from 'node:path';
import { readProbe, type GcLine, type ProbeLine, type SampleLine } from './timeline-probe.js';
import { mib, ms, summarize } from './stats.js';

export interface HandoutPoint {
  /** When the researcher's POST was sent (wall ms). */
  postedAt: number;
  latencyMs: number;
}

/** A PostgreSQL log event with its wall time. */
export interface DatabaseEvent {
  t: number;
  what: string;
}

export interface TimelineInputs {
  handouts: HandoutPoint[];
  /** Wall ms of each 204 the sites received. */
  timeouts: number[];
  /** The load generators' worst event-loop delay (ms) over the 250 ms before each wall time. */
  generatorLoops: [number, number][];
  /** Probe lines per registry process. */
  probes: ProbeLine[][];
  database: DatabaseEvent[];
  /** The machine's CPU pressure: cumulative stall time ("some", µs) at wall ms `t`. */
  pressure: { t: number; stallUs: number }[];
}

export interface TimelineSummary {
  /** Figures for the report, by name. */
  figures: Record<string, string>;
  /** One row per second of the window (printed, for reading the run). */
  rows: string[];
}

const isGc = (l: ProbeLine): l is GcLine => 'gc' in l;
const isSample = (l: ProbeLine): l is SampleLine => 'rss' in l;

/** Seconds with at least this many 204s count as "in a timeout wave". */
const WAVE_PER_SECOND = 100;

/**
 * Per second of the window [first POST, last hand-out]: hand-outs, their worst latency, 204s
 * answered, the registries' GC pause time and worst event-loop delay, database events. Then the
 * p99 of hand-outs posted in a wave second against the others.
 */
export function summarizeTimeline(input: TimelineInputs): TimelineSummary {
  const { handouts } = input;
  if (handouts.length === 0) return { figures: {}, rows: [] };
  const start = Math.min(...handouts.map((h) => h.postedAt));
  const end = Math.max(...handouts.map((h) => h.postedAt + h.latencyMs));
  const seconds = Math.max(1, Math.ceil((end - start) / 1000));
  const bucket = (t: number) => Math.floor((t - start) / 1000);
  const inWindow = (t: number) => t >= start && t <= end;
  const perSecond = Array.from({ length: seconds }, () => ({
    latencies: [] as number[],
    timeouts: 0,
    gcMs: 0,
    gcMaxMs: 0,
    loopMaxMs: 0,
    sitesLoopMaxMs: 0,
    stallUs: 0,
    db: [] as string[],
  }));
  const at = (t: number) => perSecond[Math.min(seconds - 1, bucket(t))]!;
  for (const h of handouts) at(h.postedAt).latencies.push(h.latencyMs);
  let timeoutsInWindow = 0;
  for (const t of input.timeouts)
    if (inWindow(t)) {
      timeoutsInWindow++;
      at(t).timeouts++;
    }
  const gcs: number[] = [];
  for (const lines of input.probes)
    for (const l of lines) {
      if (!inWindow(l.t)) continue;
      if (isGc(l)) {
        gcs.push(l.ms);
        const s = at(l.t);
        s.gcMs += l.ms;
        s.gcMaxMs = Math.max(s.gcMaxMs, l.ms);
      } else if (isSample(l)) {
        const s = at(l.t);
        s.loopMaxMs = Math.max(s.loopMaxMs, l.loopMaxMs);
      }
    }
  for (const e of input.database) if (inWindow(e.t)) at(e.t).db.push(e.what);
  for (const [t, delay] of input.generatorLoops)
    if (inWindow(t)) at(t).sitesLoopMaxMs = Math.max(at(t).sitesLoopMaxMs, delay);
  for (let i = 1; i < input.pressure.length; i++) {
    const p = input.pressure[i]!;
    if (inWindow(p.t)) at(p.t).stallUs += p.stallUs - input.pressure[i - 1]!.stallUs;
  }

  const inWave: number[] = [];
  const outside: number[] = [];
  for (const s of perSecond) (s.timeouts >= WAVE_PER_SECOND ? inWave : outside).push(...s.latencies);
  const wave = summarize(inWave);
  const rest = summarize(outside);
  const gc = summarize(gcs);
  const loopMax = Math.max(0, ...perSecond.map((s) => s.loopMaxMs));
  const sitesLoopMax = Math.max(0, ...perSecond.map((s) => s.sitesLoopMaxMs));
  const dbEvents = input.database.filter((e) => inWindow(e.t));
  const figures: Record<string, string> = {
    'long-poll timeouts (204) answered in the window': `${timeoutsInWindow} (seconds with ≥ ${WAVE_PER_SECOND}: ${perSecond.filter((s) => s.timeouts >= WAVE_PER_SECOND).length} of ${seconds}; busiest second ${Math.max(...perSecond.map((s) => s.timeouts))})`,
    [`hand-out p50 / p99 of tasks posted in seconds with ≥ ${WAVE_PER_SECOND} timeouts, against the other seconds (ms)`]: `${inWave.length ? `${ms(wave.median)} / ${ms(wave.p99)} (${inWave.length})` : '– (0)'} against ${outside.length ? `${ms(rest.median)} / ${ms(rest.p99)} (${outside.length})` : '– (0)'}`,
    'registry GC pauses in the window (count, total / max ms), worst event-loop delay (ms)': `${gc.n}, ${ms(gcs.reduce((a, b) => a + b, 0))} / ${ms(gc.max)}; ${ms(loopMax)}`,
    "the load generators' worst event-loop delay in the window (ms; a hand-out is timed when a generator reads it)":
      ms(sitesLoopMax),
  };
  if (input.database.length > 0 || dbEvents.length > 0)
    figures['PostgreSQL checkpoints and autovacuum runs in the window'] =
      dbEvents.length === 0 ? 'none' : summarizeDatabase(dbEvents.map((e) => e.what));
  const rows = perSecond.map((s, i) => {
    const l = summarize(s.latencies);
    return `  +${String(i).padStart(3)} s  hand-outs ${String(s.latencies.length).padStart(4)}  max ${ms(l.max).padStart(6)} ms  p50 ${ms(l.median).padStart(6)}  204s ${String(s.timeouts).padStart(5)}  gc ${ms(s.gcMs).padStart(6)} ms (max ${ms(s.gcMaxMs)})  loop max ${ms(s.loopMaxMs).padStart(6)} ms  sites' loop max ${ms(s.sitesLoopMaxMs).padStart(6)} ms  cpu pressure ${String(Math.round(s.stallUs / 1e4)).padStart(3)} %${s.db.length ? `  db: ${summarizeDatabase(s.db)}` : ''}`;
  });
  return { figures, rows };
}

function summarizeDatabase(events: string[]): string {
  const counts = new Map<string, number>();
  for (const e of events) counts.set(e, (counts.get(e) ?? 0) + 1);
  return [...counts].map(([k, v]) => `${v}× ${k}`).join(', ');
}

/**
 * Samples the machine's CPU pressure (the time some task waited for a CPU, /proc/pressure/cpu)
 * every 250 ms until stopped: other work on the machine shows there, not in the registry's figures.
 */
export function samplePressure(): { samples: { t: number; stallUs: number }[]; stop(): void } {
  const samples: { t: number; stallUs: number }[] = [];
  const read = () => {
    try {
      const m = /^some .*total=(\d+)/m.exec(fs.readFileSync('/proc/pressure/cpu', 'utf8'));
      if (m) samples.push({ t: performance.timeOrigin + performance.now(), stallUs: Number(m[1]) });
    } catch {
      // no PSI on this kernel
    }
  };
  read();
  const timer = setInterval(read, 250).unref();
  return { samples, stop: () => clearInterval(timer) };
}

/**
 * What the registries did during each broadcast (POST → every run final): their GC pauses and
 * their JS heap at the end, next to the broadcast's hand-out p99: the first 10,000-site broadcast
 * of a run was much slower than the next (issue 13, target 5).
 */
export function perBroadcast(
  broadcasts: { postedAt: number; finalAt: number; latencies: number[] }[],
  probes: ProbeLine[][],
): string {
  return broadcasts
    .map((b, i) => {
      const gcs: number[] = [];
      let last: SampleLine | null = null;
      let loopMax = 0;
      for (const lines of probes)
        for (const l of lines) {
          if (l.t < b.postedAt || l.t > b.finalAt) continue;
          if (isGc(l)) gcs.push(l.ms);
          else if (isSample(l)) {
            loopMax = Math.max(loopMax, l.loopMaxMs);
            if (!last || l.t > last.t) last = l;
          }
        }
      const g = summarize(gcs);
      const h = summarize(b.latencies);
      return `#${i + 1}: hand-out p50 / p99 ${ms(h.median)} / ${ms(h.p99)} ms, GC ${g.n} pauses ${ms(gcs.reduce((a, c) => a + c, 0))} ms (max ${ms(g.max)}), worst loop delay ${ms(loopMax)} ms${last ? `, JS heap at the end ${mib(last.heapTotal)} reserved / ${mib(last.heapUsed)} used, RSS ${mib(last.rss)}` : ''}`;
    })
    .join('; ');
}

/** The registries' probe files in `dir`, one array per process. */
export function readProbes(dir: string): ProbeLine[][] {
  return fs
    .readdirSync(dir)
    .filter((f) => f.startsWith('probe-') && f.endsWith('.jsonl'))
    .map((f) => readProbe(path.join(dir, f)));
}

/**
 * Memory of the registry process at its highest sampled RSS within [from, to]: what holds it
 * (JS heap reserved and used, external memory with ArrayBuffers, and the rest: code, stacks,
 * malloc'd memory outside V8's accounting, sockets' buffers).
 */
export function memoryAtPeak(probes: ProbeLine[][], from: number, to: number): string | null {
  let best: SampleLine | null = null;
  for (const lines of probes)
    for (const l of lines) if (isSample(l) && l.t >= from && l.t <= to && (!best || l.rss > best.rss)) best = l;
  if (!best) return null;
  const rest = best.rss - best.heapTotal - best.external;
  return `RSS ${mib(best.rss)} = JS heap ${mib(best.heapTotal)} reserved (${mib(best.heapUsed)} in use) + external ${mib(best.external)} (ArrayBuffers ${mib(best.arrayBuffers)}) + the rest ${mib(rest)}`;
}

/**
 * Checkpoint and autovacuum lines of a PostgreSQL log (log_checkpoints, log_autovacuum_min_duration
 * = 0), with their times; the default log_line_prefix starts with "%m" (e.g. "2026-11-30
 * 16:50:01.123 UTC").
 */
export function readDatabaseLog(file: string): DatabaseEvent[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out: DatabaseEvent[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (UTC|GMT)\b.*?LOG:\s+(.*)$/.exec(line);
    if (!m) continue;
    const what = /^checkpoint (starting|complete)/.exec(m[3]!)
      ? `checkpoint ${/^checkpoint (\w+)/.exec(m[3]!)![1]}`
      : /^automatic (vacuum|analyze) of table "([^"]+)"/.exec(m[3]!)
        ? `auto${/^automatic (\w+)/.exec(m[3]!)![1]} ${/"([^"]+)"/.exec(m[3]!)![1]!.split('.').pop()}`
        : null;
    if (what) out.push({ t: Date.parse(`${m[1]!.replace(' ', 'T')}Z`), what });
  }
  return out;
}
