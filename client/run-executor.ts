import crypto from 'node:crypto';
import type { Readable } from 'node:stream';
import { CONTAINER_ENV, CONTAINER_LABELS, CONTAINER_PATHS } from '../shared/container-contract.js';
import { coerceError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { IMAGE_REFERENCE_MAX_LENGTH, IMAGE_REFERENCE_PATTERN, isDigestPinned } from '../shared/names.js';
import type { FinishReport, ProgressReport } from '../shared/types.js';
import type { ClientConfig } from './config.js';
import type { ContainerEngine } from './container-engine.js';
import type { ContainerNetworking } from './container-network.js';
import { DockerUnavailableError, PermanentRunError, RegistryRefusedError, RegistryUnavailableError } from './errors.js';
import { LogForwarder } from './log-forwarder.js';
import { filesystemUsage, folderUsage, openForUpload, scanOutput } from './output-files.js';
import type { SiteGovernance } from './policy/site-governance.js';
import { ProgressReader } from './progress-reader.js';
import type { SiteRegistryApi } from './registry-api.js';
import type { DiskSpec, RunOutcome, RunWorkspace } from './run-workspace.js';
import { retry, sleep } from '../shared/abortable.js';

export type { ContainerNetworking };

export interface ExecutorDeps {
  api: SiteRegistryApi;
  engine: ContainerEngine;
  config: ClientConfig;
  site: string;
  networking: ContainerNetworking;
  logger: Logger;
  audit: Logger;
  /** The site's policy hooks (client/policy); none: no policy beyond the allowlist. */
  governance?: SiteGovernance;
  /** Aborts when the client shuts down: stop following, leave containers and workspaces for the next start. */
  shutdown: AbortSignal;
  /** Sends a run's TTP outbox to its TTP (and out of the output folder); returns a failure reason or null. */
  outbox?: { deliver(ws: RunWorkspace, log: Logger, signal: AbortSignal): Promise<string | null> };
  /** Told when a run is reported and its container removed: only its workspace's removal is left. */
  onReported?: (runId: number) => void;
  /** Told when a run's container has started: its start's own work is done (the disk pool refills then). */
  onContainerStarted?: (runId: number) => void;
}

const imagePattern = new RegExp(IMAGE_REFERENCE_PATTERN);
const WATCH_INTERVAL_MS = 500;
/** Digest-pinned images whose inspection a client keeps (the oldest goes first). */
const PINNED_IMAGES_KEPT = 256;
const DOCKER_RETRIES = 4;
/**
 * Executions of one run that may end in a transient error (Docker or the registry unavailable)
 * before the run is failed anyway: no run holds a concurrency slot forever.
 */
export const MAX_FAILED_ATTEMPTS = 8;

type KillReason = { kind: 'cancel' } | { kind: 'timeout' } | { kind: 'limit'; reason: string };

/** Errors that may go away by themselves; anything else is permanent for the run it happened in. */
function isTransient(e: unknown): boolean {
  return e instanceof DockerUnavailableError || e instanceof RegistryUnavailableError;
}

/** The disk every run of this site gets (its limits come from the site's config). */
export function runDiskSpec(config: Pick<ClientConfig, 'limits' | 'containerUser'>): DiskSpec {
  const { limits, containerUser } = config;
  const [uid, gid] = containerUser.split(':').map(Number) as [number, number];
  // Folders are inodes too: room for as many folders as files, plus the two writable folders.
  return {
    mode: limits.disk,
    bytes: limits.outputBytes + limits.progressBytes,
    inodes: 2 * limits.outputFiles + 64,
    uid,
    gid,
  };
}

/** A short, stable identity of the registry a run came from. */
export function registryLabel(registryUrl: string): string {
  return crypto.createHash('sha256').update(registryUrl.replace(/\/+$/, '')).digest('hex').slice(0, 16);
}

/**
 * What is still under way when the container's outcome is known: `logged`, the log's drain and
 * last chunk and the last progress (never rejects; the finish waits for it, so the researcher
 * who sees the run ended has its whole log), and `saved`, the 'ended' save after it (the
 * container may go only once it is on disk).
 */
interface Ending {
  logged: Promise<unknown>;
  saved: Promise<void>;
}
const DONE: Ending = { logged: Promise.resolve(), saved: Promise.resolve() };

/** The container decideAndStart made while the registry recorded the start, or why it could not. */
type Created = { id: string; error: null } | { id: null; error: Error };

/** Thrown inside the executor when the client is shutting down mid-step. */
class ShutdownInterrupt extends Error {
  override readonly name = 'ShutdownInterrupt';
}

/**
 * Takes one run from wherever its workspace says it is to the end: decide, start, pull, run,
 * follow, collect, upload, report. Every step is safe to resume after a crash.
 */
export class RunExecutor {
  constructor(private readonly deps: ExecutorDeps) {}

  /**
   * Resolves when the run is over at this site (reported and its workspace removed), or left for
   * the next start on shutdown. Rejects only with a transient error (Docker or the registry
   * unavailable), and at most {@link MAX_FAILED_ATTEMPTS} times per run, counted across restarts:
   * any other error ends the run here as `failed`, with the error as its reason.
   */
  async execute(ws: RunWorkspace): Promise<void> {
    const log = this.deps.logger.child({ runId: ws.record.runId, taskId: ws.record.taskId });
    // What is still under way when this execution has just ended the container (see Ending).
    let ending: Ending = DONE;
    try {
      let created: Created | null = null;
      if (ws.record.phase === 'claimed') created = await this.decideAndStart(ws, log);
      if (ws.record.phase === 'started') ending = await this.runContainer(ws, log, created);
      if (ws.record.phase === 'ended') await this.deliver(ws, log, ending);
    } catch (e) {
      // Never leave a save running behind this execution's back (the next one may write too).
      await Promise.allSettled([ending.logged, ending.saved]);
      if (e instanceof ShutdownInterrupt || this.deps.shutdown.aborted) {
        log.info('run left for the next start of the client', { phase: ws.record.phase });
        // No container can be using the run's disk: unmount it (the next start mounts it again).
        // One that may still run keeps it mounted: the image must never be mounted twice.
        if (ws.record.phase === 'ended' || (ws.record.phase === 'started' && !ws.record.startedAtMs))
          await ws
            .unmountDisk()
            .catch((err: unknown) => log.warn('could not unmount the run disk', { error: coerceError(err).message }));
        return;
      }
      const failures = (ws.record.failedAttempts ?? 0) + 1;
      await ws.update({ failedAttempts: failures });
      let cancelled = false;
      if (isTransient(e) && failures < MAX_FAILED_ATTEMPTS) {
        // Still worth retrying, unless the researcher cancelled it (or it ended) meanwhile: then
        // the slot is freed now rather than after the remaining attempts.
        const view = await this.deps.api.getRun(ws.record.runId).catch(() => null);
        cancelled = view !== null && (view.cancelRequested || !['assigned', 'running'].includes(view.status));
        if (!cancelled) throw e;
      }
      try {
        await this.giveUp(ws, log, coerceError(e), failures, cancelled);
      } catch (inner) {
        if (inner instanceof ShutdownInterrupt || this.deps.shutdown.aborted) return;
        throw inner;
      }
    } finally {
      if (ws.record.phase !== 'claimed' && ws.record.phase !== 'started') this.releaseSparql(ws.record.runId);
    }
    if (ws.record.phase === 'reported') {
      // Reported: the researcher has the result. The container (exited: it runs nothing and its
      // network slot is free) goes now, off the researcher's path; the site client has counted
      // the run's concurrency slot free since the report went out (SiteRegistryApi.onFinishing).
      // A client killed before this removes it on its next start ('reported' with an id).
      await this.removeContainer(ws, log);
      this.deps.onReported?.(ws.record.runId);
      await this.removeWorkspace(ws, log);
    }
  }

  /**
   * Removes the run's container, if it has one left, unless the site keeps failed ones for
   * inspection. Never rejects: a container that cannot be removed now is one of an unknown run
   * at the next start, which removes it then.
   */
  private async removeContainer(ws: RunWorkspace, log: Logger): Promise<void> {
    const id = ws.record.containerId;
    if (!id) return;
    const outcome = ws.record.outcome;
    if (this.deps.config.keepOnFailure && outcome && outcome.state !== 'completed') {
      log.info('keeping the failed container for inspection', { containerId: id });
      return;
    }
    await this.deps.engine
      .remove(id)
      .catch((e: unknown) => log.warn('could not remove container', { error: coerceError(e).message }));
    // In memory only: gone now; a restart that finds the id on disk removes nothing (404).
    ws.set({ containerId: null });
  }

  /**
   * Ends a run that hit an error that will not go away: the container is removed, the registry
   * is told `failed` with the reason (no files are sent), and the workspace goes.
   */
  private async giveUp(
    ws: RunWorkspace,
    log: Logger,
    error: Error,
    attempts: number,
    cancelled = false,
  ): Promise<void> {
    const runId = ws.record.runId;
    const reason = cancelled
      ? 'cancelled by the researcher'
      : `the site could not ${ws.record.phase === 'ended' ? 'deliver' : 'run'} this run: ${error.message}`.slice(
          0,
          2000,
        );
    log.error('run failed for good', { phase: ws.record.phase, attempts, error: error.message });
    if (ws.record.containerId)
      await this.deps.engine
        .remove(ws.record.containerId)
        .catch((e: unknown) => log.warn('could not remove container', { error: coerceError(e).message }));
    const report: FinishReport = {
      state: cancelled
        ? 'cancelled'
        : ws.record.outcome && ws.record.outcome.state !== 'completed'
          ? ws.record.outcome.state
          : 'failed',
      exitCode: ws.record.outcome?.exitCode ?? null,
      reason: ws.record.outcome?.reason ? `${ws.record.outcome.reason}; ${reason}` : reason,
      digest: ws.record.digest,
      durationMs: ws.record.outcome?.durationMs ?? null,
    };
    try {
      await this.retrying('report the failure', () => this.deps.api.finish(runId, report, this.deps.shutdown));
    } catch (e) {
      if (!(e instanceof RegistryRefusedError)) throw e;
      log.warn('registry refused the failure report', { status: e.status, message: e.message });
    }
    this.deps.audit.info('run failed at the site', { event: 'run_gave_up', runId, reason });
    await ws.update({ phase: 'reported' });
  }

  private async removeWorkspace(ws: RunWorkspace, log: Logger): Promise<void> {
    try {
      await ws.remove();
    } catch (e) {
      // Reported already: the slot is free either way; the next start tries the removal again.
      log.error('could not remove the run workspace', { dir: ws.dir, error: coerceError(e).message });
    }
  }

  private releaseSparql(runId: number): void {
    this.sparqlReleases.get(runId)?.();
    this.sparqlReleases.delete(runId);
  }

  private diskSpec(): DiskSpec {
    return runDiskSpec(this.deps.config);
  }

  /**
   * Decides whether the site runs the run and has the registry record its start. The container
   * is made (image, disk, create, its id saved) while POST /start is in flight: a created
   * container runs nothing, and it is started (runContainer) only once the registry has the start.
   * Returns that container, or what went wrong making it, for runContainer; null when there is
   * none (refused, dropped, or one an earlier process made, which runContainer finds itself).
   */
  private async decideAndStart(ws: RunWorkspace, log: Logger): Promise<Created | null> {
    const { image, runId } = ws.record;
    const valid = image.length <= IMAGE_REFERENCE_MAX_LENGTH && imagePattern.test(image);
    let decision = valid
      ? this.deps.config.allowlist.check(image)
      : { allowed: false, reason: 'not a valid image reference' };
    // Site governance (client/policy): who may ask and signed digests, before anything is pulled.
    if (decision.allowed && this.deps.governance) {
      const verdict = await this.deps.governance.beforePull(ws);
      if (!verdict.allowed) decision = verdict;
    }
    this.deps.audit.info('image decision', {
      event: 'image_decision',
      runId,
      taskId: ws.record.taskId,
      image,
      allowed: decision.allowed,
      reason: decision.reason,
    });
    if (!decision.allowed) {
      log.info('image refused', { image, reason: decision.reason });
      await ws.update({
        phase: 'ended',
        outcome: {
          state: 'rejected',
          exitCode: null,
          reason: `refused by site ${this.deps.site}: ${decision.reason}`,
          durationMs: null,
        },
      });
      return null;
    }
    // A container id in the record: an earlier process made the container (and maybe started it,
    // once the registry had the start). runContainer takes it from there; none is made here.
    const earlier = ws.record.containerId !== null;
    const making: Promise<Created | null> | null = earlier
      ? null
      : this.makeContainer(ws, log, 'fresh').then(
          (id) => (id === null ? null : { id, error: null }),
          (e: unknown) => ({ id: null, error: coerceError(e) }),
        );
    let refused: RegistryRefusedError;
    try {
      await this.retrying('start the run', () => this.deps.api.start(runId, this.deps.shutdown));
      const created = await making;
      ws.set({ phase: 'started' }); // persisted with the outcome; a restart asks the registry again
      return created;
    } catch (e) {
      // Whatever happens next, the container being made is finished with first.
      await making;
      if (!(e instanceof RegistryRefusedError)) throw e;
      refused = e;
    }
    // One client process serves a site, so a run that is already running is one this client
    // started before it crashed (the registry had the start, the workspace not yet), or one whose
    // container an earlier process made and may have started: it is followed, and a cancel
    // requested meanwhile is honoured there, with the container's own outcome.
    const view = await this.deps.api.getRun(runId, this.deps.shutdown).catch(() => null);
    if (refused.status === 409 && view?.status === 'running' && (!view.cancelRequested || earlier)) {
      log.info('run was already started by this site before a restart; continuing');
      await ws.update({ phase: 'started' });
      return making ? await making : null;
    }
    // Cancelled or ended meanwhile: not ours to run any more. A container made for it goes.
    log.info('registry refused to start the run; dropping it', {
      status: refused.status,
      code: refused.code,
      message: refused.message,
    });
    this.deps.audit.info('run dropped', { event: 'run_dropped', runId, reason: refused.message });
    if (!ws.record.containerId) {
      // Made by an earlier process that died before it saved the id: found by its name.
      const holder = await this.deps.engine.inspect(ws.record.containerName).catch(() => null);
      if (holder && this.belongsToRun(holder.labels, ws) && holder.startedAt === null)
        ws.set({ containerId: holder.id });
    }
    await this.removeContainer(ws, log);
    this.releaseSparql(runId);
    await ws.update({ phase: 'reported', containerId: null });
    return null;
  }

  /**
   * Everything before the container may start: the network check, the image (pulled if the
   * policy says so), the run's disk, the container, and its id saved, which is the one write
   * before it may start (with it: the image, the disk and the SPARQL token). Returns the
   * container's id; null (fresh only) when a container of this run that has already started
   * holds its name: never made again, runContainer adopts it.
   *
   * `fresh`: no container was looked for under the run's name; one found there when the create
   * fails on the name is dealt with as runContainer would have (removed if it never started).
   * `checked`: runContainer looked first and found none; only a create that reached Docker
   * before an error can have left one, which is ours to take.
   */
  private async makeContainer(ws: RunWorkspace, log: Logger, mode: 'fresh' | 'checked'): Promise<string | null> {
    const { engine } = this.deps;
    // The host firewall's rules (gateway mode) are looked at while the image, the disk and the
    // container are made: a created container runs nothing, and none is started, nor its id
    // saved, unless they are in place (fail closed).
    const checking = (async () => (await this.deps.networking.check?.()) ?? null)().then(
      (refusal) => ({ refusal, error: null }),
      (e: unknown) => ({ refusal: null, error: coerceError(e) }),
    );
    let cachedImage = false;
    await this.retryingDocker('prepare the image', log, async () => {
      cachedImage = await this.prepareImage(ws, log);
    });
    await ws.prepareDisk(this.diskSpec());
    let attempts = 0;
    let taken: 'started' | null = null;
    const id = await this.retryingDocker('create the container', log, async () => {
      // A create that reached Docker before an error still left a container under our name.
      if (attempts++ > 0 && mode === 'checked') {
        const existing = await engine.inspect(ws.record.containerName);
        if (existing && this.belongsToRun(existing.labels, ws)) return existing.id;
        if (existing) await engine.remove(existing.id);
      }
      try {
        return await this.createContainer(ws);
      } catch (e) {
        if (cachedImage && e instanceof PermanentRunError && /no such image/i.test(e.message)) {
          // Removed from the site since it was checked: look again (pull it if the policy says so).
          cachedImage = false;
          this.pinnedImages.delete(ws.record.image);
          await this.prepareImage(ws, log);
          return this.createContainer(ws);
        }
        if (!(e instanceof PermanentRunError) || mode !== 'fresh') throw e;
        // Is it the name? Only then is there something to do (and the look costs nothing before).
        const holder = await engine.inspect(ws.record.containerName);
        if (!holder) throw e;
        if (this.belongsToRun(holder.labels, ws) && holder.startedAt !== null) {
          taken = 'started';
          return holder.id;
        }
        log.info("removing a container that holds this run's name and never ran for it", {
          containerId: holder.id.slice(0, 12),
          labels: holder.labels,
        });
        await engine.remove(holder.id);
        return this.createContainer(ws);
      }
    });
    if (taken) {
      this.releaseSparql(ws.record.runId);
      return null;
    }
    const checked = await checking;
    if (checked.refusal !== null || checked.error) {
      await engine
        .remove(id)
        .catch((e: unknown) => log.warn('could not remove container', { error: coerceError(e).message }));
      this.releaseSparql(ws.record.runId);
      throw checked.error ?? new PermanentRunError(checked.refusal!);
    }
    await ws.update({ containerId: id });
    return id;
  }

  /** Starts a container made (and recorded) for this run; the registry has the start. */
  private async startContainer(ws: RunWorkspace, log: Logger, id: string): Promise<void> {
    await this.retryingDocker('start the container', log, () => this.deps.engine.start(id));
    // Docker keeps the start time too: a restart takes it from there.
    ws.set({ startedAtMs: Date.now() });
    this.deps.onContainerStarted?.(ws.record.runId);
    this.deps.audit.info('run started', {
      event: 'run_started',
      runId: ws.record.runId,
      image: ws.record.image,
      digest: ws.record.digest,
      containerId: id,
    });
    log.info('container started', { containerId: id.slice(0, 12), digest: ws.record.digest });
  }

  /**
   * Starts the run's container (made by decideAndStart, made here, or found after a restart) and
   * follows it to its end. Returns the 'ended' save, which runs while the output is delivered.
   */
  private async runContainer(ws: RunWorkspace, log: Logger, created: Created | null): Promise<Ending> {
    const { engine } = this.deps;
    let state = created
      ? null
      : ws.record.containerId
        ? await engine.inspect(ws.record.containerId)
        : await engine.inspect(ws.record.containerName);
    if (state && this.belongsToRun(state.labels, ws) && !ws.record.containerId && state.startedAt === null) {
      // Created just before a crash, before its id (and its SPARQL token) were written: it never
      // ran, and its token is gone. Made again below, with a token this client knows.
      log.info('removing a container created before a restart that never started', {
        containerId: state.id.slice(0, 12),
      });
      await engine.remove(state.id);
      state = null;
    }
    if (state && !this.belongsToRun(state.labels, ws)) {
      // Same name, other run (an earlier registry numbered its runs alike): never adopt it.
      log.warn("removing a stale container that holds this run's name", {
        containerId: state.id.slice(0, 12),
        labels: state.labels,
      });
      await engine.remove(state.id);
      state = null;
    }
    if (!state) {
      try {
        if (created?.error) throw created.error;
        const id = created?.id ?? (await this.makeContainer(ws, log, 'checked'));
        if (id === null) throw new Error('no container was made for the run'); // 'checked' always makes one
        await this.startContainer(ws, log, id);
      } catch (e) {
        if ((e instanceof PermanentRunError || e instanceof DockerUnavailableError) && !this.deps.shutdown.aborted) {
          log.warn('run could not start', { error: e.message });
          // A container created but never started holds a gateway token and a name: free both,
          // the container first (a start that failed late may have started it, and its network
          // slot must not go to the next run while it lives).
          if (ws.record.containerId)
            await engine
              .remove(ws.record.containerId)
              .catch((err: unknown) => log.warn('could not remove container', { error: coerceError(err).message }));
          this.releaseSparql(ws.record.runId);
          await ws.update({
            phase: 'ended',
            outcome: { state: 'failed', exitCode: null, reason: e.message, durationMs: null },
          });
          return DONE;
        }
        throw e;
      }
    } else {
      // After a reboot the run's disk is no longer mounted: mount it again before anything reads it.
      await ws.prepareDisk(this.diskSpec());
      if (!state.running && state.startedAt === null) {
        // Created, then the client died before starting it: start it now (it has never run).
        await engine.start(state.id);
        this.deps.audit.info('run started', {
          event: 'run_started',
          runId: ws.record.runId,
          image: ws.record.image,
          digest: ws.record.digest,
          containerId: state.id,
        });
        state = (await engine.inspect(state.id)) ?? state;
      }
      await ws.update({
        containerId: state.id,
        startedAtMs: ws.record.startedAtMs ?? (state.startedAt ? Date.parse(state.startedAt) : Date.now()),
      });
      if (ws.record.sparqlToken && !this.sparqlReleases.has(ws.record.runId)) {
        // The container still holds its old SPARQL URL: honour its token again.
        this.sparqlReleases.set(
          ws.record.runId,
          this.deps.networking.sparqlFor(ws.record.runId, ws.record.sparqlToken).release,
        );
      }
      log.info('following a container found after a restart', {
        containerId: state.id.slice(0, 12),
        running: state.running,
      });
    }
    const { outcome, logged } = await this.follow(ws, log);
    // The outcome is known: delivery starts now, while the log drains and its last chunk goes.
    // The 'ended' save waits for that chunk (it persists how far the log went, so that a crash
    // after it sends nothing twice) and runs while the output is uploaded and the finish sent.
    // A crash before it finds 'started' and follows the exited container again, as before; the
    // container is removed only after the 'reported' save, which waits for this one.
    ws.set({ phase: 'ended', outcome });
    const saved = logged.then(() => ws.update({}));
    saved.catch(() => undefined); // awaited by deliver (or execute); never unhandled meanwhile
    return { logged, saved };
  }

  private belongsToRun(labels: Record<string, string>, ws: RunWorkspace): boolean {
    return (
      labels[CONTAINER_LABELS.runId] === String(ws.record.runId) &&
      labels[CONTAINER_LABELS.taskId] === String(ws.record.taskId) &&
      labels[CONTAINER_LABELS.registry] === registryLabel(this.deps.config.registryUrl)
    );
  }

  /**
   * Sets the run's image id and digest, pulling if the policy says so. Returns true when they
   * came from {@link pinnedImages} without asking Docker (makeContainer looks again if the image
   * has gone since).
   */
  private async prepareImage(ws: RunWorkspace, log: Logger): Promise<boolean> {
    const { engine, config } = this.deps;
    const image = ws.record.image;
    const known = isDigestPinned(image) ? this.pinnedImages.get(image) : undefined;
    if (known) {
      ws.set(known);
      return true;
    }
    let info = await engine.inspectImage(image);
    // An image named by its digest cannot have changed: "always" need not pull it again when it is
    // here (a pull was 20–40 ms of every run; the digest is still checked below).
    const pull =
      config.pullPolicy === 'always'
        ? !(info && isDigestPinned(image))
        : config.pullPolicy === 'if-not-present' && !info;
    if (pull) {
      const started = Date.now();
      await engine.pull(image, this.deps.shutdown);
      log.info('image pulled', { image, ms: Date.now() - started });
      info = await engine.inspectImage(image);
      if (!info) throw new PermanentRunError(`image ${image} is not present after pulling`);
    } else if (!info) {
      throw new PermanentRunError(`image ${image} is not present at the site and pullPolicy is "never"`);
    }
    const repo = image.replace(/@sha256:[a-f0-9]{64}$/, '').replace(/:[A-Za-z0-9_][A-Za-z0-9_.-]*$/, '');
    let digest = info.repoDigests.find((d) => d.startsWith(`${repo}@`)) ?? info.repoDigests[0] ?? null;
    if (isDigestPinned(image)) {
      const pinned = image.slice(image.lastIndexOf('@') + 1);
      if (!info.repoDigests.some((d) => d.endsWith(`@${pinned}`)))
        throw new PermanentRunError(`image ${image} does not have the pinned digest`);
      digest = `${repo}@${pinned}`;
      if (this.pinnedImages.size >= PINNED_IMAGES_KEPT)
        this.pinnedImages.delete(this.pinnedImages.keys().next().value!);
      this.pinnedImages.set(image, { imageId: info.id, digest });
    }
    ws.set({ imageId: info.id, digest });
    return false;
  }

  /**
   * Digest-pinned images found present and checked against their digest, by reference: such an
   * image cannot change, so it is inspected once rather than at every run (an inspect was 1.5–3 ms
   * of each run's path). One removed since makes the create fail with "No such image": the entry
   * goes and the image is looked at (and pulled) again.
   */
  private readonly pinnedImages = new Map<string, { imageId: string; digest: string }>();

  private async createContainer(ws: RunWorkspace): Promise<string> {
    const { config, site, networking } = this.deps;
    this.releaseSparql(ws.record.runId);
    const sparql = networking.sparqlFor(ws.record.runId, null);
    ws.set({ sparqlToken: sparql.token });
    this.sparqlReleases.set(ws.record.runId, sparql.release);
    // Gateway mode may place the run in a prepared network namespace (client/network-slots.ts).
    const placement = (await networking.placeRun?.(ws.record.runId)) ?? {
      networkMode: networking.networkMode,
      dns: networking.dns ?? [],
    };
    return this.deps.engine.create({
      name: ws.record.containerName,
      imageId: ws.record.imageId!,
      env: {
        [CONTAINER_ENV.sparqlEndpoint]: sparql.url,
        [CONTAINER_ENV.taskId]: String(ws.record.taskId),
        [CONTAINER_ENV.runId]: String(ws.record.runId),
        [CONTAINER_ENV.configFile]: CONTAINER_PATHS.configFile,
        [CONTAINER_ENV.outputDir]: CONTAINER_PATHS.outputDir,
        [CONTAINER_ENV.progressFile]: CONTAINER_PATHS.progressFile,
        [CONTAINER_ENV.ttpOutbox]: CONTAINER_PATHS.ttpOutbox,
      },
      labels: {
        [CONTAINER_LABELS.managedBy]: 'pht-client',
        [CONTAINER_LABELS.site]: site,
        [CONTAINER_LABELS.runId]: String(ws.record.runId),
        [CONTAINER_LABELS.taskId]: String(ws.record.taskId),
        [CONTAINER_LABELS.attempt]: String(ws.record.attempt),
        [CONTAINER_LABELS.registry]: registryLabel(config.registryUrl),
      },
      user: config.containerUser,
      mounts: [
        { host: ws.configFile, container: CONTAINER_PATHS.configFile, readOnly: true },
        { host: ws.outputDir, container: CONTAINER_PATHS.outputDir, readOnly: false },
        { host: ws.progressDir, container: CONTAINER_PATHS.progressFile.replace(/\/[^/]+$/, ''), readOnly: false },
      ],
      networkMode: placement.networkMode,
      dns: placement.dns,
      memoryBytes: config.limits.memoryBytes,
      nanoCpus: config.limits.nanoCpus,
      pids: config.limits.pids,
      tmpfsBytes: config.limits.tmpfsBytes,
    });
  }

  private readonly sparqlReleases = new Map<number, () => void>();

  /**
   * Streams logs and progress, honours cancel, timeout and the output cap; returns the outcome
   * and the sends still under way when it is known (the log's last chunk, the last progress),
   * which never reject.
   */
  private async follow(ws: RunWorkspace, log: Logger): Promise<{ outcome: RunOutcome; logged: Promise<unknown> }> {
    const { engine, config, api } = this.deps;
    const containerId = ws.record.containerId!;
    const runId = ws.record.runId;
    const forwarder = new LogForwarder(
      api,
      runId,
      config.limits.logBytes,
      log,
      // Kept in memory; persisted after each periodic flush below (at most once a second) and by
      // the 'ended' write: the final flush costs no write of its own.
      () => ws.set({ logForwardedUntil: Math.floor(Date.now() / 1000) }),
      this.deps.shutdown,
    );
    if (ws.record.logForwardedUntil > 0) forwarder.note('site client restarted; log resumes here');
    let killedFor: KillReason | null = null;
    let stopped = false;
    const kill = async (reason: KillReason) => {
      // The first reason is the run's; a stop that failed is tried again on the next tick, so a
      // container past its timeout can never keep its slot because one stop call failed.
      if (stopped) return;
      if (!killedFor) {
        killedFor = reason;
        log.info('stopping container', { reason: reason.kind });
      }
      await engine.stop(containerId, (killedFor as KillReason).kind === 'cancel' ? 2 : 0).then(
        () => (stopped = true),
        (e: unknown) => log.warn('stop failed; will try again', { error: coerceError(e).message }),
      );
    };

    const logStream = await engine.logs(containerId, ws.record.logForwardedUntil);
    const logsDone = new Promise<void>((resolve) => {
      logStream.on('data', (chunk: Buffer) => forwarder.write(chunk.toString('utf8')));
      logStream.on('end', resolve);
      logStream.on('error', () => resolve());
      logStream.on('close', resolve);
    });

    const progress = new ProgressReader(ws.progressFile, config.limits.progressBytes);
    let lastProgress: ProgressReport | null = null;
    // The registry said yes to the start just before the container started: the first look for a
    // cancel comes one interval after that (a container adopted after a restart is looked at now).
    let lastCancelCheck = ws.record.startedAtMs ?? 0;
    let lastFlush = Date.now();
    let persistedLogPosition = ws.record.logForwardedUntil;
    const persistLogPosition = async () => {
      if (ws.record.logForwardedUntil === persistedLogPosition) return;
      persistedLogPosition = ws.record.logForwardedUntil;
      await ws.update({});
    };
    const deadline = (ws.record.startedAtMs ?? Date.now()) + config.limits.timeoutMs;
    const watching = new AbortController();
    const watcher = (async () => {
      while (!watching.signal.aborted && !this.deps.shutdown.aborted) {
        const now = Date.now();
        if (now >= deadline) await kill({ kind: 'timeout' });
        const overLimit = await this.diskProblem(ws);
        if (overLimit) await kill({ kind: 'limit', reason: overLimit });
        const report = await progress.readLatest();
        if (progress.exceeded)
          await kill({
            kind: 'limit',
            reason: `wrote more than the site's progress limit of ${config.limits.progressBytes} bytes`,
          });
        if (report && JSON.stringify(report) !== JSON.stringify(lastProgress)) {
          lastProgress = report;
          await api
            .progress(runId, report, this.deps.shutdown)
            .catch((e: unknown) => log.debug('progress not delivered', { error: coerceError(e).message }));
        }
        if (now - lastCancelCheck >= config.poll.cancelCheckMs) {
          lastCancelCheck = now;
          const view = await api.getRun(runId, this.deps.shutdown).catch(() => null);
          if (view && (view.cancelRequested || view.status !== 'running')) await kill({ kind: 'cancel' });
        }
        if (now - lastFlush >= 1000) {
          lastFlush = now;
          await forwarder.flush();
          await persistLogPosition();
        }
        await sleep(WATCH_INTERVAL_MS, watching.signal).catch(() => undefined); // aborted: the loop ends
      }
    })();

    const exited = engine.wait(containerId).then(
      (code) => ({ code, error: null as Error | null }),
      (e: unknown) => ({ code: null, error: coerceError(e) }),
    );
    let onShutdown = () => {};
    const interrupted = new Promise<'shutdown'>((resolve) => {
      onShutdown = () => resolve('shutdown');
      if (this.deps.shutdown.aborted) resolve('shutdown');
      this.deps.shutdown.addEventListener('abort', onShutdown, { once: true });
    });
    const result = await Promise.race([exited, interrupted]);
    // One listener per run on the client-wide signal would pile up over thousands of runs.
    this.deps.shutdown.removeEventListener('abort', onShutdown);
    watching.abort();
    await watcher;
    if (result === 'shutdown') {
      logStream.destroy();
      await forwarder.flush();
      await persistLogPosition();
      throw new ShutdownInterrupt();
    }
    // The outcome is Docker's answer; the log's drain (its stream ends some milliseconds after
    // the exit) need not hold up the delivery, only the log's last chunk.
    const draining = new AbortController();
    const drained = Promise.race([logsDone, sleep(2000, draining.signal).catch(() => undefined)]).then(() => {
      draining.abort();
      logStream.destroy();
    });
    const state = await engine.inspect(containerId).catch((e: unknown) => {
      log.warn('could not inspect the ended container', { error: coerceError(e).message });
      return null;
    });
    const finalProgress = await progress.readLatest(Number.POSITIVE_INFINITY);
    const progressSent = finalProgress
      ? api.progress(runId, finalProgress, this.deps.shutdown).catch(() => undefined)
      : Promise.resolve();

    if (!killedFor) {
      // A container that filled its disk and then exited on its own still broke the limit.
      const overLimit = await this.diskProblem(ws);
      if (overLimit) killedFor = { kind: 'limit', reason: overLimit } as KillReason;
    }
    const durationMs =
      state?.startedAt && state.finishedAt
        ? Math.max(0, Date.parse(state.finishedAt) - Date.parse(state.startedAt))
        : null;
    const exitCode = state?.exitCode ?? result.code;
    const outcome = this.outcomeOf(killedFor, exitCode, state?.oomKilled ?? false, result.error);
    const logged = Promise.all([
      drained.then(() => {
        forwarder.note(`run ended: ${outcome.state}${outcome.reason ? ` (${outcome.reason})` : ''}`);
        return forwarder.flush();
      }),
      progressSent,
    ]);
    this.releaseSparql(runId);
    this.deps.audit.info('run ended', {
      event: 'run_ended',
      runId,
      state: outcome.state,
      exitCode,
      durationMs,
      digest: ws.record.digest,
    });
    return { outcome: { ...outcome, durationMs }, logged };
  }

  /** Why the run's writable folders are over a limit, or null; never blocks on the container's folder. */
  private async diskProblem(ws: RunWorkspace): Promise<string | null> {
    const { limits } = this.deps.config;
    try {
      if (ws.record.disk === 'loop-image') {
        // One statfs, whatever the container wrote: the kernel keeps the counts.
        const usage = await filesystemUsage(ws.diskDir);
        const written = usage.bytes - (ws.record.diskBaselineBytes ?? 0);
        if (usage.inodesFull || written > limits.outputBytes + limits.progressBytes)
          return `filled the site's disk limit for this run (${limits.outputBytes} bytes of output and ${limits.progressBytes} of progress, ${limits.outputFiles} files)`;
        return null;
      }
      const usage = await folderUsage(ws.diskDir, 2 * limits.outputFiles + 64);
      if (usage.bytes > limits.outputBytes + limits.progressBytes)
        return `wrote more than the site's output limit of ${limits.outputBytes} bytes`;
      if (usage.entries > 2 * limits.outputFiles + 64)
        return `wrote more than the site's limit of ${limits.outputFiles} output files`;
      return null;
    } catch {
      return null;
    }
  }

  private outcomeOf(
    killedFor: KillReason | null,
    exitCode: number | null,
    oomKilled: boolean,
    error: Error | null,
  ): Omit<RunOutcome, 'durationMs'> {
    const { limits } = this.deps.config;
    const killed = killedFor as KillReason | null;
    if (killed?.kind === 'cancel') return { state: 'cancelled', exitCode, reason: 'cancelled by the researcher' };
    if (killed?.kind === 'timeout')
      return {
        state: 'timed_out',
        exitCode,
        reason: `ran longer than the site's limit of ${limits.timeoutMs / 1000} s`,
      };
    if (killed?.kind === 'limit') return { state: 'failed', exitCode, reason: killed.reason };
    if (oomKilled)
      return {
        state: 'failed',
        exitCode,
        reason: `killed: out of memory (limit ${Math.round(limits.memoryBytes / 1048576)} MB)`,
      };
    if (error && exitCode === null)
      return { state: 'failed', exitCode: null, reason: `lost the container: ${error.message}` };
    if (exitCode === 0) return { state: 'completed', exitCode, reason: null };
    return { state: 'failed', exitCode, reason: `exit code ${exitCode}` };
  }

  /**
   * Uploads the output and reports the outcome; retries until the registry has it. The finish
   * waits for the log's last chunk (`ending.logged`), not for the container's removal (after the
   * finish, see execute) nor for the 'ended' save: a crash after the finish and before that save
   * follows the exited container again, and the registry, which has the run ended, refuses its
   * log, files and finish a second time. The 'reported' save waits for the 'ended' one.
   */
  private async deliver(ws: RunWorkspace, log: Logger, ending: Ending): Promise<void> {
    const { config, api } = this.deps;
    const outcome = ws.record.outcome!;
    const runId = ws.record.runId;
    let report: FinishReport = {
      state: outcome.state,
      exitCode: outcome.exitCode,
      reason: outcome.reason,
      digest: ws.record.digest,
      durationMs: outcome.durationMs,
    };
    let bytesSent = 0;
    // Whenever a container existed, its output goes back, however this execution came to know it.
    if (outcome.state !== 'rejected' && (ws.record.imageId || ws.record.containerId)) {
      // Mounted again after a reboot; a disk the container has just run on is mounted already.
      if (ws.record.disk && ending === DONE) await ws.prepareDisk(this.diskSpec());
      const ttpFailure = (await this.deps.outbox?.deliver(ws, log, this.deps.shutdown)) ?? null;
      if (ttpFailure && report.state === 'completed') report = { ...report, state: 'failed', reason: ttpFailure };
      const scan = await scanOutput(ws.outputDir, { maxFiles: config.limits.outputFiles });
      if (scan.overflow || scan.totalBytes > config.limits.outputBytes) {
        const counted = scan.overflow ? `more than ${scan.files.length} files` : `${scan.files.length} files`;
        const over = `output exceeds the site's limit (${counted}, ${scan.totalBytes} bytes; at most ${config.limits.outputFiles} files, ${config.limits.outputBytes} bytes); nothing was sent`;
        report = {
          ...report,
          state: outcome.state === 'completed' ? 'failed' : outcome.state,
          // A run that already failed keeps its own reason first (e.g. the disk limit it hit).
          reason: outcome.state !== 'completed' && outcome.reason ? `${outcome.reason}; ${over}` : over,
        };
      } else {
        for (const skipped of scan.skipped) log.warn('output entry not sent', { entry: skipped });
        if (scan.skippedCount > scan.skipped.length)
          log.warn('more output entries not sent', { count: scan.skippedCount - scan.skipped.length });
        if (scan.skippedCount > 0)
          this.deps.audit.info('output entries not sent', {
            event: 'output_skipped',
            runId,
            count: scan.skippedCount,
            examples: scan.skipped.slice(0, 10),
          });
        // Site governance (client/policy): the output policy and the officer's review, before any byte leaves.
        const gate = this.deps.governance
          ? await this.deps.governance.beforeUpload(ws, scan.files, scan.totalBytes, (f) =>
              openForUpload(ws.outputDir, f),
            )
          : ({ action: 'send' } as const);
        if (gate.action === 'hold') {
          // Resumed when the officer decides; the workspace keeps everything, the slot goes.
          await ending.logged;
          await ending.saved;
          await this.removeContainer(ws, log);
          return;
        }
        if (gate.action === 'refuse') report = { ...report, state: 'rejected', reason: gate.reason };
        try {
          for (const file of gate.action === 'send' ? scan.files : []) {
            const sent = await this.retrying(`upload ${file.name}`, async () => {
              let body: Readable;
              try {
                body = await openForUpload(ws.outputDir, file);
              } catch (e) {
                // Changed since the scan (the container is gone, so only by a race): skip it.
                log.warn('output entry not sent', { entry: `${JSON.stringify(file.name)}: ${coerceError(e).message}` });
                return false;
              }
              await api.uploadFile(runId, file.name, body, file.size, this.deps.shutdown);
              return true;
            });
            if (!sent) continue;
            bytesSent += file.size;
            this.deps.audit.info('file sent', { event: 'file_sent', runId, file: file.name, bytes: file.size });
          }
        } catch (e) {
          if (!(e instanceof RegistryRefusedError)) throw e;
          if (e.status === 413)
            report = { ...report, state: 'failed', reason: `the registry refused a result file: ${e.message}` };
          else log.warn('registry refused the upload', { status: e.status, message: e.message });
        }
      }
    }
    await ending.logged;
    try {
      await this.retrying('report the result', () => api.finish(runId, report, this.deps.shutdown));
    } catch (e) {
      if (!(e instanceof RegistryRefusedError)) throw e;
      // 409: the run already ended at the registry (e.g. cancelled while the site was away).
      log.warn('registry refused the result', { status: e.status, message: e.message });
    }
    this.deps.audit.info('result reported', {
      event: 'result_reported',
      runId,
      state: report.state,
      bytesSent,
      digest: report.digest ?? null,
    });
    log.info('run reported', { state: report.state, exitCode: report.exitCode ?? null, bytesSent });
    await ending.saved;
    await ws.update({ phase: 'reported' });
  }

  /**
   * Docker being unreachable is worth a few retries (a daemon restart takes seconds); after that
   * the run fails with the reason rather than hanging at the site forever.
   */
  private retryingDocker<T>(what: string, log: Logger, fn: () => Promise<T>): Promise<T> {
    return retry(fn, {
      baseMs: 1000,
      capMs: 15_000,
      maxAttempts: DOCKER_RETRIES + 1,
      signal: this.deps.shutdown,
      retryable: (e) => e instanceof DockerUnavailableError,
      onRetry: (e, attempt) =>
        log.warn(`Docker unavailable; retrying to ${what}`, { attempt: attempt + 1, error: coerceError(e).message }),
    });
  }

  /** Retries while the registry is unavailable (capped, jittered backoff); stops on shutdown. */
  private retrying<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return retry(fn, {
      baseMs: 500,
      capMs: this.deps.config.poll.maxBackoffMs,
      signal: this.deps.shutdown,
      retryable: (e) => e instanceof RegistryUnavailableError,
      onRetry: (e, attempt) => {
        if (attempt === 0)
          this.deps.logger.warn(`registry unavailable; will keep trying to ${what}`, { error: coerceError(e).message });
      },
    });
  }
}
