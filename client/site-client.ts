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
import { ensureGatewayNetwork, HostFirewall } from './container-network.js';
import { RegistryRefusedError, RegistryUnavailableError } from './errors.js';
import { SiteRegistryApi } from './registry-api.js';
import { RunExecutor, type ContainerNetworking } from './run-executor.js';
import { RunWorkspace } from './run-workspace.js';
import { backoffDelay, sleep } from './sleep.js';
import { SparqlGateway } from './sparql-gateway.js';

/** The poller's state; transitions are logged at info, each poll at debug. */
export type ClientState = 'starting' | 'idle' | 'polling' | 'running' | 'backing-off' | 'draining' | 'stopped';

export interface SiteClientOptions {
  config: ClientConfig;
  logger: Logger;
  /** For tests: a fake engine at the Docker boundary. */
  engine?: ContainerEngine;
  /** Counts runs, Docker errors and gateway queries when the metrics listener is on. */
  metrics?: ClientMetrics;
}

/**
 * The site client: recovers what a previous process left, then polls the registry for runs and
 * executes up to `concurrency` of them at once.
 */
export class SiteClient {
  state: ClientState = 'starting';
  site = '';
  private readonly config: ClientConfig;
  private readonly logger: Logger;
  private readonly api: SiteRegistryApi;
  private readonly engine: ContainerEngine;
  private readonly shutdown = new AbortController();
  private readonly inFlight = new Map<number, Promise<void>>();
  private slotFreed: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  private gateway: SparqlGateway | null = null;
  private firewall: HostFirewall | null = null;
  private cronTask: { stop(): void } | null = null;
  private cronTick: (() => void) | null = null;
  private closing: Promise<void> | null = null;
  private executor!: RunExecutor;
  private audit!: Logger;
  private readonly metrics: ClientMetrics | null;

  constructor(options: SiteClientOptions) {
    this.config = options.config;
    this.logger = options.logger;
    this.api = new SiteRegistryApi(this.config.registryUrl, this.config.apiKey);
    this.metrics = options.metrics ?? null;
    this.engine =
      options.engine ?? new DockerEngine(this.config.dockerSocket, (kind) => this.metrics?.dockerError(kind));
  }

  /** Connects, prepares the network, recovers left-over runs and starts polling. */
  async start(): Promise<void> {
    this.site = (await this.untilAvailable('identify the site', () => this.api.me(this.shutdown.signal))).name;
    this.logger.info('site client starting', {
      site: this.site,
      registry: this.config.registryUrl,
      network: this.config.network.mode,
      concurrency: this.config.concurrency,
    });
    await this.engine.ping();
    this.audit = createAuditLog(this.config.auditLog, this.site);
    this.metrics?.watchAudit(this.audit);
    fs.mkdirSync(this.config.workDir, { recursive: true });
    const networking = await this.prepareNetworking();
    this.executor = new RunExecutor({
      api: this.api,
      engine: this.engine,
      config: this.config,
      site: this.site,
      networking,
      logger: this.logger,
      audit: this.audit,
      shutdown: this.shutdown.signal,
    });
    await this.recover();
    if (this.config.poll.schedule.kind === 'cron') {
      this.cronTask = cron.schedule(this.config.poll.schedule.expression, () => this.cronTick?.());
    }
    this.loop = this.pollLoop();
  }

  /** Stops polling and following; running containers and pending results wait for the next start. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.setState('draining');
      this.shutdown.abort();
      this.cronTask?.stop();
      this.cronTick?.();
      this.slotFreed?.();
      await this.loop;
      await Promise.allSettled([...this.inFlight.values()]);
      await this.gateway?.close();
      await this.firewall?.remove();
      await this.api.close();
      this.setState('stopped');
    })();
    return this.closing;
  }

  private setState(state: ClientState): void {
    if (state === this.state) return;
    this.logger.info('client state', { from: this.state, to: state });
    this.state = state;
  }

  private async prepareNetworking(): Promise<ContainerNetworking> {
    const { network, sparqlEndpoint } = this.config;
    if (network.mode !== 'gateway') {
      const url = network.sparqlEndpointForContainer ?? sparqlEndpoint;
      const mode = network.mode === 'named' ? network.name! : network.mode;
      if (network.mode === 'bridge')
        this.logger.warn('containers use the default bridge: they can reach the outside world', {});
      return { networkMode: mode, sparqlFor: () => ({ url, token: null, release: () => undefined }) };
    }
    if (!(this.engine instanceof DockerEngine)) throw new Error('gateway networking needs the real Docker engine');
    const net = await ensureGatewayNetwork(this.engine.docker, this.config, this.site);
    const gateway = new SparqlGateway({
      endpoint: sparqlEndpoint,
      allowUpdates: this.config.gateway.allowUpdates,
      maxResponseBytes: this.config.gateway.maxResponseBytes,
      queryTimeoutMs: this.config.gateway.queryTimeoutMs,
      audit: this.audit,
      logger: this.logger.child({ component: 'sparql-gateway' }),
    });
    // The same port across restarts, so containers that outlive a client restart keep their URL.
    const portFile = path.join(this.config.workDir, 'gateway-port');
    const previous = fs.existsSync(portFile) ? Number(fs.readFileSync(portFile, 'utf8')) : 0;
    try {
      await gateway.listen(net.gatewayIp, previous);
    } catch {
      await gateway.listen(net.gatewayIp, 0);
    }
    fs.writeFileSync(portFile, String(gateway.port));
    this.gateway = gateway;
    this.firewall = new HostFirewall(net, this.logger);
    await this.firewall.apply(gateway.port);
    this.logger.info('sparql gateway ready', {
      network: net.name,
      address: `${net.gatewayIp}:${gateway.port}`,
      endpoint: sparqlEndpoint,
    });
    return {
      networkMode: net.name,
      sparqlFor: (runId, token) => {
        const reg = gateway.registerRun(runId, token);
        return { url: reg.url, token: reg.token, release: () => gateway.unregisterRun(reg.token) };
      },
    };
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
      if (known.has(run.id) || run.status !== 'running') continue;
      // Running at the registry, but this site has nothing of it: it can never finish otherwise.
      this.logger.warn('registry lists a running run this site has no trace of; reporting it failed', {
        runId: run.id,
      });
      await this.api
        .finish(run.id, {
          state: 'failed',
          reason: 'the site client lost this run (its workspace was gone after a restart)',
        })
        .catch((e: unknown) =>
          this.logger.warn('could not report the lost run', { runId: run.id, error: coerceError(e).message }),
        );
    }
    for (const ws of workspaces) {
      this.logger.info('resuming run', { runId: ws.record.runId, phase: ws.record.phase });
      this.launch(ws);
    }
  }

  private launch(ws: RunWorkspace): void {
    const runId = ws.record.runId;
    const task = (async () => {
      for (let attempt = 0; !this.shutdown.signal.aborted; attempt++) {
        try {
          await this.executor.execute(ws);
          return;
        } catch (e) {
          // Not a registry outage (those are retried inside): Docker trouble or a bug. The
          // workspace holds the run's state, so trying again later loses nothing.
          const delay = backoffDelay(attempt, 2000, this.config.poll.maxBackoffMs);
          this.logger.error('run step failed; will retry', {
            runId,
            phase: ws.record.phase,
            error: coerceError(e).message,
            retryInMs: delay,
          });
          await sleep(delay, this.shutdown.signal);
        }
      }
    })().finally(() => {
      this.inFlight.delete(runId);
      this.slotFreed?.();
    });
    this.inFlight.set(runId, task);
  }

  private async pollLoop(): Promise<void> {
    const signal = this.shutdown.signal;
    let failures = 0;
    let drained = false;
    while (!signal.aborted) {
      if (this.inFlight.size >= this.config.concurrency) {
        this.setState('running');
        await new Promise<void>((resolve) => (this.slotFreed = resolve));
        this.slotFreed = null;
        continue;
      }
      const schedule = this.config.poll.schedule;
      if (schedule.kind === 'cron' && drained) {
        this.setState('idle');
        await new Promise<void>((resolve) => (this.cronTick = resolve));
        this.cronTick = null;
        drained = false;
        continue;
      }
      this.setState('polling');
      const wait = schedule.kind === 'cron' ? 0 : this.config.poll.longPollSeconds;
      try {
        const run = await this.api.claimNext(wait, signal);
        if (failures > 0) this.logger.info('registry reachable again', { afterFailures: failures });
        failures = 0;
        if (!run) {
          drained = true;
          if (schedule.kind === 'interval' && wait === 0) {
            this.setState('idle');
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
        });
        const [uid, gid] = this.config.containerUser.split(':').map(Number) as [number, number];
        this.launch(RunWorkspace.create(this.config.workDir, this.site, run, uid, gid));
      } catch (e) {
        if (signal.aborted) break;
        failures++;
        const delay = backoffDelay(failures, 500, this.config.poll.maxBackoffMs);
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
        this.setState('backing-off');
        await sleep(delay, signal);
      }
    }
  }

  /** Retries `fn` while the registry is unavailable (start-up must survive a registry that is down). */
  private async untilAvailable<T>(what: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (e) {
        if (!(e instanceof RegistryUnavailableError) || this.shutdown.signal.aborted) throw e;
        if (attempt === 0) this.logger.warn(`registry unavailable; will keep trying to ${what}`, { error: e.message });
        await sleep(backoffDelay(attempt, 500, this.config.poll.maxBackoffMs), this.shutdown.signal);
      }
    }
  }
}
