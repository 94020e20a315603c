import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NetworkSlotPool, holderProgram, singleFileTar, slotsSupported } from '../../client/network-slots.js';
import { silentLogger } from '../../shared/logger.js';
import { FakeEngine } from './fake-engine.js';

describe('network slot holder program', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it.runIf(slotsSupported())('runs and blocks in pause() until killed, doing nothing else', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pht-holder-'));
    dirs.push(dir);
    const file = path.join(dir, 'holder');
    fs.writeFileSync(file, holderProgram(), { mode: 0o755 });
    const child = spawn(file, [], { stdio: 'ignore' });
    const exited = once(child, 'exit');
    try {
      // /proc/<pid>/syscall names the system call a blocked task sleeps in: 34 is pause on x86-64.
      let syscall = '';
      for (let i = 0; i < 1000 && !syscall.startsWith('34 '); i++) {
        syscall = fs.readFileSync(`/proc/${child.pid}/syscall`, 'utf8');
        if (!syscall.startsWith('34 ')) await new Promise((r) => setImmediate(r));
      }
      expect(syscall.split(' ')[0]).toBe('34');
      expect(fs.readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(' ')[2]).toBe('S');
    } finally {
      child.kill('SIGKILL');
    }
    expect((await exited)[1]).toBe('SIGKILL');
  });

  it('is a 129-byte static x86-64 ELF executable with one loadable segment', () => {
    const elf = holderProgram();
    expect(elf.length).toBe(129);
    expect(elf.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    expect(elf.readUInt16LE(18)).toBe(0x3e);
    expect(elf.readUInt16LE(56)).toBe(1);
  });

  it('is packed as a tar archive that tar itself reads back byte for byte', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pht-holder-tar-'));
    dirs.push(dir);
    const archive = path.join(dir, 'holder.tar');
    fs.writeFileSync(archive, singleFileTar('holder', holderProgram(), 0o555));
    expect(execFileSync('tar', ['-tvf', archive]).toString()).toMatch(/^-r-xr-xr-x 0\/0 +129 .* holder\n$/);
    execFileSync('tar', ['-xf', archive, '-C', dir]);
    expect(fs.readFileSync(path.join(dir, 'holder')).equals(holderProgram())).toBe(true);
  });

  it('is not used with an engine other than Docker: runs then join the network one by one', async () => {
    const pool = await NetworkSlotPool.open({
      engine: new FakeEngine(),
      site: 's',
      network: { name: 'n', gatewayIp: '10.0.0.1' },
      size: 2,
      logger: silentLogger(),
    });
    expect(pool).toBeNull();
    expect(slotsSupported('arm64')).toBe(false);
  });
});
