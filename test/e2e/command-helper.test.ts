import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CommandRunner } from '../../client/command-runner.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

// The compiled helper: what `node client` uses (end-to-end tests run on dist/).
const helper = path.resolve('dist/client/command-helper.js');

describe("the site client's command helper (mkfs, mount, umount off the client's event loop)", () => {
  const runners: CommandRunner[] = [];
  afterEach(() => {
    for (const r of runners.splice(0)) r.close();
  });
  const runner = () => {
    const r = new CommandRunner(helper);
    runners.push(r);
    return r;
  };

  it('runs a command in the helper process and answers with its output', async () => {
    const r = runner();
    const out = await r.run('mount', ['--version']);
    expect(out.stdout).toMatch(/mount from util-linux/);
    const child = (r as unknown as { child: { pid: number } | null }).child;
    expect(child?.pid).toBeGreaterThan(0);
    expect(child?.pid).not.toBe(process.pid);
  });

  it('fails a command that fails with its stderr and exit code, as execFile does', async () => {
    const dir = makeTempDir('pht-helper-');
    try {
      const failure = await runner()
        .run('umount', [dir])
        .then(
          () => null,
          (e: Error & { stderr?: string; code?: number }) => e,
        );
      expect(failure).toBeInstanceOf(Error);
      expect(failure!.stderr).toMatch(/not mounted/);
      expect(failure!.code).toBe(32);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses to run any program but mkfs.ext4, mount and umount', async () => {
    const marker = path.join(os.tmpdir(), `pht-helper-marker-${process.pid}`);
    await expect(runner().run('/bin/sh', ['-c', `touch ${marker}`])).rejects.toThrow(/not a helper command/);
    expect(fs.existsSync(marker)).toBe(false);
  });

  it('fails the commands of a helper that died and starts a new one for the next', async () => {
    const r = runner();
    await r.run('mount', ['--version']);
    const first = (r as unknown as { child: { pid: number; kill(s: string): void } }).child;
    const exited = new Promise((resolve) => (first as unknown as NodeJS.EventEmitter).once('exit', resolve));
    first.kill('SIGKILL');
    await exited;
    const out = await r.run('mount', ['--version']);
    expect(out.stdout).toMatch(/util-linux/);
    expect((r as unknown as { child: { pid: number } }).child.pid).not.toBe(first.pid);
  });

  it('does not keep the client process alive once its commands are answered', async () => {
    // A process whose only work is one command through the helper ends by itself.
    const script = `const { commands } = require(${JSON.stringify(path.resolve('dist/client/command-runner.js'))});
      commands.run('mount', ['--version']).then((o) => console.log(o.stdout.length > 0 ? 'answered' : 'empty'));`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
    expect(stdout.trim()).toBe('answered');
  });
});
