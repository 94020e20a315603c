import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { processTree } from './proc-stats.js';

/** Samples per second per CPU: 2 ms apart, fine enough for a few thousand samples in a run. */
const FREQUENCY = 499;

/**
 * Where the whole machine's CPU goes over a window, by process, from `perf record -a` (software
 * clock samples on every CPU). /proc sees only processes alive at both ends; perf also sees the
 * short ones a run makes (runc, the shim, mkfs.ext4, mount, umount, dockerd's re-executions),
 * which is where CPU hides that no long-lived process accounts for.
 */
export class MachineProfile {
  private perf: ChildProcess | null = null;
  private readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pht-bench-perf-'));
  private readonly file = path.join(this.dir, 'perf.data');

  private control: fs.promises.FileHandle | null = null;
  private ack: fs.promises.FileHandle | null = null;

  /** Starts perf and resolves once it samples (perf acknowledges "enable" on its control FIFO). */
  async start(): Promise<void> {
    const ctl = path.join(this.dir, 'ctl');
    const ack = path.join(this.dir, 'ack');
    execFileSync('mkfifo', ['-m', '600', ctl, ack]);
    const perf = spawn(
      'perf',
      [
        'record',
        '-a',
        '-e',
        'cpu-clock',
        '-F',
        String(FREQUENCY),
        '-o',
        this.file,
        '-q',
        '-D',
        '-1',
        '--control',
        `fifo:${ctl},${ack}`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], cwd: this.dir },
    );
    this.perf = perf;
    let err = '';
    perf.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const failed = once(perf, 'exit').then(() => {
      throw new Error(`perf record failed: ${err.trim()}`);
    });
    // Opening a FIFO waits for its other end: perf opens both when it is ready.
    [this.control, this.ack] = await Promise.race([
      Promise.all([fs.promises.open(ctl, 'w'), fs.promises.open(ack, 'r')]),
      failed,
    ]);
    failed.catch(() => undefined); // perf exits when stopped: not a failure then
    await this.command('enable');
  }

  private async command(what: 'enable' | 'disable'): Promise<void> {
    await this.control!.write(`${what}\n`);
    const buffer = Buffer.alloc(16);
    const { bytesRead } = await this.ack!.read(buffer, 0, buffer.length);
    if (!buffer.subarray(0, bytesRead).toString().startsWith('ack'))
      throw new Error(`perf did not acknowledge "${what}"`);
  }

  /**
   * Stops sampling; returns CPU ms by process name. `named` gives names to known process ids (the
   * benchmark's own process, the registry); the descendants of `named` processes are filed under
   * their own command name (the client's command helper is "node (helper)").
   */
  async stop(named: Map<number, string>): Promise<Map<string, number>> {
    const perf = this.perf!;
    const helpers = new Set<number>();
    for (const pid of named.keys()) for (const child of processTree(pid)) if (!named.has(child)) helpers.add(child);
    await this.command('disable');
    const exited = once(perf, 'exit');
    perf.kill('SIGINT');
    await exited;
    await this.control?.close();
    await this.ack?.close();
    const script = await new Promise<string>((resolve, reject) =>
      execFile(
        'perf',
        ['script', '-i', this.file, '-F', 'pid,comm'],
        { maxBuffer: 256 * 1024 * 1024 },
        (error, stdout) => (error ? reject(error) : resolve(stdout)),
      ),
    );
    fs.rmSync(this.dir, { recursive: true, force: true });
    const ms = new Map<string, number>();
    for (const line of script.split('\n')) {
      // "<comm> <pid>": the command name may contain spaces, the pid is the last field.
      const m = /^\s*(.*\S)\s+(\d+)\s*$/.exec(line);
      if (!m) continue;
      const pid = Number(m[2]);
      const name =
        m[1] === 'perf'
          ? '(perf itself)'
          : (named.get(pid) ?? (helpers.has(pid) ? `${m[1]} (helper)` : commandGroup(m[1]!)));
      ms.set(name, (ms.get(name) ?? 0) + 1000 / FREQUENCY);
    }
    return ms;
  }
}

/** A command name as the report groups it: runc's stages are one, the idle task is left out by the caller. */
function commandGroup(comm: string): string {
  // The benchmark's own node processes have names (see stop): any other is someone else's.
  if (comm === 'node') return 'node (other processes)';
  if (comm.startsWith('runc')) return 'runc';
  if (comm.startsWith('kworker')) return 'kworker';
  if (comm.startsWith('ksoftirqd')) return 'ksoftirqd';
  if (comm === 'swapper') return '(idle)';
  return comm;
}
