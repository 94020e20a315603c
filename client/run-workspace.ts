import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { FinishState, RunAssignment } from '../shared/types.js';
import { type DiskPool, formatDiskImage, mountDiskImage, writableFolders } from './disk-pool.js';
import { commands } from './command-runner.js';
import { PermanentRunError } from './errors.js';

/** mkfs, mount and umount run in the client's small helper process (see command-runner.ts). */
const exec = (file: string, args: string[]) => commands.run(file, args);

/**
 * Where a run is in its life at this site. Persisted before each step that cannot be repeated,
 * so a restarted client knows whether to start, follow, upload or only report.
 * - claimed: received from the registry, nothing done yet;
 * - started: the registry knows it is running; the container may or may not exist yet;
 * - ended: the container is gone or stopped and the outcome is known; files await upload;
 * - reported: the registry has the outcome (the workspace only waits for deletion).
 */
export type RunPhase = 'claimed' | 'started' | 'ended' | 'reported';

export interface RunOutcome {
  state: FinishState;
  exitCode: number | null;
  reason: string | null;
  durationMs: number | null;
}

export interface RunRecord {
  runId: number;
  taskId: number;
  attempt: number;
  image: string;
  phase: RunPhase;
  containerName: string;
  imageId: string | null;
  digest: string | null;
  containerId: string | null;
  /** The run's secret path at the SPARQL gateway, kept so a restarted client can honour it. */
  sparqlToken: string | null;
  startedAtMs: number | null;
  /** Unix seconds up to which the container's log has been forwarded. */
  logForwardedUntil: number;
  outcome: RunOutcome | null;
  /** Who posted the task, as the registry said (unchecked; client/policy validates it). */
  postedBy?: unknown;
  /** How the run's writable folders are limited, once they exist (see {@link RunWorkspace.prepareDisk}). */
  disk?: DiskMode | null;
  /** Executions of this run that ended in an error, across client restarts. */
  failedAttempts?: number;
  /** Bytes the run's empty disk image already used (ext4's own metadata and journal). */
  diskBaselineBytes?: number;
}

/**
 * loop-image: the writable folders live on an ext4 image of their own, loop-mounted
 * noexec,nosuid,nodev under the workspace; the kernel enforces its size and inode count.
 * unenforced: plain folders (an explicit opt-in for machines where the client is not root).
 */
export type DiskMode = 'loop-image' | 'unenforced';

export interface DiskSpec {
  mode: DiskMode;
  /** Capacity for output and progress together. */
  bytes: number;
  /** Files and folders the filesystem can hold at most. */
  inodes: number;
  uid: number;
  gid: number;
}

/**
 * One run's folder: state.json, input/config.json, and disk/ holding the container's writable
 * folders output/ and progress/ (disk/ is the mount point of disk.img in loop-image mode).
 */
export class RunWorkspace {
  readonly dir: string;
  readonly inputDir: string;
  readonly diskDir: string;
  readonly diskImage: string;
  readonly outputDir: string;
  readonly progressDir: string;
  record: RunRecord;

  private constructor(dir: string, record: RunRecord) {
    this.dir = dir;
    this.inputDir = path.join(dir, 'input');
    this.diskDir = path.join(dir, 'disk');
    this.diskImage = path.join(dir, 'disk.img');
    this.outputDir = path.join(this.diskDir, 'output');
    this.progressDir = path.join(this.diskDir, 'progress');
    this.record = record;
  }

  static runsDir(workDir: string): string {
    return path.join(workDir, 'runs');
  }

  /**
   * Creates the folders and writes the config file the container will read. With a pool, the
   * workspace is a disk made ahead of time (see {@link DiskPool}): its folder is renamed to the
   * run's, already mounted, and {@link prepareDisk} finds nothing left to do.
   */
  static create(
    workDir: string,
    site: string,
    run: RunAssignment,
    // Kept for callers; the writable folders are made (and owned) by prepareDisk.
    _containerUid?: number,
    _containerGid?: number,
    pool?: DiskPool | null,
  ): RunWorkspace {
    const dir = path.join(RunWorkspace.runsDir(workDir), String(run.id));
    // A folder left under this id by an earlier registry may still hold a mounted disk.
    unmountSync(path.join(dir, 'disk'));
    fs.rmSync(dir, { recursive: true, force: true });
    const pooled = pool?.take() ?? null;
    if (pooled) {
      try {
        fs.mkdirSync(RunWorkspace.runsDir(workDir), { recursive: true });
        // A crash from here to the first save leaves a mounted disk and no state.json: loadAll
        // unmounts it with the folder.
        fs.renameSync(pooled.folder, dir);
      } catch {
        // Not on one filesystem after all: the run makes its own disk (prepareDisk).
        unmountSync(path.join(pooled.folder, 'disk'));
        fs.rmSync(pooled.folder, { recursive: true, force: true });
      }
    }
    const ws = new RunWorkspace(dir, {
      runId: run.id,
      taskId: run.taskId,
      attempt: run.attempt,
      image: run.image,
      phase: 'claimed',
      containerName: `pht-${site}-run-${run.id}`,
      imageId: null,
      digest: null,
      containerId: null,
      sparqlToken: null,
      startedAtMs: null,
      logForwardedUntil: 0,
      outcome: null,
      postedBy: run.postedBy ?? null,
      disk: null,
      failedAttempts: 0,
    });
    fs.mkdirSync(ws.inputDir, { recursive: true, mode: 0o755 });
    fs.mkdirSync(ws.diskDir, { recursive: true, mode: 0o755 });
    // A string config is handed over byte for byte (it may be encrypted); anything else as JSON.
    const configText = typeof run.config === 'string' ? run.config : JSON.stringify(run.config ?? null);
    fs.writeFileSync(path.join(ws.inputDir, 'config.json'), configText, { mode: 0o644 });
    ws.save();
    return ws;
  }

  /**
   * Makes the container's writable folders, with their limit in place; idempotent, and the way a
   * restarted client (or one after a reboot) mounts an existing disk image again. Fails closed:
   * a limit that cannot be set up is a PermanentRunError and the run does not start.
   *
   * Why a loop-mounted image: it is the one kernel-enforced limit that needs nothing from the
   * host's filesystem (project quotas need an XFS/ext4 mount with quotas on), covers size and
   * file count at once, and survives a client restart with its content, unlike a tmpfs, whose
   * results are lost when the client's mount goes (and which counts against memory).
   */
  async prepareDisk(spec: DiskSpec): Promise<void> {
    const mode = this.record.disk ?? spec.mode;
    if (mode === 'loop-image') {
      if (!(await this.isDiskMounted())) {
        try {
          if (!fs.existsSync(this.diskImage)) await formatDiskImage(this.diskImage, spec);
          fs.mkdirSync(this.diskDir, { recursive: true, mode: 0o755 });
          await mountDiskImage(this.diskImage, this.diskDir);
        } catch (e) {
          const detail = ((e as { stderr?: string }).stderr ?? '').trim() || (e as Error).message;
          throw new PermanentRunError(
            `the site could not set up this run's disk limit, so it did not run it: ${detail}`,
          );
        }
      }
    } else {
      fs.mkdirSync(this.diskDir, { recursive: true, mode: 0o755 });
    }
    // A pooled disk has them already; set every time all the same (see writableFolders).
    writableFolders(this.diskDir, spec);
    if (this.record.disk !== mode) {
      let baseline = 0;
      if (mode === 'loop-image') {
        const stat = await fs.promises.statfs(this.diskDir);
        baseline = (stat.blocks - stat.bfree) * stat.bsize;
      }
      // Persisted with the container's id: before a container exists, a restart finds the image
      // (mounted or not) and measures the same empty disk again.
      this.set({ disk: mode, diskBaselineBytes: baseline });
    }
  }

  /** True when disk/ is a mount point (another filesystem than the workspace's). */
  async isDiskMounted(): Promise<boolean> {
    try {
      const [inner, outer] = await Promise.all([fs.promises.stat(this.diskDir), fs.promises.stat(this.dir)]);
      return inner.dev !== outer.dev;
    } catch {
      return false;
    }
  }

  /**
   * Every workspace left by a previous process, oldest run first. Unreadable ones are returned as
   * errors; folders of runs that never got past their first save are removed (`abandoned`).
   */
  static loadAll(workDir: string): {
    workspaces: RunWorkspace[];
    broken: { dir: string; error: string }[];
    abandoned: number[];
  } {
    const runsDir = RunWorkspace.runsDir(workDir);
    fs.mkdirSync(runsDir, { recursive: true });
    const workspaces: RunWorkspace[] = [];
    const broken: { dir: string; error: string }[] = [];
    const abandoned: number[] = [];
    for (const entry of fs
      .readdirSync(runsDir)
      .filter((e) => /^[0-9]+$/.test(e))
      .sort((a, b) => Number(a) - Number(b))) {
      const dir = path.join(runsDir, entry);
      const file = path.join(dir, 'state.json');
      if (!fs.existsSync(file)) {
        // The process died inside its first save (state.json is written by rename, so it is
        // either whole or absent). Nothing had started yet: the folder can go (with the pooled
        // disk it may hold mounted), and the registry's lease hands the run out again.
        unmountSync(path.join(dir, 'disk'));
        fs.rmSync(dir, { recursive: true, force: true });
        abandoned.push(Number(entry));
        continue;
      }
      try {
        const record = JSON.parse(fs.readFileSync(file, 'utf8')) as RunRecord;
        workspaces.push(new RunWorkspace(dir, record));
      } catch (e) {
        broken.push({ dir, error: (e as Error).message });
      }
    }
    return { workspaces, broken, abandoned };
  }

  get configFile(): string {
    return path.join(this.inputDir, 'config.json');
  }

  get progressFile(): string {
    return path.join(this.progressDir, 'progress.jsonl');
  }

  /**
   * Changes the record and persists it (with any change made by {@link set} before); resolves
   * once it is on disk. Each call is an fsync'd write: used only at the steps recovery must find
   * again after a crash. The write and its fsync run off the event loop (an fsync took 5–25 ms
   * on a busy disk, during which no other run's call was served); saves of one workspace go one
   * after the other, each with the record as it was when it was asked for.
   */
  update(change: Partial<RunRecord>): Promise<void> {
    this.record = { ...this.record, ...change };
    const text = JSON.stringify(this.record, null, 2);
    const saved = this.saving.then(() => writeDurably(this.stateFile, text));
    this.saving = saved.catch(() => undefined);
    return saved;
  }

  /**
   * Changes the record in memory only; the next {@link update} persists it. For facts a restarted
   * client can find again by itself (the image, the disk, Docker's start time, the log position
   * while the run is followed), so that they cost no write of their own.
   */
  set(change: Partial<RunRecord>): void {
    this.record = { ...this.record, ...change };
  }

  private saving: Promise<void> = Promise.resolve();

  private get stateFile(): string {
    return path.join(this.dir, 'state.json');
  }

  /** The first save, at creation: synchronous, as create() is. */
  private save(): void {
    const tmp = `${this.stateFile}.tmp`;
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      fs.writeSync(fd, JSON.stringify(this.record, null, 2));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, this.stateFile);
  }

  /**
   * Unmounts the run's disk, keeping its image (prepareDisk mounts it again). Only when no
   * container can be using it: the image must never be mounted twice.
   */
  async unmountDisk(): Promise<void> {
    if (!(await this.isDiskMounted())) return;
    try {
      await exec('umount', [this.diskDir]);
    } catch {
      // Busy (a process still has a file open): detach now, the kernel frees it when released.
      await exec('umount', ['-l', this.diskDir]);
    }
  }

  /** Unmounts the run's disk (if mounted) and deletes the folder with everything in it. */
  async remove(): Promise<void> {
    await this.unmountDisk();
    await fs.promises.rm(this.dir, { recursive: true, force: true });
  }
}

/** Atomic write (temp file + fsync + rename) so a crash never leaves half a state file. */
async function writeDurably(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp`;
  const handle = await fs.promises.open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.promises.rename(tmp, file);
}

/** For the synchronous create(): a disk still mounted under a folder about to be replaced. */
function unmountSync(dir: string): void {
  try {
    if (fs.statSync(dir).dev === fs.statSync(path.dirname(dir)).dev) return;
  } catch {
    return;
  }
  execFileSync('umount', ['-l', dir]);
}
