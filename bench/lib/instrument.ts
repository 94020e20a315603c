import { DockerEngine } from '../../client/container-engine.js';
import { DiskPool } from '../../client/disk-pool.js';
import { SiteRegistryApi } from '../../client/registry-api.js';
import { RunWorkspace } from '../../client/run-workspace.js';
import { CONTAINER_LABELS } from '../../shared/container-contract.js';
import { wallMs } from './stats.js';

/** One timed call of the site client: a Docker engine call, a registry call or a workspace write. */
export interface Span {
  /** e.g. "docker.pull", "api.start", "workspace.update". */
  what: string;
  /** The run it belongs to when the arguments tell (registry calls, container calls after create). */
  runId: number | null;
  start: number;
  end: number;
  ok: boolean;
}

/** The site client's classes a timeline wraps: this checkout's, or a baseline build's (see overhead.ts). */
export interface ClientClasses {
  DockerEngine: { prototype: object };
  SiteRegistryApi: { prototype: object };
  RunWorkspace: { prototype: object };
  DiskPool: { prototype: object };
}

const THIS_CHECKOUT: ClientClasses = { DockerEngine, SiteRegistryApi, RunWorkspace, DiskPool };

const ENGINE_CALLS = ['pull', 'inspectImage', 'create', 'start', 'inspect', 'wait', 'logs', 'stop', 'remove'] as const;
const API_CALLS = ['claimNext', 'start', 'getRun', 'progress', 'log', 'uploadFile', 'finish'] as const;

/**
 * Times the site client's own steps without changing its code: wraps the prototypes of its
 * Docker engine, its registry API and its run workspace for the life of this process (until
 * `uninstall`). The client runs in the benchmark's process for this reason.
 */
export class ClientTimeline {
  readonly spans: Span[] = [];
  private readonly containerRuns = new Map<string, number>();
  private readonly restore: (() => void)[] = [];
  private waiters: { match: (s: Span) => boolean; resolve: (s: Span) => void }[] = [];

  constructor(private readonly classes: ClientClasses = THIS_CHECKOUT) {}

  private record(span: Span): void {
    this.spans.push(span);
    const ready = this.waiters.filter((w) => w.match(span));
    if (ready.length === 0) return;
    this.waiters = this.waiters.filter((w) => !w.match(span));
    for (const w of ready) w.resolve(span);
  }

  install(): this {
    const timeline = this;
    for (const name of ENGINE_CALLS) {
      this.wrap(this.classes.DockerEngine.prototype as any, name, `docker.${name}`, (args, result) => {
        if (name === 'create') {
          const runId = Number((args[0] as { labels: Record<string, string> }).labels[CONTAINER_LABELS.runId]);
          timeline.containerRuns.set(result as string, runId);
          return runId;
        }
        return typeof args[0] === 'string' ? (timeline.containerRuns.get(args[0]) ?? null) : null;
      });
    }
    for (const name of API_CALLS) {
      this.wrap(this.classes.SiteRegistryApi.prototype as any, name, `api.${name}`, (args, result) => {
        if (name === 'claimNext') return (result as { id?: number } | null)?.id ?? null;
        return typeof args[0] === 'number' ? args[0] : null;
      });
    }
    this.wrap(
      this.classes.RunWorkspace.prototype as any,
      'update',
      'workspace.update',
      (_args, _result, self) => (self as RunWorkspace).record.runId,
    );
    this.wrap(
      this.classes.RunWorkspace as any,
      'create',
      'workspace.create',
      (args) => (args[2] as { id: number }).id,
      true,
    );
    for (const name of ['prepareDisk', 'remove'] as const)
      this.wrap(
        this.classes.RunWorkspace.prototype as any,
        name,
        `workspace.${name}`,
        (_args, _result, self) => (self as RunWorkspace).record.runId,
      );
    // ok: a disk was ready; not ok: the pool was empty and the run formats and mounts its own.
    this.wrapTake();
    return this;
  }

  /** Runs that found no pooled disk ready, out of all takes so far. */
  diskPoolMisses(): { takes: number; misses: number } {
    const takes = this.spans.filter((s) => s.what === 'diskPool.take');
    return { takes: takes.length, misses: takes.filter((s) => !s.ok).length };
  }

  private wrapTake(): void {
    const proto = this.classes.DiskPool.prototype as unknown as { take: (this: DiskPool) => unknown };
    const original = proto.take;
    const record = (span: Span) => this.record(span);
    proto.take = function (this: DiskPool) {
      const start = wallMs();
      const disk = original.call(this);
      record({ what: 'diskPool.take', runId: null, start, end: wallMs(), ok: disk !== null });
      return disk;
    };
    this.restore.push(() => {
      proto.take = original;
    });
  }

  uninstall(): void {
    for (const undo of this.restore.splice(0)) undo();
  }

  /** The first span of `what` for `runId`, as soon as it is recorded (at once when it already is). */
  next(what: string, runId: number): Promise<Span> {
    const match = (s: Span) => s.what === what && s.runId === runId;
    const found = this.spans.find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve) => this.waiters.push({ match, resolve }));
  }

  /** Spans that started inside [from, to]. */
  between(from: number, to: number): Span[] {
    return this.spans.filter((s) => s.start >= from && s.start <= to);
  }

  private wrap(
    target: Record<string, any>,
    name: string,
    what: string,
    runOf: (args: unknown[], result: unknown, self: unknown) => number | null,
    sync = false,
  ): void {
    const original = target[name] as (...a: unknown[]) => unknown;
    const record = (span: Span) => this.record(span);
    target[name] = sync
      ? function (this: unknown, ...args: unknown[]) {
          const start = wallMs();
          const result = original.apply(this, args);
          record({ what, runId: runOf(args, result, this), start, end: wallMs(), ok: true });
          return result;
        }
      : async function (this: unknown, ...args: unknown[]) {
          const start = wallMs();
          try {
            const result = await original.apply(this, args);
            record({ what, runId: runOf(args, result, this), start, end: wallMs(), ok: true });
            return result;
          } catch (e) {
            record({ what, runId: runOf(args, undefined, this), start, end: wallMs(), ok: false });
            throw e;
          }
        };
    this.restore.push(() => {
      target[name] = original;
    });
  }
}
