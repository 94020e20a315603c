import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import type { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { NetworkSlotPool, holderProgram, singleFileTar, slotsSupported } from '../../client/network-slots.js';
import { silentLogger } from '../../shared/logger.js';
import { captureLog, FakeDocker } from './fake-docker-events.js';
import { FakeEngine } from './fake-engine.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

describe('network slot holder program', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it.runIf(slotsSupported())('runs and blocks in pause() until killed, doing nothing else', async () => {
    const dir = makeTempDir('pht-holder-');
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
    const dir = makeTempDir('pht-holder-tar-');
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

describe('network slots when the Docker event stream is lost', () => {
  const site = 'evsite';
  const network = { name: 'pht-gw-evsite', gatewayIp: '10.0.0.1' };
  const lost = /^lost the Docker event stream/;
  const back = /^Docker event stream reconnected/;
  const pools: NetworkSlotPool[] = [];
  afterEach(async () => {
    for (const p of pools.splice(0)) await p.close();
  });

  async function openPool(fake: FakeDocker, log: ReturnType<typeof captureLog>) {
    const pool = await NetworkSlotPool.openWith(fake.docker, {
      site,
      network,
      size: 2,
      logger: log.logger,
      reconnect: { baseMs: 2, capMs: 4 },
    });
    pools.push(pool);
    return pool;
  }

  const losses: [string, (stream: PassThrough) => void, RegExp | undefined][] = [
    ['ends', (s) => s.end(), undefined],
    ['fails', (s) => s.destroy(new Error('read ECONNRESET')), /ECONNRESET/],
  ];
  for (const [how, lose, error] of losses) {
    it(`reconnects when the stream ${how}, and a holder that dies afterwards still stops its run`, async () => {
      const fake = new FakeDocker();
      const log = captureLog();
      const pool = await openPool(fake, log);
      const holder = (await pool.acquire(7)).slice('container:'.length);
      const run = fake.addRun(site, 7);
      lose(fake.streams[0]!);
      expect(await fake.nthSubscription(2)).toBe(true);
      await log.waitFor(back);
      expect(fake.containers.get(run)!.running).toBe(true);
      fake.die(holder, true);
      await fake.killed(run);
      expect(log.count(lost)).toBe(1);
      expect(log.count(back)).toBe(1);
      if (error) expect(log.lines.find((l) => lost.test(l.message))!.error).toMatch(error);
    });
  }

  it('a holder that dies while the stream is away stops its run on reconnect, logged once per loss and reconnect', async () => {
    const fake = new FakeDocker();
    const log = captureLog();
    const pool = await openPool(fake, log);
    const holder = (await pool.acquire(7)).slice('container:'.length);
    const run = fake.addRun(site, 7);
    const otherRun = fake.addRun(site, 8);
    await pool.acquire(8);
    fake.eventsDown = true;
    fake.streams[0]!.end();
    // Two failed attempts: the gap is real, and the holder dies in it (no event can tell).
    expect(await fake.nthSubscription(3)).toBe(false);
    fake.die(holder, false);
    fake.eventsDown = false;
    await fake.killed(run);
    await log.waitFor(back);
    expect(fake.containers.get(otherRun)!.running).toBe(true);
    expect(log.count(lost)).toBe(1);
    expect(log.count(back)).toBe(1);
    expect(log.count(/^network slot holder died during a run/)).toBe(1);
    // As after a death reported by an event: the slot gets a new holder when next taken.
    pool.release(7);
    const next = (await pool.acquire(9)).slice('container:'.length);
    expect(next).not.toBe(holder);
    expect(fake.containers.get(next)!.running).toBe(true);
    expect(fake.containers.has(holder)).toBe(false);
  });

  it('a death seen both as an event and on re-check stops the run once', async () => {
    const fake = new FakeDocker();
    const log = captureLog();
    const pool = await openPool(fake, log);
    pools.splice(pools.indexOf(pool), 1);
    const holder = (await pool.acquire(7)).slice('container:'.length);
    const run = fake.addRun(site, 7);
    // The holder dies just after the new subscription, and the re-check's inspection is answered
    // only once the event has stopped the run: both report the one death.
    fake.onSubscribe = () => fake.die(holder, true);
    fake.inspectAfter = fake.killed(run);
    fake.streams[0]!.end();
    await fake.killed(run);
    // close() waits for the reconnection, re-check included.
    await pool.close();
    expect(fake.inspections).toContain(holder);
    expect(log.count(/^network slot holder died during a run/)).toBe(1);
    expect(fake.kills).toEqual([run]);
  });

  it('close() during a reconnection ends it and leaves no event stream open', async () => {
    const fake = new FakeDocker();
    const log = captureLog();
    const pool = await openPool(fake, log);
    pools.splice(pools.indexOf(pool), 1);
    fake.eventsDown = true;
    fake.streams[0]!.end();
    await fake.nthSubscription(2);
    // Docker is back the moment the pool closes: a reconnection that went on would open a stream.
    fake.eventsDown = false;
    await pool.close();
    expect(fake.streams.every((s) => s.destroyed)).toBe(true);
    expect(log.count(back)).toBe(0);
    expect([...fake.containers.values()].filter((c) => c.labels['org.pht.network-slot'])).toEqual([]);
  });
});
