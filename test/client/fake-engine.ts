import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import type {
  ContainerEngine,
  ContainerSpec,
  ContainerState,
  ImageInfo,
  InternalNetworkSpec,
  ManagedContainer,
  NetworkInfo,
} from '../../client/container-engine.js';
import { PermanentRunError } from '../../client/errors.js';
import { CONTAINER_LABELS, CONTAINER_PATHS } from '../../shared/container-contract.js';

interface FakeContainer {
  id: string;
  spec: ContainerSpec;
  state: 'created' | 'running' | 'exited';
  exitCode: number | null;
  startedAt: string | null;
  finishedAt: string | null;
  exited: Promise<number>;
  exit(code: number): void;
}

export interface FakeBehaviour {
  exitCode: number;
  log: string;
  files: Record<string, string>;
  /** null: runs until stopped. */
  durationMs: number | null;
  /** Called with the output folder when the container exits (to leave hostile output behind). */
  onExit?: (outputDir: string) => void;
}

/**
 * The Docker engine faked at the ContainerEngine boundary, for unit tests of the run executor's
 * crash windows. A container "runs" by writing the behaviour's files into its output mount.
 */
export class FakeEngine implements ContainerEngine {
  readonly containers = new Map<string, FakeContainer>();
  readonly images = new Map<string, ImageInfo>();
  readonly pulls: string[] = [];
  starts = 0;
  pullFailures: Error[] = [];
  /** Thrown by every logs() call while set. */
  logsFailure: Error | null = null;
  behaviour: FakeBehaviour = {
    exitCode: 0,
    log: 'hello from the fake\n',
    files: { 'result.json': '{"ok":true}' },
    durationMs: 10,
  };

  async ping(): Promise<void> {}

  /** When set, every pull waits for it (e.g. a pull that hangs until its signal aborts). */
  pullGate: ((signal?: AbortSignal) => Promise<void>) | null = null;

  async pull(image: string, signal?: AbortSignal): Promise<void> {
    this.pulls.push(image);
    await this.pullGate?.(signal);
    const failure = this.pullFailures.shift();
    if (failure) throw failure;
    const repo = image.replace(/:[^/:]+$/, '');
    this.images.set(image, { id: `sha256:${'1'.repeat(64)}`, repoDigests: [`${repo}@sha256:${'2'.repeat(64)}`] });
  }

  async inspectImage(image: string): Promise<ImageInfo | null> {
    return this.images.get(image) ?? null;
  }

  async create(spec: ContainerSpec): Promise<string> {
    if ([...this.containers.values()].some((c) => c.spec.name === spec.name))
      throw new PermanentRunError(`name ${spec.name} in use`);
    const id = crypto.randomBytes(32).toString('hex');
    let exit!: (code: number) => void;
    const exited = new Promise<number>((resolve) => (exit = resolve));
    const container: FakeContainer = {
      id,
      spec,
      state: 'created',
      exitCode: null,
      startedAt: null,
      finishedAt: null,
      exited,
      exit: () => undefined,
    };
    container.exit = (code) => {
      if (container.state === 'exited') return;
      container.state = 'exited';
      container.exitCode = code;
      container.finishedAt = new Date().toISOString();
      exit(code);
    };
    this.containers.set(id, container);
    return id;
  }

  private startWaiters: ((id: string) => void)[] = [];

  /** Resolves with the id of the next container started (an event to await instead of polling). */
  nextStart(): Promise<string> {
    return new Promise((resolve) => this.startWaiters.push(resolve));
  }

  async start(id: string): Promise<void> {
    const failure = this.startFailures.shift();
    if (failure) throw failure;
    const c = this.find(id)!;
    this.starts++;
    for (const waiter of this.startWaiters.splice(0)) waiter(id);
    c.state = 'running';
    c.startedAt = new Date().toISOString();
    const output = c.spec.mounts.find((m) => m.container === CONTAINER_PATHS.outputDir)!.host;
    const { files, durationMs, exitCode, onExit } = this.behaviour;
    if (durationMs !== null) {
      setTimeout(() => {
        for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(output, name), content);
        onExit?.(output);
        c.exit(exitCode);
      }, durationMs);
    }
  }

  async inspect(idOrName: string): Promise<ContainerState | null> {
    const c = this.find(idOrName);
    if (!c) return null;
    return {
      id: c.id,
      running: c.state === 'running',
      exitCode: c.state === 'exited' ? c.exitCode : c.state === 'created' ? 0 : null,
      oomKilled: false,
      startedAt: c.startedAt,
      finishedAt: c.finishedAt,
      labels: c.spec.labels,
    };
  }

  async wait(id: string): Promise<number> {
    const c = this.find(id);
    if (!c) throw new Error('no such container');
    // Like Docker's "not-running" condition: a created container counts as stopped.
    if (c.state === 'created') return 0;
    return c.exited;
  }

  async logs(): Promise<Readable> {
    if (this.logsFailure) throw this.logsFailure;
    return Readable.from([Buffer.from(this.behaviour.log)]);
  }

  async stop(id: string): Promise<void> {
    this.find(id)?.exit(137);
  }

  async remove(id: string): Promise<void> {
    const c = this.find(id);
    if (c) this.containers.delete(c.id);
  }

  async listManaged(site: string): Promise<ManagedContainer[]> {
    return [...this.containers.values()]
      .filter((c) => c.spec.labels[CONTAINER_LABELS.site] === site)
      .map((c) => ({ id: c.id, labels: c.spec.labels, running: c.state === 'running' }));
  }

  readonly networks = new Map<string, NetworkInfo>();
  startFailures: Error[] = [];

  async inspectNetwork(name: string): Promise<NetworkInfo | null> {
    return this.networks.get(name) ?? null;
  }

  async createInternalNetwork(spec: InternalNetworkSpec): Promise<void> {
    if (this.networks.has(spec.name)) return;
    this.networks.set(spec.name, {
      id: crypto.randomBytes(32).toString('hex'),
      name: spec.name,
      internal: true,
      gatewayIp: '127.0.0.1',
      bridgeInterface: spec.bridgeInterface,
      labels: spec.labels,
    });
  }

  async removeNetwork(name: string): Promise<boolean> {
    if ([...this.containers.values()].some((c) => c.spec.networkMode === name && c.state === 'running')) return false;
    this.networks.delete(name);
    return true;
  }

  private find(idOrName: string): FakeContainer | undefined {
    return this.containers.get(idOrName) ?? [...this.containers.values()].find((c) => c.spec.name === idOrName);
  }
}
