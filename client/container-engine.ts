import { PassThrough, type Readable } from 'node:stream';
import Docker from 'dockerode';
import { CONTAINER_LABELS } from '../shared/container-contract.js';
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
  pull(image: string): Promise<void>;
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

  async pull(image: string): Promise<void> {
    const stream = await this.guard(`pull ${image}`, () => this.docker.pull(image) as Promise<NodeJS.ReadableStream>);
    await new Promise<void>((resolve, reject) => {
      this.docker.modem.followProgress(
        stream,
        (err: unknown, output: { error?: string; errorDetail?: { message?: string } }[]) => {
          if (err) return reject(new PermanentRunError(`pull of ${image} failed: ${coerceError(err).message}`));
          const failed = output?.find((o) => o.error || o.errorDetail);
          if (failed)
            return reject(
              new PermanentRunError(`pull of ${image} failed: ${failed.errorDetail?.message ?? failed.error}`),
            );
          resolve();
        },
      );
    });
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
