import { PassThrough, type Readable } from 'node:stream';
import Docker from 'dockerode';
import { CONTAINER_LABELS } from '../shared/container-contract.js';
import { abortReason } from '../shared/abortable.js';
import { coerceError, errorCode } from '../shared/errors.js';
import { DockerUnavailableError, PermanentRunError } from './errors.js';

export interface ImageInfo {
  id: string;
  repoDigests: string[];
}

export interface ContainerSpec {
  name: string;
  imageId: string;
  env: Record<string, string>;
  labels: Record<string, string>;
  user: string;
  /** host path → container path, read-only flag. Nothing else of the host is mounted. */
  mounts: { host: string; container: string; readOnly: boolean }[];
  networkMode: string;
  memoryBytes: number;
  nanoCpus: number;
  pids: number;
  tmpfsBytes: number;
  /**
   * Name servers the engine's embedded resolver may forward to; [] keeps the engine's default.
   * Gateway mode passes the gateway IP, where the host firewall drops DNS: no lookup leaves the host.
   */
  dns?: string[];
}

/** An internal bridge network the site client creates for its containers. */
export interface InternalNetworkSpec {
  name: string;
  /** Host-side bridge interface name (at most 15 characters). */
  bridgeInterface: string;
  subnet: string | null;
  labels: Record<string, string>;
}

export interface NetworkInfo {
  id: string;
  name: string;
  internal: boolean;
  gatewayIp: string | null;
  bridgeInterface: string;
  labels: Record<string, string>;
}

export interface ContainerState {
  id: string;
  running: boolean;
  exitCode: number | null;
  oomKilled: boolean;
  startedAt: string | null;
  finishedAt: string | null;
  labels: Record<string, string>;
}

export interface ManagedContainer {
  id: string;
  labels: Record<string, string>;
  running: boolean;
}

/**
 * The Docker engine as the site client uses it. This interface is the boundary that unit tests
 * fake; the end-to-end tests run DockerEngine against the real daemon.
 */
export interface ContainerEngine {
  ping(): Promise<void>;
  /** Pulls the image; `signal` ends the pull at once (the engine may finish fetching layers on its own). */
  pull(image: string, signal?: AbortSignal): Promise<void>;
  /** null when the image is not present locally. */
  inspectImage(image: string): Promise<ImageInfo | null>;
  create(spec: ContainerSpec): Promise<string>;
  start(containerId: string): Promise<void>;
  inspect(containerId: string): Promise<ContainerState | null>;
  /** Resolves with the exit code once the container stops. */
  wait(containerId: string): Promise<number>;
  /** stdout and stderr interleaved, following until the container stops. */
  logs(containerId: string, sinceUnixSeconds: number): Promise<Readable>;
  stop(containerId: string, graceSeconds: number): Promise<void>;
  remove(containerId: string): Promise<void>;
  listManaged(site: string): Promise<ManagedContainer[]>;
  /** null when no network has exactly this name. */
  inspectNetwork(name: string): Promise<NetworkInfo | null>;
  /** Creates an internal bridge network (no route out, no traffic between containers); an existing one is kept. */
  createInternalNetwork(spec: InternalNetworkSpec): Promise<void>;
  /** Removes a network; false when containers are still attached to it. */
  removeNetwork(name: string): Promise<boolean>;
}

export class DockerEngine implements ContainerEngine {
  readonly docker: Docker;

  constructor(
    socketPath: string,
    /** Told of every Docker error, by kind (the client's metrics count them). */
    private readonly onError?: (kind: 'unavailable' | 'permanent') => void,
  ) {
    this.docker = new Docker({ socketPath });
  }

  async ping(): Promise<void> {
    await this.guard('ping the Docker engine', () => this.docker.ping());
  }

  async pull(image: string, signal?: AbortSignal): Promise<void> {
    const stream = await this.guard(
      `pull ${image}`,
      () => this.docker.pull(image, { abortSignal: signal }) as Promise<NodeJS.ReadableStream>,
    ).catch((e: unknown) => {
      // Ended by the caller, not failed: the run is not to be marked failed for it.
      throw signal?.aborted ? abortReason(signal) : e;
    });
    const onAbort = () => (stream as NodeJS.ReadableStream & { destroy(): void }).destroy();
    signal?.addEventListener('abort', onAbort, { once: true });
    await new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(abortReason(signal));
      this.docker.modem.followProgress(
        stream,
        (err: unknown, output: { error?: string; errorDetail?: { message?: string } }[]) => {
          if (signal?.aborted) return reject(abortReason(signal));
          if (err) return reject(new PermanentRunError(`pull of ${image} failed: ${coerceError(err).message}`));
          const failed = output?.find((o) => o.error || o.errorDetail);
          if (failed)
            return reject(
              new PermanentRunError(`pull of ${image} failed: ${failed.errorDetail?.message ?? failed.error}`),
            );
          resolve();
        },
      );
    }).finally(() => signal?.removeEventListener('abort', onAbort));
  }

  async inspectImage(image: string): Promise<ImageInfo | null> {
    try {
      const info = await this.docker.getImage(image).inspect();
      return { id: info.Id, repoDigests: info.RepoDigests ?? [] };
    } catch (e) {
      if (statusOf(e) === 404) return null;
      throw this.translate(`inspect image ${image}`, e);
    }
  }

  async create(spec: ContainerSpec): Promise<string> {
    const container = await this.guard('create the container', () =>
      this.docker.createContainer({
        name: spec.name,
        Image: spec.imageId,
        Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
        Labels: spec.labels,
        User: spec.user,
        Tty: false,
        AttachStdin: false,
        OpenStdin: false,
        NetworkDisabled: spec.networkMode === 'none',
        HostConfig: {
          ...(spec.dns && spec.dns.length > 0
            ? { Dns: spec.dns, DnsSearch: [], DnsOptions: ['ndots:0', 'timeout:1', 'attempts:1'] }
            : {}),
          Binds: spec.mounts.map((m) => `${m.host}:${m.container}:${m.readOnly ? 'ro' : 'rw'}`),
          NetworkMode: spec.networkMode,
          Privileged: false,
          CapDrop: ['ALL'],
          SecurityOpt: ['no-new-privileges'],
          ReadonlyRootfs: true,
          Tmpfs: { '/tmp': `rw,noexec,nosuid,size=${spec.tmpfsBytes}` },
          Memory: spec.memoryBytes,
          MemorySwap: spec.memoryBytes,
          NanoCpus: spec.nanoCpus,
          PidsLimit: spec.pids,
          IpcMode: 'private',
          AutoRemove: false,
          LogConfig: { Type: 'json-file', Config: { 'max-size': '10m', 'max-file': '1' } },
        },
      }),
    );
    return container.id;
  }

  async start(containerId: string): Promise<void> {
    await this.guard('start the container', () => this.docker.getContainer(containerId).start());
  }

  async inspect(containerId: string): Promise<ContainerState | null> {
    try {
      const info = await this.docker.getContainer(containerId).inspect();
      const s = info.State;
      return {
        id: info.Id,
        running: s.Running,
        exitCode: s.Running ? null : s.ExitCode,
        oomKilled: s.OOMKilled,
        startedAt: s.StartedAt && !s.StartedAt.startsWith('0001') ? s.StartedAt : null,
        finishedAt: s.FinishedAt && !s.FinishedAt.startsWith('0001') ? s.FinishedAt : null,
        labels: info.Config?.Labels ?? {},
      };
    } catch (e) {
      if (statusOf(e) === 404) return null;
      throw this.translate('inspect the container', e);
    }
  }

  async wait(containerId: string): Promise<number> {
    const result = (await this.guard('wait for the container', () => this.docker.getContainer(containerId).wait())) as {
      StatusCode: number;
    };
    return result.StatusCode;
  }

  async logs(containerId: string, sinceUnixSeconds: number): Promise<Readable> {
    const container = this.docker.getContainer(containerId);
    const raw = (await this.guard('read the container log', () =>
      container.logs({ follow: true, stdout: true, stderr: true, since: sinceUnixSeconds }),
    )) as unknown as Readable;
    // Without a TTY, Docker multiplexes stdout and stderr into one framed stream.
    const out = new PassThrough();
    this.docker.modem.demuxStream(raw, out, out);
    raw.on('end', () => out.end());
    raw.on('error', (e) => out.destroy(e));
    return out;
  }

  async stop(containerId: string, graceSeconds: number): Promise<void> {
    try {
      await this.docker.getContainer(containerId).stop({ t: graceSeconds });
    } catch (e) {
      // 304: already stopped; 404: already gone. Both mean "not running", which is the goal.
      if (statusOf(e) === 304 || statusOf(e) === 404) return;
      throw this.translate('stop the container', e);
    }
  }

  async remove(containerId: string): Promise<void> {
    try {
      await this.docker.getContainer(containerId).remove({ force: true, v: true });
    } catch (e) {
      if (statusOf(e) === 404 || statusOf(e) === 409) return;
      throw this.translate('remove the container', e);
    }
  }

  async listManaged(site: string): Promise<ManagedContainer[]> {
    const list = await this.guard('list containers', () =>
      this.docker.listContainers({
        all: true,
        filters: { label: [`${CONTAINER_LABELS.managedBy}=pht-client`, `${CONTAINER_LABELS.site}=${site}`] },
      }),
    );
    return list.map((c) => ({ id: c.Id, labels: c.Labels ?? {}, running: c.State === 'running' }));
  }

  async inspectNetwork(name: string): Promise<NetworkInfo | null> {
    const list = await this.guard('list networks', () => this.docker.listNetworks({ filters: { name: [name] } }));
    const found = list.find((n) => n.Name === name);
    if (!found) return null;
    const info = (await this.guard('inspect the network', () => this.docker.getNetwork(found.Id).inspect())) as {
      Id: string;
      Name: string;
      Internal?: boolean;
      IPAM?: { Config?: { Gateway?: string }[] };
      Options?: Record<string, string>;
      Labels?: Record<string, string>;
    };
    const gateway = info.IPAM?.Config?.[0]?.Gateway;
    return {
      id: info.Id,
      name: info.Name,
      internal: info.Internal === true,
      gatewayIp: gateway ? gateway.split('/')[0]! : null,
      bridgeInterface: info.Options?.['com.docker.network.bridge.name'] ?? `br-${info.Id.slice(0, 12)}`,
      labels: info.Labels ?? {},
    };
  }

  async createInternalNetwork(spec: InternalNetworkSpec): Promise<void> {
    try {
      await this.docker.createNetwork({
        Name: spec.name,
        Driver: 'bridge',
        Internal: true,
        CheckDuplicate: true,
        Labels: spec.labels,
        Options: {
          'com.docker.network.bridge.name': spec.bridgeInterface,
          'com.docker.network.bridge.enable_icc': 'false',
          'com.docker.network.bridge.enable_ip_masquerade': 'false',
        },
        ...(spec.subnet ? { IPAM: { Driver: 'default', Config: [{ Subnet: spec.subnet }] } } : {}),
      });
    } catch (e) {
      if (statusOf(e) === 409) return;
      throw this.translate(`create network ${spec.name}`, e);
    }
  }

  async removeNetwork(name: string): Promise<boolean> {
    try {
      await this.docker.getNetwork(name).remove();
      return true;
    } catch (e) {
      if (statusOf(e) === 404) return true;
      // 403: "error while removing network: network ... has active endpoints"
      if (statusOf(e) === 403 || /active endpoints/.test(dockerMessage(e))) return false;
      throw this.translate(`remove network ${name}`, e);
    }
  }

  private async guard<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      const error = this.translate(what, e);
      this.onError?.(error instanceof PermanentRunError ? 'permanent' : 'unavailable');
      throw error;
    }
  }

  private translate(what: string, e: unknown): Error {
    const code = errorCode(e);
    if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'EACCES' || code === 'ECONNRESET') {
      return new DockerUnavailableError(`cannot ${what}: the Docker engine is unreachable (${code})`);
    }
    const status = statusOf(e);
    const message = dockerMessage(e);
    if (status !== undefined && status >= 400 && status < 500)
      return new PermanentRunError(`cannot ${what}: ${message}`);
    if (status !== undefined && /manifest unknown|not found|unauthorized|denied|invalid reference/i.test(message)) {
      return new PermanentRunError(`cannot ${what}: ${message}`);
    }
    return new DockerUnavailableError(`cannot ${what}: ${message}`);
  }
}

function statusOf(e: unknown): number | undefined {
  const s = (e as { statusCode?: unknown })?.statusCode;
  return typeof s === 'number' ? s : undefined;
}

function dockerMessage(e: unknown): string {
  const json = (e as { json?: { message?: string } })?.json;
  return json?.message ?? coerceError(e).message;
}
