import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../shared/logger.js';
import { commands } from './command-runner.js';

/** mkfs, mount and umount run in the client's small helper process (see command-runner.ts). */
const exec = (file: string, args: string[]) => commands.run(file, args);

/** What a run's disk image is made to: capacity, inode count and the owner of its writable folders. */
export interface DiskImageSpec {
  /** Capacity for output and progress together. */
  bytes: number;
  /** Files and folders the filesystem can hold at most. */
  inodes: number;
  uid: number;
  gid: number;
}

/**
 * A fresh disk made ahead of time: a folder laid out like a run's workspace, `disk.img` and the
 * folder `disk/` it is loop-mounted on (noexec,nosuid,nodev). A run renames the whole folder to
 * its workspace: the mount goes with it, with no process to spawn and no mount to move.
 */
export interface PooledDisk {
  folder: string;
}

/** Size of the image file (sparse): capacity plus ext4's own metadata and journal. */
export function diskImageBytes(spec: DiskImageSpec): number {
  const metadata = 8 * 1024 * 1024 + spec.inodes * 512 + Math.ceil(spec.bytes * 0.05);
  return Math.ceil((spec.bytes + metadata) / 4096) * 4096;
}

/**
 * How every run disk is formatted. No reserved blocks. A small journal (4 MB): results written
 * before a host crash are still readable after it, without the default 32 MB journal.
 *
 * The image is always a new sparse file (ftruncate), so every block mkfs does not write reads as
 * zeros: mkfs need not zero the journal or the inode tables (lazy_*_init; the default wrote the
 * 4 MB journal for every run, and the pool then fsynced it), and `nodiscard` skips punching holes
 * into a file that has nothing but holes. No reserved GDT blocks (^resize_inode): a run's disk is
 * never grown. What the image then holds is 0.15 MB instead of 4.7 MB.
 */
export const MKFS_OPTIONS = [
  '-q',
  '-F',
  '-m',
  '0',
  '-J',
  'size=4',
  '-O',
  '^resize_inode',
  '-E',
  'lazy_itable_init=1,lazy_journal_init=1,nodiscard',
];

/**
 * Mount options of every run disk. noinit_itable: the kernel would otherwise start a thread after
 * each mount that writes zeros over the inode tables mkfs left unwritten, which in a new sparse
 * image read as zeros already.
 */
export const MOUNT_OPTIONS = 'loop,noexec,nosuid,nodev,noinit_itable';

/** Writes a new, empty ext4 image at `image` (through a temporary name: never half an image). */
export async function formatDiskImage(image: string, spec: DiskImageSpec): Promise<void> {
  const tmp = `${image}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.ftruncateSync(fd, diskImageBytes(spec));
  } finally {
    fs.closeSync(fd);
  }
  await exec('mkfs.ext4', [...MKFS_OPTIONS, '-N', String(spec.inodes), tmp]);
  fs.renameSync(tmp, image);
}

/** Loop-mounts `image` on `dir` with the options every run disk gets. */
export async function mountDiskImage(image: string, dir: string): Promise<void> {
  await exec('mount', ['-t', 'ext4', '-o', MOUNT_OPTIONS, image, dir]);
}

async function syncPath(file: string): Promise<void> {
  const handle = await fs.promises.open(file, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * The container's two writable folders on a run's disk, owned by the container's user, and
 * nothing else there (mkfs's lost+found goes). Idempotent. Owner and mode are set every time, not
 * only on creation: a client killed between the mkdir and the chown would otherwise leave a
 * root-owned folder that the resumed run cannot write to.
 */
export function writableFolders(diskDir: string, owner: Pick<DiskImageSpec, 'uid' | 'gid'>): void {
  fs.rmSync(path.join(diskDir, 'lost+found'), { recursive: true, force: true });
  for (const name of ['output', 'progress']) {
    const writable = path.join(diskDir, name);
    fs.mkdirSync(writable, { recursive: true });
    // The container runs as an unprivileged user: only these two folders are its to write.
    if (process.getuid?.() === 0) fs.chownSync(writable, owner.uid, owner.gid);
    fs.chmodSync(writable, process.getuid?.() === 0 ? 0o700 : 0o777);
  }
}

/**
 * writableFolders without blocking the event loop: the pool makes disks while runs are in flight,
 * and on a just-mounted disk each of these calls waits for the loop device to read the metadata
 * block it changes (5 ms per disk on the client's event loop, measured).
 */
export async function writableFoldersInBackground(
  diskDir: string,
  owner: Pick<DiskImageSpec, 'uid' | 'gid'>,
): Promise<void> {
  await fs.promises.rm(path.join(diskDir, 'lost+found'), { recursive: true, force: true });
  for (const name of ['output', 'progress']) {
    const writable = path.join(diskDir, name);
    await fs.promises.mkdir(writable, { recursive: true });
    if (process.getuid?.() === 0) await fs.promises.chown(writable, owner.uid, owner.gid);
    await fs.promises.chmod(writable, process.getuid?.() === 0 ? 0o700 : 0o777);
  }
}

/** True when `dir` is a mount point (another filesystem than its parent's). */
export function isMountPoint(dir: string): boolean {
  try {
    return fs.statSync(dir).dev !== fs.statSync(path.dirname(dir)).dev;
  } catch {
    return false;
  }
}

/**
 * Run disks formatted and mounted ahead of time, so that a run's start does not wait for mkfs,
 * the loop device or any spawned `mount`. Each disk is new and serves one run only: a run takes
 * it (its folder becomes the run's workspace by one rename, which carries the mount along, also
 * under a shared mount, where `mount --move` is refused) and it goes with the workspace, exactly
 * as a disk made on the spot would. The pool holds `size` disks (one per concurrent slot) and
 * makes one at a time in the background, off every run's critical path: a taken disk is replaced
 * when its run calls refill() (once its container runs), not at once, because mkfs, the mount and
 * the image's fsync took CPU and disk from that run's own start (POST /start, the image lookup,
 * docker create and start) on a 2-core host.
 *
 * Whatever a previous process left in the pool's folder is unmounted and deleted by start(): a
 * pooled disk belongs to no run, so nothing in it is ever kept.
 */
export class DiskPool {
  private readonly ready: PooledDisk[] = [];
  private filling: Promise<void> | null = null;
  private closed = false;
  private sequence = 0;

  constructor(
    readonly dir: string,
    private readonly spec: DiskImageSpec,
    private readonly size: number,
    private readonly logger: Logger,
  ) {}

  /** Clears what an earlier process left and starts filling. */
  async start(): Promise<void> {
    await this.clear();
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.fill();
  }

  /**
   * A ready disk, at once, or null when none is ready (the run then makes its own, and the pool
   * starts catching up at once). The pool makes a replacement on refill().
   */
  take(): PooledDisk | null {
    const disk = this.ready.shift() ?? null;
    if (!disk) this.fill();
    return disk;
  }

  /** Makes disks, in the background, until the pool is full again. */
  refill(): void {
    this.fill();
  }

  /** Stops filling, then unmounts and deletes every disk still in the pool. */
  async close(): Promise<void> {
    this.closed = true;
    await this.filling;
    this.ready.splice(0);
    await this.clear();
  }

  /** Disks ready now (for tests and metrics). */
  get readyCount(): number {
    return this.ready.length;
  }

  /** Resolves when the pool has no disk in the making (for tests). */
  async settled(): Promise<void> {
    while (this.filling) await this.filling;
  }

  private fill(): void {
    if (this.filling || this.closed || this.ready.length >= this.size) return;
    this.filling = (async () => {
      while (!this.closed && this.ready.length < this.size) {
        try {
          this.ready.push(await this.make());
        } catch (e) {
          // The run makes its own disk then, and reports a failure there with its reason.
          this.logger.warn('could not prepare a run disk ahead of time', { error: (e as Error).message });
          return;
        }
      }
    })().finally(() => (this.filling = null));
  }

  private async make(): Promise<PooledDisk> {
    // Unique across processes: a folder name never comes back after a restart cleared the pool.
    // Its mode is the workspace's it becomes; the pool's own folder (0700) hides it until then.
    const folder = path.join(this.dir, `${process.pid}-${Date.now()}-${++this.sequence}`);
    fs.mkdirSync(folder, { mode: 0o755 });
    const image = path.join(folder, 'disk.img');
    await formatDiskImage(image, this.spec);
    const mountDir = path.join(folder, 'disk');
    fs.mkdirSync(mountDir, { mode: 0o755 });
    await mountDiskImage(image, mountDir);
    await writableFoldersInBackground(mountDir, this.spec);
    // Written through now, here, off every run's path: otherwise the next fsync of a run's
    // state.json on the host's filesystem (data=ordered) waits for this image's dirty blocks.
    await syncPath(mountDir);
    await syncPath(image);
    return { folder };
  }

  private async clear(): Promise<void> {
    let entries: string[];
    try {
      entries = fs.readdirSync(this.dir);
    } catch {
      return;
    }
    for (const entry of entries) {
      // 'mnt': where clients before the rename hand-over mounted their pooled disks.
      for (const mountDir of ['disk', 'mnt'].map((m) => path.join(this.dir, entry, m)))
        if (isMountPoint(mountDir)) await exec('umount', ['-l', mountDir]).catch(() => undefined);
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
