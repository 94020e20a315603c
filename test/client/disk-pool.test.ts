import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DiskPool, isMountPoint } from '../../client/disk-pool.js';
import { RunWorkspace, type DiskSpec } from '../../client/run-workspace.js';
import { silentLogger } from '../../shared/logger.js';
import type { RunAssignment } from '../../shared/types.js';
import { promisify } from 'node:util';
import { makeTempDir } from '../helpers/temp-dirs.js';

const exec = promisify(execFile);

const spec: DiskSpec = { mode: 'loop-image', bytes: 1 << 20, inodes: 64, uid: 65534, gid: 65534 };
const run = (id: number) =>
  ({ id, taskId: 1, image: '127.0.0.1:5050/pht/x:1', config: {}, attempt: 1 }) as RunAssignment;

describe.runIf(process.getuid?.() === 0)('run disk pool', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function setUp(size: number) {
    const workDir = makeTempDir('pht-pool-');
    const pool = new DiskPool(path.join(workDir, 'disk-pool'), spec, size, silentLogger());
    cleanups.push(async () => {
      await pool.close();
      fs.rmSync(workDir, { recursive: true, force: true });
    });
    await pool.start();
    await pool.settled();
    return { workDir, pool };
  }

  it('gives each run a fresh mounted disk of its own, with the size and inode limits, and refills when told', async () => {
    const { workDir, pool } = await setUp(2);
    expect(pool.readyCount).toBe(2);
    const a = RunWorkspace.create(workDir, 's', run(1), undefined, undefined, pool);
    const b = RunWorkspace.create(workDir, 's', run(2), undefined, undefined, pool);
    cleanups.push(
      () => a.remove(),
      () => b.remove(),
    );
    // Mounted from the moment the workspace exists: the run's start spawns no mount.
    for (const ws of [a, b]) expect(isMountPoint(ws.diskDir)).toBe(true);
    await a.prepareDisk(spec);
    await b.prepareDisk(spec);
    for (const ws of [a, b]) {
      expect(isMountPoint(ws.diskDir)).toBe(true);
      expect(fs.existsSync(ws.diskImage)).toBe(true);
      expect(fs.readdirSync(ws.diskDir).sort()).toEqual(['output', 'progress']);
      const mount = fs
        .readFileSync('/proc/self/mounts', 'utf8')
        .split('\n')
        .find((l) => l.split(' ')[1] === ws.diskDir)!;
      expect(mount.split(' ')[3]).toMatch(/noexec/);
      expect(mount.split(' ')[3]).toMatch(/nosuid/);
      expect(mount.split(' ')[3]).toMatch(/nodev/);
    }
    // Two disks, not one: what one run writes the other never sees.
    fs.writeFileSync(path.join(a.outputDir, 'secret'), 'a');
    expect(fs.readdirSync(b.outputDir)).toEqual([]);
    // The kernel's limit holds on a pooled disk: 64 inodes.
    expect(() => {
      for (let i = 0; i < 100; i++) fs.writeFileSync(path.join(b.outputDir, `f${i}`), '');
    }).toThrow(/ENOSPC/);
    // Not replaced while the runs start (mkfs would compete with their start), but on refill().
    await pool.settled();
    expect(pool.readyCount).toBe(0);
    pool.refill();
    await pool.settled();
    expect(pool.readyCount).toBe(2);
  });

  it('makes each pooled disk an empty filesystem holding only the two writable folders, without writing its journal or inode tables', async () => {
    // The run's spec, not the test's tiny one: the journal (4 MB) is what the default mkfs wrote.
    const real: DiskSpec = { ...spec, bytes: 1 << 30, inodes: 2064 };
    const workDir = makeTempDir('pht-pool-');
    const pool = new DiskPool(path.join(workDir, 'disk-pool'), real, 1, silentLogger());
    cleanups.push(async () => {
      await pool.close();
      fs.rmSync(workDir, { recursive: true, force: true });
    });
    await pool.start();
    await pool.settled();
    const [folder] = fs.readdirSync(pool.dir).map((e) => path.join(pool.dir, e));
    const disk = path.join(folder!, 'disk');
    expect(isMountPoint(disk)).toBe(true);
    // Laid out by the pool itself, before any run's prepareDisk: lost+found gone, folders owned.
    expect(fs.readdirSync(disk).sort()).toEqual(['output', 'progress']);
    for (const name of ['output', 'progress']) {
      const st = fs.statSync(path.join(disk, name));
      expect([st.uid, st.gid, st.mode & 0o777]).toEqual([65534, 65534, 0o700]);
      expect(fs.readdirSync(path.join(disk, name))).toEqual([]);
    }
    const mount = fs
      .readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .find((l) => l.split(' ')[1] === disk)!;
    expect(mount.split(' ')[3]).toMatch(/noinit_itable/);
    // Nothing used but ext4's 10 reserved inodes (the root is one of them) and the two folders.
    const usage = await fs.promises.statfs(disk);
    expect(usage.files - usage.ffree).toBe(12);
    // The image holds only what mkfs wrote: no zeroed journal (4 MB) or inode tables.
    expect(fs.statSync(path.join(folder!, 'disk.img')).blocks * 512).toBeLessThan(1 << 20);
  });

  it('hands a pooled disk to a run under a shared mount too, where a mount cannot be moved', async () => {
    // A host whose work dir sits under a shared mount (systemd's default for /): the kernel
    // refuses \`mount --move\` from there; a rename of the folder holding the mount is no mount call.
    const shared = makeTempDir('pht-pool-shared-');
    await exec('mount', ['--bind', shared, shared]);
    await exec('mount', ['--make-shared', shared]);
    cleanups.push(async () => {
      await exec('umount', ['-l', shared]).catch(() => undefined);
      fs.rmSync(shared, { recursive: true, force: true });
    });
    const pool = new DiskPool(path.join(shared, 'disk-pool'), spec, 1, silentLogger());
    cleanups.push(() => pool.close());
    await pool.start();
    await pool.settled();
    for (const id of [11, 12]) {
      expect(pool.readyCount).toBe(1);
      const ws = RunWorkspace.create(shared, 's', run(id), undefined, undefined, pool);
      cleanups.push(() => ws.remove());
      expect(isMountPoint(ws.diskDir)).toBe(true);
      await ws.prepareDisk(spec);
      expect(fs.readdirSync(ws.diskDir).sort()).toEqual(['output', 'progress']);
      pool.refill();
      await pool.settled();
    }
  });

  it('unmounts the pooled disk of a run whose workspace never got its first save', async () => {
    const { workDir, pool } = await setUp(1);
    const ws = RunWorkspace.create(workDir, 's', run(21), undefined, undefined, pool);
    expect(isMountPoint(ws.diskDir)).toBe(true);
    // As if the process died between the rename and the first save.
    fs.rmSync(path.join(ws.dir, 'state.json'));
    const { abandoned } = RunWorkspace.loadAll(workDir);
    expect(abandoned).toEqual([21]);
    expect(fs.existsSync(ws.dir)).toBe(false);
    expect(fs.readFileSync('/proc/self/mounts', 'utf8')).not.toContain(ws.diskDir);
  });

  it('leaves a run to make its own disk when none is ready', async () => {
    const { workDir, pool } = await setUp(1);
    pool.take();
    const ws = RunWorkspace.create(workDir, 's', run(3));
    cleanups.push(() => ws.remove());
    await ws.prepareDisk(spec); // no pool: formats on the spot
    expect(isMountPoint(ws.diskDir)).toBe(true);
  });

  it('unmounts and deletes the disks an earlier process left in the pool, and its own on close', async () => {
    const { workDir, pool } = await setUp(1);
    const left = fs.readdirSync(pool.dir).map((e) => path.join(pool.dir, e, 'disk'));
    expect(left.some(isMountPoint)).toBe(true);
    const next = new DiskPool(pool.dir, spec, 1, silentLogger());
    await next.start();
    await next.settled();
    expect(left.some(isMountPoint)).toBe(false);
    await next.close();
    expect(fs.existsSync(next.dir)).toBe(false);
    expect(fs.readFileSync('/proc/self/mounts', 'utf8')).not.toContain(workDir);
  });
});
