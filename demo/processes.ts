/**
 * The demo's child processes: each one writes its stdout and stderr to a log file of its own,
 * runs in a process group of its own, and is stopped with SIGTERM, then SIGKILL after a deadline.
 *
 * Why a process group per child: a Ctrl-C in the terminal signals the whole foreground group at
 * once. If the children got it too, they would all stop together in no particular order and then
 * take the demo's own SIGTERM as a second signal, which makes `node client` exit without tidying
 * up. With their own groups, only the demo sees the Ctrl-C and stops them in order (clients, then
 * the registry, then the SPARQL servers). Killing a group (-pid) also reaches grandchildren, such
 * as the docker CLI under the image build script.
 *
 * Why log files rather than pipes: a child holding a pipe to us would die of EPIPE (or keep a CI
 * job waiting) if we stopped reading; files outlive us and are there to read afterwards.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { sleep } from '../shared/abortable.js';

export interface ProcessSpec {
  /** Short name for messages, e.g. "client site-a". */
  name: string;
  command: string;
  args: readonly string[];
  /** stdout and stderr both go here (appended). */
  logFile: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Thrown when a process ends (or fails to start) while something waits for it to be ready. */
export class ProcessExitedError extends Error {
  override readonly name = 'ProcessExitedError';
  constructor(
    readonly processName: string,
    readonly status: ExitStatus,
    readonly logFile: string,
    logTail: string,
  ) {
    super(
      `${processName} ${describeExit(status)}${logTail ? `; last lines of ${logFile}:\n${logTail}` : ` (log: ${logFile})`}`,
    );
  }
}

/** Thrown when a process is still running but never printed what readiness looks like. */
export class ProcessNotReadyError extends Error {
  override readonly name = 'ProcessNotReadyError';
  constructor(
    readonly processName: string,
    readonly timeoutMs: number,
    readonly logFile: string,
    logTail: string,
  ) {
    super(`${processName} was not ready after ${timeoutMs / 1000} s; last lines of ${logFile}:\n${logTail}`);
  }
}

export function describeExit(status: ExitStatus): string {
  return status.signal ? `was killed by ${status.signal}` : `exited with code ${status.code}`;
}

const LOG_POLL_MS = 50;

/** One child process started by {@link ProcessGroup.start}. */
export class ManagedProcess {
  readonly pid: number;
  /** Resolves when the process has ended (never rejects; a failed spawn counts as an exit). */
  readonly exited: Promise<ExitStatus>;
  private status: ExitStatus | null = null;
  private stopping: Promise<'terminated' | 'killed'> | null = null;

  constructor(
    readonly spec: ProcessSpec,
    child: ChildProcess,
  ) {
    this.pid = child.pid ?? -1;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.status = { code, signal };
        resolve(this.status);
      });
      child.once('error', () => {
        // spawn failed (e.g. ENOENT): 'exit' may never come.
        this.status ??= { code: 127, signal: null };
        resolve(this.status);
      });
    });
  }

  get name(): string {
    return this.spec.name;
  }

  get logFile(): string {
    return this.spec.logFile;
  }

  /** How the process ended, or null while it runs. */
  get exitStatus(): ExitStatus | null {
    return this.status;
  }

  get running(): boolean {
    return this.status === null;
  }

  /** True once stop() or kill() was asked for: an exit from then on is expected. */
  get stopRequested(): boolean {
    return this.stopping !== null;
  }

  /**
   * Reads the log file every 50 ms until `match` returns a value for one of its lines, and
   * resolves with that value. Rejects with ProcessExitedError if the process ends first,
   * ProcessNotReadyError after `timeoutMs`, or the signal's reason when it aborts.
   */
  async waitForLogLine<T>(
    match: (line: string) => T | undefined,
    options: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<T> {
    const deadline = Date.now() + options.timeoutMs;
    let offset = 0;
    let partial = '';
    for (;;) {
      options.signal?.throwIfAborted();
      const exitedBeforeRead = this.status;
      const chunk = readFrom(this.spec.logFile, offset);
      offset += chunk.length;
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        const found = match(line);
        if (found !== undefined) return found;
      }
      // Checked after a read that started after the exit: the log is complete by then.
      if (exitedBeforeRead) {
        const last = partial === '' ? undefined : match(partial);
        if (last !== undefined) return last;
        throw new ProcessExitedError(this.name, exitedBeforeRead, this.spec.logFile, this.logTail());
      }
      if (Date.now() >= deadline)
        throw new ProcessNotReadyError(this.name, options.timeoutMs, this.spec.logFile, this.logTail());
      await sleep(LOG_POLL_MS, options.signal);
    }
  }

  /** The last `lines` lines of the log file (empty when it cannot be read). */
  logTail(lines = 15): string {
    try {
      return fs.readFileSync(this.spec.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  /**
   * SIGTERM to the process group, then SIGKILL if it has not ended within `graceMs`. Resolves
   * with how it ended. Idempotent: a second call returns the first call's promise.
   */
  stop(graceMs: number): Promise<'terminated' | 'killed'> {
    this.stopping ??= (async () => {
      if (!this.running) return 'terminated';
      this.signalGroup('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([
        this.exited.then(() => 'terminated' as const),
        new Promise<'killed'>((resolve) => {
          timer = setTimeout(() => resolve('killed'), graceMs);
        }),
      ]);
      clearTimeout(timer);
      if (outcome === 'killed') {
        this.signalGroup('SIGKILL');
        await this.exited;
      }
      return outcome;
    })();
    return this.stopping;
  }

  /** SIGKILL to the process group, synchronously (for a forced exit). */
  kill(): void {
    this.stopping ??= this.exited.then(() => 'killed' as const);
    if (this.running) this.signalGroup('SIGKILL');
  }

  private signalGroup(signal: NodeJS.Signals): void {
    if (this.pid <= 0) return;
    try {
      // The child leads its own group (detached), so -pid reaches it and anything it started.
      process.kill(-this.pid, signal);
    } catch {
      // Gone already, or never started.
    }
  }
}

/**
 * The demo's child processes. Calls `onUnexpectedExit` when one ends without having been asked
 * to, so that whatever waits on the train (a task, a readiness check) can give up at once
 * instead of waiting for a timeout.
 */
export class ProcessGroup {
  private readonly processes: ManagedProcess[] = [];
  private readonly killOnExit = (): void => this.killAll();

  constructor(
    private readonly onUnexpectedExit: (process: ManagedProcess, status: ExitStatus) => void = () => undefined,
  ) {
    // If the demo itself dies (an uncaught error, process.exit), its children must not outlive it.
    process.on('exit', this.killOnExit);
  }

  /**
   * Starts a long-running process in its own process group with its output going to its log
   * file. `expectExit` marks a command that is meant to finish (a build script).
   */
  start(spec: ProcessSpec, options: { expectExit?: boolean } = {}): ManagedProcess {
    const log = fs.openSync(spec.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(spec.command, spec.args, {
        cwd: spec.cwd,
        env: spec.env ?? process.env,
        stdio: ['ignore', log, log],
        detached: true,
      });
    } finally {
      fs.closeSync(log);
    }
    const managed = new ManagedProcess(spec, child);
    this.processes.push(managed);
    void managed.exited.then((status) => {
      if (!options.expectExit && !managed.stopRequested) this.onUnexpectedExit(managed, status);
    });
    return managed;
  }

  /**
   * Runs a command to its end (output to its log file) and rejects with ProcessExitedError
   * unless it exits 0. An abort stops it (SIGTERM, then SIGKILL) and rejects with the reason.
   */
  async run(spec: ProcessSpec, signal?: AbortSignal, graceMs = 5_000): Promise<void> {
    signal?.throwIfAborted();
    const managed = this.start(spec, { expectExit: true });
    const onAbort = (): void => void managed.stop(graceMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const status = await managed.exited;
      signal?.throwIfAborted();
      if (status.code !== 0) throw new ProcessExitedError(spec.name, status, spec.logFile, managed.logTail());
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Every process started, in start order. */
  list(): readonly ManagedProcess[] {
    return this.processes;
  }

  /**
   * Stops the given processes (default: all) in parallel, each with its own deadline; resolves
   * with the names of those that had to be killed.
   */
  async stop(which: readonly ManagedProcess[] = this.processes, graceMs = 10_000): Promise<string[]> {
    const outcomes = await Promise.all(which.map(async (p) => ({ name: p.name, outcome: await p.stop(graceMs) })));
    return outcomes.filter((o) => o.outcome === 'killed').map((o) => o.name);
  }

  /** SIGKILL to every process still running, synchronously. */
  killAll(): void {
    for (const p of this.processes) p.kill();
  }

  /** Stops watching for the demo's own exit; call once every process has ended. */
  dispose(): void {
    process.removeListener('exit', this.killOnExit);
  }
}

/**
 * PIDs of the live processes on this machine whose command line contains `text` (read from
 * /proc; an empty list where there is no /proc).
 */
export function processesWithCommandLine(text: string): number[] {
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return [];
  }
  const found: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      // Arguments are NUL-separated.
      if (fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').includes(text))
        found.push(Number(entry));
    } catch {
      // Ended while we looked, or not ours to read.
    }
  }
  return found;
}

function readFrom(file: string, offset: number): Buffer {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return Buffer.alloc(0);
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size <= offset) return Buffer.alloc(0);
    const buffer = Buffer.alloc(size - offset);
    const read = fs.readSync(fd, buffer, 0, buffer.length, offset);
    return buffer.subarray(0, read);
  } finally {
    fs.closeSync(fd);
  }
}
