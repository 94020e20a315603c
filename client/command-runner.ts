import { execFile, spawn, type ChildProcessByStdio } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Socket } from 'node:net';
import readline from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { parseHelperAnswer, type HelperRequest } from './command-protocol.js';

/** What a command printed; a failure rejects with an Error carrying `stderr` and `code`, as execFile's does. */
export interface CommandOutput {
  stdout: string;
  stderr: string;
}

type CommandError = Error & { stderr?: string; code?: number | string | null };

/** A child's stdio stream is a pipe socket, which can stop (or start again) holding the process open. */
function pipe(stream: Readable | Writable): { ref(): void; unref(): void } {
  const socket = stream as Partial<Socket>;
  return { ref: () => socket.ref?.(), unref: () => socket.unref?.() };
}

/**
 * Runs the run disks' system commands (mkfs.ext4, mount, umount; three per run) in a small
 * helper process instead of the client's own. Node forks synchronously on its event loop, and
 * the fork of a process copies its page tables: with the client's ~100–200 MB resident, each
 * spawn stopped every run's registry and Docker calls for 5–10 ms (measured: 1.8 ms blocked at
 * 47 MB resident, 10 ms at 205 MB). The helper is small, so its forks are cheap, and they block
 * only the helper.
 *
 * Without the compiled helper (tests from the TypeScript sources), or when it cannot be started,
 * commands run directly as before. A helper that dies fails the commands it had (their callers
 * handle a failed mount already); the next command starts a new one.
 */
export class CommandRunner {
  private child: ChildProcessByStdio<Writable, Readable, null> | null = null;
  private readonly pending = new Map<number, { resolve: (o: CommandOutput) => void; reject: (e: Error) => void }>();
  private sequence = 0;

  constructor(private readonly helperScript: string | null) {}

  run(file: string, args: string[]): Promise<CommandOutput> {
    const child = this.helper();
    if (!child) return runDirectly(file, args);
    const id = ++this.sequence;
    return new Promise<CommandOutput>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // While a command is out, the answer must keep the process alive; idle, the helper must not.
      pipe(child.stdout).ref();
      const request: HelperRequest = { id, file, args };
      child.stdin.write(`${JSON.stringify(request)}\n`);
    });
  }

  /** Ends the helper (it also ends by itself when this process does). */
  close(): void {
    this.child?.stdin.end();
    this.child = null;
  }

  private helper(): ChildProcessByStdio<Writable, Readable, null> | null {
    if (this.child) return this.child;
    if (!this.helperScript || !fs.existsSync(this.helperScript)) return null;
    let child: ChildProcessByStdio<Writable, Readable, null>;
    try {
      child = spawn(process.execPath, [this.helperScript], { stdio: ['pipe', 'pipe', 'ignore'] });
    } catch {
      return null;
    }
    this.child = child;
    child.unref();
    pipe(child.stdin).unref();
    pipe(child.stdout).unref();
    const lines = readline.createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const answer = parseHelperAnswer(line);
      const waiting = answer ? this.pending.get(answer.id) : undefined;
      if (!answer || !waiting) return;
      this.pending.delete(answer.id);
      if (this.pending.size === 0) pipe(child.stdout).unref();
      if (answer.ok) return waiting.resolve({ stdout: answer.stdout, stderr: answer.stderr });
      const error: CommandError = new Error(answer.message ?? 'command failed');
      error.stderr = answer.stderr;
      error.code = answer.code;
      waiting.reject(error);
    });
    const lost = (why: string) => {
      if (this.child === child) this.child = null;
      for (const [id, waiting] of this.pending) {
        this.pending.delete(id);
        waiting.reject(new Error(`the client's command helper ${why}`));
      }
    };
    child.on('exit', (code, signal) => lost(`exited (${signal ?? code})`));
    child.on('error', (e) => lost(`failed: ${e.message}`));
    child.stdin.on('error', () => undefined); // the helper's end is reported by 'exit'
    return child;
  }
}

function runDirectly(file: string, args: string[]): Promise<CommandOutput> {
  return new Promise((resolve, reject) => {
    execFile(file, args, (error, stdout, stderr) => {
      if (!error) return resolve({ stdout, stderr });
      const e: CommandError = error;
      e.stderr = stderr;
      reject(e);
    });
  });
}

/** The client's runner: the compiled helper next to this file. */
export const commands = new CommandRunner(path.join(__dirname, 'command-helper.js'));
