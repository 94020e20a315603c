import fs from 'node:fs';
import path from 'node:path';
import type { FinishState, RunAssignment } from '../shared/types.js';

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
}

/** One run's folder: state.json, input/config.json, output/, progress/. */
export class RunWorkspace {
  readonly dir: string;
  readonly inputDir: string;
  readonly outputDir: string;
  readonly progressDir: string;
  record: RunRecord;

  private constructor(dir: string, record: RunRecord) {
    this.dir = dir;
    this.inputDir = path.join(dir, 'input');
    this.outputDir = path.join(dir, 'output');
    this.progressDir = path.join(dir, 'progress');
    this.record = record;
  }

  static runsDir(workDir: string): string {
    return path.join(workDir, 'runs');
  }

  /** Creates the folders and writes the config file the container will read. */
  static create(
    workDir: string,
    site: string,
    run: RunAssignment,
    containerUid: number,
    containerGid: number,
  ): RunWorkspace {
    const dir = path.join(RunWorkspace.runsDir(workDir), String(run.id));
    fs.rmSync(dir, { recursive: true, force: true });
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
    });
    fs.mkdirSync(ws.inputDir, { recursive: true, mode: 0o755 });
    fs.mkdirSync(ws.outputDir, { recursive: true });
    fs.mkdirSync(ws.progressDir, { recursive: true });
    // A string config is handed over byte for byte (it may be encrypted); anything else as JSON.
    const configText = typeof run.config === 'string' ? run.config : JSON.stringify(run.config ?? null);
    fs.writeFileSync(path.join(ws.inputDir, 'config.json'), configText, { mode: 0o644 });
    for (const writable of [ws.outputDir, ws.progressDir]) {
      // The container runs as an unprivileged user: only these two folders are its to write.
      if (process.getuid?.() === 0) fs.chownSync(writable, containerUid, containerGid);
      fs.chmodSync(writable, process.getuid?.() === 0 ? 0o700 : 0o777);
    }
    ws.save();
    return ws;
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
        // either whole or absent). Nothing had started yet: the folder can go, and the
        // registry's lease hands the run out again.
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

  update(change: Partial<RunRecord>): void {
    this.record = { ...this.record, ...change };
    this.save();
  }

  /** Atomic write (temp file + rename + fsync) so a crash never leaves half a state file. */
  private save(): void {
    const file = path.join(this.dir, 'state.json');
    const tmp = `${file}.tmp`;
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      fs.writeSync(fd, JSON.stringify(this.record, null, 2));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  }

  remove(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
