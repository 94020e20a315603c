import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

let clockTicks: number | null = null;

function ticksPerSecond(): number {
  if (clockTicks === null) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

export interface ProcSnapshot {
  /** User + system CPU time so far, in milliseconds. */
  cpuMs: number;
  rssBytes: number;
  /** The kernel's high-water mark of the resident set (VmHWM). */
  peakRssBytes: number;
}

/** CPU time and memory of a process, from /proc (Linux). */
export function readProc(pid: number): ProcSnapshot {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may contain spaces: fields are counted after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { cpuMs: ((utime + stime) * 1000) / ticksPerSecond(), rssBytes: kb('VmRSS'), peakRssBytes: kb('VmHWM') };
}

export interface UsageWindow {
  wallMs: number;
  cpuMs: number;
  /** CPU time over wall time: 1.0 is one core fully busy. */
  cores: number;
  peakRssBytes: number;
  startRssBytes: number;
  endRssBytes: number;
}

/**
 * Samples a process's RSS every `intervalMs` between start() and stop(), and its CPU time at both
 * ends: the peak RSS of a phase, not of the process's whole life.
 */
export class ProcSampler {
  private timer: NodeJS.Timeout | null = null;
  private startCpu = 0;
  private startWall = 0;
  private startRss = 0;
  private peak = 0;

  constructor(
    readonly pid: number,
    private readonly intervalMs = 100,
  ) {}

  start(): this {
    const s = readProc(this.pid);
    this.startCpu = s.cpuMs;
    this.startWall = performance.now();
    this.startRss = s.rssBytes;
    this.peak = s.rssBytes;
    this.timer = setInterval(() => {
      try {
        this.peak = Math.max(this.peak, readProc(this.pid).rssBytes);
      } catch {
        /* the process ended; stop() reports what was seen */
      }
    }, this.intervalMs);
    return this;
  }

  stop(): UsageWindow {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const s = readProc(this.pid);
    this.peak = Math.max(this.peak, s.rssBytes);
    const wall = performance.now() - this.startWall;
    const cpu = s.cpuMs - this.startCpu;
    return {
      wallMs: wall,
      cpuMs: cpu,
      cores: cpu / wall,
      peakRssBytes: this.peak,
      startRssBytes: this.startRss,
      endRssBytes: s.rssBytes,
    };
  }
}

/** The parent of a process, from /proc (null when it is gone). */
function parentOf(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

/** A process and all its descendants (a PostgreSQL server and its backends, nginx and its workers). */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const parent = parentOf(Number(entry));
    if (parent !== null) children.set(parent, [...(children.get(parent) ?? []), Number(entry)]);
  }
  const tree: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const pid = queue.pop()!;
    tree.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return tree;
}

/** The parent of `pid` (a PostgreSQL backend's is its server), or null. */
export function parentPid(pid: number): number | null {
  return parentOf(pid);
}

/**
 * CPU of a whole process tree over a window, in cores: what the processes present at the end used
 * since the start (all of it for one that started meanwhile). A process that ended within the
 * window is missed; the benchmark's PostgreSQL backends and nginx workers live as long as it.
 */
export class TreeSampler {
  private startCpu = new Map<number, number>();
  private startWall = 0;

  constructor(readonly rootPid: number) {}

  start(): this {
    this.startWall = performance.now();
    this.startCpu = new Map(this.snapshot());
    return this;
  }

  stop(): number {
    const wall = performance.now() - this.startWall;
    let cpu = 0;
    for (const [pid, ms] of this.snapshot()) cpu += ms - (this.startCpu.get(pid) ?? 0);
    return cpu / wall;
  }

  private snapshot(): [number, number][] {
    const out: [number, number][] = [];
    for (const pid of processTree(this.rootPid)) {
      try {
        out.push([pid, readProc(pid).cpuMs]);
      } catch {
        /* ended between the listing and the read */
      }
    }
    return out;
  }
}
