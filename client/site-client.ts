import fs from 'node:fs';
import path from 'node:path';
import cron from 'node-cron';
import { CONTAINER_LABELS } from '../shared/container-contract.js';
import { coerceError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { createAuditLog } from './audit-log.js';
import type { ClientMetrics } from './metrics.js';
import type { ClientConfig } from './config.js';
import { DockerEngine, type ContainerEngine } from './container-engine.js';
import { prepareContainerNetworking, type PreparedNetworking } from './container-network.js';
import { abortReason, backoffDelay, isAbortError, retry, sleep } from '../shared/abortable.js';
import { isTransientError, RegistryRefusedError, RegistryUnavailableError, ShutdownDeadlineError } from './errors.js';
import { PollerStateMachine, type PollerState } from './poller-state.js';
import { GovernedRegistryApi } from './policy/governed-api.js';
import { SiteGovernance } from './policy/site-governance.js';
import { SiteRegistryApi } from './registry-api.js';
import { RunSealing } from './sealing.js';
import { TtpOutbox } from './ttp.js';
import { DiskPool } from './disk-pool.js';
import { RunExecutor, runDiskSpec } from './run-executor.js';
import { RunWorkspace } from './run-workspace.js';

/** How long close() lets in-flight steps end after they were told to stop, by default. */
export const DEFAULT_SHUTDOWN_DEADLINE_MS = 15_000;

export interface SiteClientOptions {
  config: ClientConfig;
  logger: Logger;
  /** For tests: a fake engine at the Docker boundary. */
  engine?: ContainerEngine;
  /** close() gives up waiting for in-flight steps after this long (default 15 s) and rejects. */
  shutdownDeadlineMs?: number;
  /** Counts runs, Docker errors and gateway queries when the metrics listener is on. */
  metrics?: ClientMetrics;
}

/**
 * The site client: recovers what a previous process left, then polls the registry for runs and
 * executes up to `concurrency` of them at once.
 */
export class SiteClient {
  /** The poll loop's state; transitions are guarded (see poller-state.ts) and logged at info. */
  readonly states = new PollerStateMachine();
  site = '';
  private readonly config: ClientConfig;
  private readonly logger: Logger;
  private readonly api: SiteRegistryApi;
  private readonly sealing: RunSealing;
  private readonly engine: ContainerEngine;
  private readonly shutdown = new AbortController();
  private readonly inFlight = new Map<number, Promise<void>>();
  /** Runs in flight that are reported and only remove their workspace: they hold no slot. */
  private readonly finishing = new Set<number>();
  private slotFreed: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  private networking: PreparedNetworking | null = null;
  private cronTask: { stop(): void } | null = null;
  private diskPool: DiskPool | null = null;
  private cronTick: (() => void) | null = null;
  private starting: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  private readonly shutdownDeadlineMs: number;
  private executor!: RunExecutor;
  private audit!: Logger;
  private readonly metrics: ClientMetrics | null;
  private readonly governance: SiteGovernance;

  constructor(options: SiteClientOptions) {
    this.config = options.config;
    this.logger = options.logger;
    this.metrics = options.metrics ?? null;
    // Logs and progress are outputs too: the governed API applies the site's output policy to them.
    const api = new GovernedRegistryApi(this.config.registryUrl, this.config.apiKey, (runId) =>
      this.governance.lookup(runId),
    );
    this.sealing = api.sealing = new RunSealing(this.config, api, () => this.site);
    this.api = api;
    this.governance = new SiteGovernance({
      policy: this.config.policy,
      api,
      workDir: this.config.workDir,
      audit: () => this.audit,
      logger: this.logger.child({ component: 'policy' }),
    });
    this.engine =
      options.engine ?? new DockerEngine(this.config.dockerSocket, (kind) => this.metrics?.dockerError(kind));
    this.shutdownDeadlineMs = options.shutdownDeadlineMs ?? DEFAULT_SHUTDOWN_DEADLINE_MS;
    this.states.on('change', (from, to) => this.logger.info('client state', { from, to }));
  }

  get state(): PollerState {
    return this.states.state;
  }

  /**
   * Connects, prepares the network, recovers left-over runs and starts polling. Rejects with the
   * shutdown's AbortError when close() is called before it is done.
   */
  start(): Promise<void> {
    this.starting ??= this.startOnce();
    return this.starting;
  }

  private async startOnce(): Promise<void> {
    const signal = this.shutdown.signal;
    this.site = (await this.untilAvailable('identify the site', () => this.api.me(signal))).name;
    this.logger.info('site client starting', {
      site: this.site,
      registry: this.config.registryUrl,
      network: this.config.network.mode,
      concurrency: this.config.concurrency,
    });
    await this.engine.ping();
    if (signal.aborted) throw abortReason(signal);
    this.audit = createAuditLog(this.config.auditLog, this.site);
    this.metrics?.watchAudit(this.audit);
    fs.mkdirSync(this.config.workDir, { recursive: true });
    const networking = await prepareContainerNetworking({
      engine: this.engine,
      config: this.config,
      site: this.site,
      audit: this.audit,
      logger: this.logger,
    });
    this.networking = networking;
    if (signal.aborted) throw abortReason(signal);
    if (this.config.limits.disk === 'loop-image') {
      // One disk ready per slot: a run's start takes one instead of waiting for mkfs and mount.
      this.diskPool = new DiskPool(
        path.join(this.config.workDir, 'disk-pool'),
        runDiskSpec(this.config),
        this.config.concurrency,
        this.logger.child({ component: 'disk-pool' }),
      );
      await this.diskPool.start();
    }
    this.executor = new RunExecutor({
      api: this.api,
      engine: this.engine,
      config: this.config,
      site: this.site,
      networking,
      logger: this.logger,
      audit: this.audit,
      governance: this.governance,
      shutdown: this.shutdown.signal,
      outbox: new TtpOutbox(this.config, this.sealing, this.audit),
      // A taken disk is replaced once its run is past its start, or ended without one (see DiskPool).
      onContainerStarted: () => this.diskPool?.refill(),
      onReported: (runId) => {
        this.diskPool?.refill();
        this.releaseSlot(runId);
      },
    });
    // A run's container has exited when its report goes out: the next claim need not wait for
    // the answer, the report's durable save, the container's removal, an unmount and a folder's
    // deletion. `concurrency` bounds running containers; exited ones on their way out do not count.
    this.api.onFinishing = (runId) => this.releaseSlot(runId);
    // A held run resumes when the site's officer decides (node client approve|reject).
    this.governance.watchDecisions((ws) => {
      if (!this.inFlight.has(ws.record.runId) && !this.shutdown.signal.aborted) this.launch(ws);
    });
    try {
      await this.recover();
    } catch (e) {
      // The gateway's listening socket would keep the process alive: undo what start did.
      await networking.close().catch(() => undefined);
      this.networking = null;
      await this.diskPool?.close().catch(() => undefined);
      throw e;
    }
    if (this.config.poll.schedule.kind === 'cron') {
      this.cronTask = cron.schedule(this.config.poll.schedule.expression, () => this.cronTick?.());
    }
    this.loop = this.pollLoop();
    // A bug in the loop must not vanish: it is logged, and close() still completes.
    this.loop = this.loop.catch((e: unknown) => {
      this.logger.error('poll loop failed', { error: coerceError(e).stack ?? coerceError(e).message });
    });
  }

  /**
   * Stops claiming, interrupts every in-flight step (registry calls, pulls, uploads and waits all
   * take the shutdown signal), then releases the gateway, the firewall rules and the connections.
   * Running containers and pending results wait in the work folder for the next start. Rejects
   * with ShutdownDeadlineError when in-flight steps have not ended within the deadline (the caller
   * should then exit; resources are released all the same). Idempotent: every call gets the first
   * call's promise.
   */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    this.states.to('stopping');
    this.shutdown.abort();
    this.cronTask?.stop();
    this.cronTick?.();
    this.slotFreed?.();
    const deadline = Date.now() + this.shutdownDeadlineMs;
    const work = (async () => {
      await this.starting?.catch(() => undefined);
      await this.loop;
      await Promise.allSettled([...this.inFlight.values()]);
    })();
    const inTime = await within(work, this.shutdownDeadlineMs);
    this.governance.close();
    const stuck = [...this.inFlight.keys()];
    if (!inTime) this.logger.error('shutdown deadline passed; steps still running', { runs: stuck });
    // Released even after the deadline: a gateway or firewall rule left behind outlives the process.
    // The gateway goes; its network and firewall rules too, unless containers still use them.
    const grace = Math.max(1000, deadline - Date.now());
    await within(this.networking?.close() ?? Promise.resolve(), grace);
    await within(this.diskPool?.close() ?? Promise.resolve(), grace);
    await within(this.api.close(), grace);
    this.states.to('stopped');
    if (!inTime) throw new ShutdownDeadlineError(this.shutdownDeadlineMs, stuck);
  }

  /** Picks up what the previous process left: workspaces, containers, runs the registry still counts as ours. */
  private async recover(): Promise<void> {
    const { workspaces, broken, abandoned } = RunWorkspace.loadAll(this.config.workDir);
    for (const runId of abandoned)
      this.logger.warn(
        'dropped a run the previous process had only just received; the registry will hand it out again',
        { runId },
      );
    for (const b of broken) {
      this.logger.error('unreadable run workspace set aside', b);
      fs.renameSync(b.dir, `${b.dir}.broken-${Date.now()}`);
    }
    const known = new Set(workspaces.map((w) => w.record.runId));
    for (const container of await this.engine.listManaged(this.site)) {
      const runId = Number(container.labels[CONTAINER_LABELS.runId]);
      if (!known.has(runId)) {
        this.logger.warn('removing a container of an unknown run', { containerId: container.id.slice(0, 12), runId });
        await this.engine.remove(container.id);
      }
    }
    const unfinished = await this.untilAvailable('list unfinished runs', () =>
      this.api.listUnfinishedRuns(this.shutdown.signal),
    );
    for (const run of unfinished) {
      if (known.has(run.id) || (run.status !== 'running' && run.status !== 'awaiting_approval')) continue;
      // Running at the registry, but this site has nothing of it: it can never finish otherwise.
      this.logger.warn('registry lists a running run this site has no trace of; reporting it failed', {
        runId: run.id,
      });
      await this.api
        .finish(
          run.id,
          { state: 'failed', reason: 'the site client lost this run (its workspace was gone after a restart)' },
          this.shutdown.signal,
        )
        .catch((e: unknown) =>
          this.logger.warn('could not report the lost run', { runId: run.id, error: coerceError(e).message }),
        );
    }
    for (const ws of workspaces) {
      this.logger.info('resuming run', { runId: ws.record.runId, phase: ws.record.phase });
      this.launch(ws);
    }
  }

  /** A run in flight that has no container any more stops counting against `concurrency`. */
  private releaseSlot(runId: number): void {
    if (!this.inFlight.has(runId) || this.finishing.has(runId)) return;
    this.finishing.add(runId);
    this.slotFreed?.();
  }

  /**
   * Runs one run in a slot. Only transient failures (registry or Docker unreachable) are retried,
   * with backoff; anything else ends the run `failed` with the reason and frees the slot, so no
   * run holds a slot forever. On shutdown the run is left in its workspace for the next start.
   */
  private launch(ws: RunWorkspace): void {
    const runId = ws.record.runId;
    const signal = this.shutdown.signal;
    const task = (async () => {
      try {
        await retry(() => this.executor.execute(ws), {
          baseMs: 2000,
          capMs: this.config.poll.maxBackoffMs,
          signal,
          retryable: isTransientError,
          onRetry: (e, _attempt, delay) =>
            this.logger.warn('run step failed for a transient reason; will retry', {
              runId,
              phase: ws.record.phase,
              error: coerceError(e).message,
              retryInMs: delay,
            }),
        });
      } catch (e) {
        if (signal.aborted) return;
        await this.failRun(ws, e);
      }
    })().finally(() => {
      this.inFlight.delete(runId);
      this.finishing.delete(runId);
      this.slotFreed?.();
    });
    this.inFlight.set(runId, task);
  }

  /**
   * Ends a run this site cannot carry on with: reports it failed with the reason (retrying only
   * while the registry is unreachable), removes its container and its workspace. The executor
   * gives up on such runs itself; this is the loop's own guarantee for anything that still escapes
   * it (a failure while giving up, a bug), so that no run holds a slot forever.
   */
  private async failRun(ws: RunWorkspace, error: unknown): Promise<void> {
    const { runId } = ws.record;
    const message = coerceError(error).message;
    const reason = `the site could not carry on with this run: ${message}`.slice(0, 1000);
    this.logger.error('run failed at the site; reporting it failed', { runId, phase: ws.record.phase, error: message });
    this.audit.info('run failed at the site', { event: 'run_failed_at_site', runId, reason });
    if (ws.record.containerId && !this.config.keepOnFailure)
      await this.engine
        .remove(ws.record.containerId)
        .catch((e: unknown) =>
          this.logger.warn('could not remove container', { runId, error: coerceError(e).message }),
        );
    try {
      await retry(
        () => this.api.finish(runId, { state: 'failed', reason, digest: ws.record.digest }, this.shutdown.signal),
        {
          baseMs: 500,
          capMs: this.config.poll.maxBackoffMs,
          signal: this.shutdown.signal,
          retryable: (e) => e instanceof RegistryUnavailableError,
        },
      );
    } catch (e) {
      if (this.shutdown.signal.aborted) return; // the workspace stays: the next start tries again
      // Refused (e.g. 409, the run already ended at the registry): nothing more to tell it.
      this.logger.warn('registry refused the failure report', { runId, error: coerceError(e).message });
    }
    await ws.remove();
  }

  private async pollLoop(): Promise<void> {
    const signal = this.shutdown.signal;
    let failures = 0;
    let drained = false;
    while (!signal.aborted) {
      if (this.inFlight.size - this.finishing.size >= this.config.concurrency) {
        this.states.to('full');
        await new Promise<void>((resolve) => (this.slotFreed = resolve));
        this.slotFreed = null;
        continue;
      }
      const schedule = this.config.poll.schedule;
      if (schedule.kind === 'cron' && drained) {
        this.states.to('idle');
        await new Promise<void>((resolve) => (this.cronTick = resolve));
        this.cronTick = null;
        drained = false;
        continue;
      }
      if (signal.aborted) break;
      this.states.to('polling');
      const wait = schedule.kind === 'cron' ? 0 : this.config.poll.longPollSeconds;
      try {
        const run = await this.api.claimNext(wait, signal);
        if (failures > 0) this.logger.info('registry reachable again', { afterFailures: failures });
        failures = 0;
        if (!run) {
          drained = true;
          if (schedule.kind === 'interval' && wait === 0) {
            this.states.to('idle');
            await sleep(schedule.ms, signal);
          }
          continue;
        }
        if (this.inFlight.has(run.id)) {
          // Handed out again after its lease ran out while this client was still starting it:
          // the executor already working on it will run it; a second one would run it twice.
          this.logger.warn('run handed out again while this client still works on it; ignoring the repeat', {
            runId: run.id,
            attempt: run.attempt,
          });
          continue;
        }
        this.logger.info('run received', { runId: run.id, taskId: run.taskId, image: run.image, attempt: run.attempt });
        this.audit.info('run received', {
          event: 'run_received',
          runId: run.id,
          taskId: run.taskId,
          image: run.image,
          attempt: run.attempt,
          postedBy: run.postedBy ?? null,
        });
        const [uid, gid] = this.config.containerUser.split(':').map(Number) as [number, number];
        // A sealed config is opened (and checked) first; a run that cannot be opened fails with the reason.
        const prepared = await this.sealing.prepare(run);
        const ws = RunWorkspace.create(this.config.workDir, this.site, prepared.run, uid, gid, this.diskPool);
        if (prepared.failure) {
          this.logger.warn('sealed run cannot be opened', { runId: run.id, reason: prepared.failure });
          await ws.update({
            phase: 'ended',
            outcome: { state: 'failed', exitCode: null, reason: prepared.failure, durationMs: null },
          });
        }
        this.launch(ws);
      } catch (e) {
        if (signal.aborted) break;
        failures++;
        const delay = backoffDelay(failures, { baseMs: 500, capMs: this.config.poll.maxBackoffMs });
        if (failures === 1) {
          if (e instanceof RegistryRefusedError)
            this.logger.error('registry refused the poll (is the site disabled or its key revoked?)', {
              status: e.status,
              message: e.message,
            });
          else if (e instanceof RegistryUnavailableError)
            this.logger.warn('registry unavailable; backing off', { error: e.message });
          else this.logger.error('poll failed', { error: coerceError(e).message });
        }
        this.states.to('backing-off');
        try {
          await sleep(delay, signal);
        } catch (aborted) {
          if (isAbortError(aborted) || signal.aborted) break;
          throw aborted;
        }
      }
    }
  }

  /** Retries `fn` while the registry is unavailable (start-up must survive a registry that is down). */
  private untilAvailable<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return retry(fn, {
      baseMs: 500,
      capMs: this.config.poll.maxBackoffMs,
      signal: this.shutdown.signal,
      retryable: (e) => e instanceof RegistryUnavailableError,
      onRetry: (e, attempt) => {
        if (attempt === 0)
          this.logger.warn(`registry unavailable; will keep trying to ${what}`, { error: coerceError(e).message });
      },
    });
  }
}

/** Whether `work` settled within `ms` (its outcome is ignored); the timer never keeps the process alive. */
async function within(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
    timer.unref();
  });
  try {
    return await Promise.race([
      work.then(
        () => true,
        () => true,
      ),
      expired,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
