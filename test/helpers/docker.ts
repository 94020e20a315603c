import { Readable } from 'node:stream';
import Docker from 'dockerode';

/**
 * Helpers for end-to-end tests against the real Docker engine and the loopback image registry that
 * `bash scripts/infra.sh up` starts. No public registry is reachable: every image is built
 * `FROM` {@link BASE_IMAGE} (the host's node binary, imported by infra.sh) and pushed to
 * {@link IMAGE_REGISTRY}.
 */

/** host:port of the image registry; on 127.0.0.0/8 the engine talks plain HTTP without config. */
export const IMAGE_REGISTRY = process.env.PHT_IMAGE_REGISTRY ?? '127.0.0.1:5050';
/** Node 20 on an otherwise empty rootfs; entrypoint /usr/bin/node, PATH=/usr/bin. */
export const BASE_IMAGE = `${IMAGE_REGISTRY}/pht/node-base:20`;
export const DOCKER_SOCKET = '/var/run/docker.sock';

const SETUP_HINT = 'run `bash scripts/infra.sh up`';
const MANIFEST_TYPES = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
].join(', ');

let client: Docker | undefined;

/** The dockerode client for the local engine (one instance shared by a test file). */
export function docker(): Docker {
  client ??= new Docker({ socketPath: DOCKER_SOCKET });
  return client;
}

/**
 * Fails with a message that says how to fix it when the engine, the registry or the base image is
 * missing. Call it in `beforeAll` so a missing daemon reads as a set-up problem, not a test failure.
 */
export async function requireInfrastructure(): Promise<void> {
  try {
    await docker().ping();
  } catch (err) {
    throw new Error(`Docker engine not reachable on ${DOCKER_SOCKET} (${describe(err)}): ${SETUP_HINT}`);
  }
  if (!(await imageExistsInRegistry(BASE_IMAGE))) {
    throw new Error(`${BASE_IMAGE} is not in the registry: ${SETUP_HINT}`);
  }
}

export interface BuildOptions {
  /** Dockerfile CMD (exec form); with the base image's entrypoint, e.g. ['/app/main.js']. */
  cmd?: string[];
  /** Dockerfile ENTRYPOINT (exec form), replacing /usr/bin/node. */
  entrypoint?: string[];
  /** Image labels, e.g. to find test images later. */
  labels?: Record<string, string>;
}

/**
 * Builds an image `FROM` {@link BASE_IMAGE} with `files` copied into /app (the working directory),
 * pushes it and returns its repo digest (`<registry>/<repo>@sha256:…`), the reference a task names.
 * `tag` is a full reference (`127.0.0.1:5050/pht-test/x:1`) or one relative to {@link IMAGE_REGISTRY}
 * (`pht-test/x:1`); without a tag it is `latest`.
 */
export async function buildAndPushImage(
  tag: string,
  files: Record<string, string | Buffer>,
  options: BuildOptions = {},
): Promise<string> {
  const ref = parseImageRef(tag.includes('/') && looksLikeHost(tag.split('/')[0]!) ? tag : `${IMAGE_REGISTRY}/${tag}`);
  const fullTag = `${ref.registry}/${ref.repository}:${ref.reference}`;
  if (ref.reference.startsWith('sha256:')) throw new Error(`cannot build into a digest reference: ${tag}`);

  const dockerfile = [`FROM ${BASE_IMAGE}`, 'WORKDIR /app'];
  if (Object.keys(files).length > 0) dockerfile.push('COPY app/ /app/');
  if (options.entrypoint) dockerfile.push(`ENTRYPOINT ${JSON.stringify(options.entrypoint)}`);
  if (options.cmd) dockerfile.push(`CMD ${JSON.stringify(options.cmd)}`);
  const entries: TarEntry[] = [{ name: 'Dockerfile', data: Buffer.from(dockerfile.join('\n') + '\n') }];
  for (const [name, data] of Object.entries(files)) {
    const normalised = name.replace(/^\.?\/+/, '');
    if (normalised === '' || normalised.split('/').includes('..')) throw new Error(`bad file name for /app: ${name}`);
    entries.push({ name: `app/${normalised}`, data: typeof data === 'string' ? Buffer.from(data) : data });
  }

  const buildStream = await withDockerHint(() =>
    docker().buildImage(Readable.from([tarArchive(entries)]), {
      t: fullTag,
      rm: true,
      forcerm: true,
      ...(options.labels ? { labels: options.labels } : {}),
    }),
  );
  const buildEvents = await followProgress(buildStream);
  failOnStreamError(buildEvents, `build of ${fullTag}`);

  // The engine rejects a push without an X-Registry-Auth header, even to a registry with no auth.
  const pushStream = await withDockerHint(() =>
    docker()
      .getImage(fullTag)
      .push({ authconfig: { serveraddress: ref.registry } }),
  );
  const pushEvents = await followProgress(pushStream);
  failOnStreamError(pushEvents, `push of ${fullTag} (is the registry up? ${SETUP_HINT})`);
  const digest = pushEvents.map((event) => event.aux?.Digest).find((d): d is string => typeof d === 'string');
  if (!digest) throw new Error(`push of ${fullTag} reported no digest`);
  return `${ref.registry}/${ref.repository}@${digest}`;
}

/** Pulls `ref` from its (loopback) registry into the local engine. */
export async function pullImage(ref: string): Promise<void> {
  const stream = await withDockerHint(() => docker().pull(ref));
  failOnStreamError(await followProgress(stream), `pull of ${ref}`);
}

/** Force-removes every container (running or not) carrying `label=value`; returns how many. */
export async function removeContainersByLabel(label: string, value: string): Promise<number> {
  const containers = await withDockerHint(() =>
    docker().listContainers({ all: true, filters: { label: [`${label}=${value}`] } }),
  );
  for (const info of containers) {
    try {
      await docker().getContainer(info.Id).remove({ force: true, v: true });
    } catch (err) {
      // 404: gone already (e.g. AutoRemove); 409: its removal is under way (e.g. by a site client).
      if (statusOf(err) !== 404 && statusOf(err) !== 409) throw err;
    }
  }
  return containers.length;
}

/**
 * Containers (running or not) matching every label in `labels` that are still there after up to
 * `settleMs`: a site client removes a run's container just after reporting it, so a test that
 * sees the run ended waits for the removal (woken by Docker's destroy events, not by polling).
 */
export async function containersLeft(labels: string[], settleMs = 5000): Promise<Docker.ContainerInfo[]> {
  return containersOnceThey(labels, 'destroy', (list) => list.length === 0, settleMs);
}

/**
 * The containers matching every label in `labels` once at least one exists, waiting up to
 * `timeoutMs` (woken by Docker's create events): a site client creates a run's container while
 * the registry records the run's start, so a run seen `running` may not have its container yet.
 */
export async function containersMade(labels: string[], timeoutMs = 10_000): Promise<Docker.ContainerInfo[]> {
  return containersOnceThey(labels, 'create', (list) => list.length > 0, timeoutMs);
}

async function containersOnceThey(
  labels: string[],
  event: 'create' | 'destroy',
  done: (list: Docker.ContainerInfo[]) => boolean,
  settleMs: number,
): Promise<Docker.ContainerInfo[]> {
  const filters = { label: labels };
  const events = (await docker().getEvents({
    filters: { ...filters, type: ['container'], event: [event] },
  })) as unknown as Readable;
  try {
    const until = Date.now() + settleMs;
    let left = await docker().listContainers({ all: true, filters });
    while (!done(left) && Date.now() < until) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(wake, until - Date.now());
        events.once('data', wake);
        function wake(): void {
          clearTimeout(timer);
          events.off('data', wake);
          resolve();
        }
      });
      left = await docker().listContainers({ all: true, filters });
    }
    return left;
  } finally {
    events.destroy();
  }
}

/** Removes a local image by tag or id; a missing image is not an error. */
export async function deleteLocalImage(ref: string): Promise<void> {
  try {
    await withDockerHint(() => docker().getImage(ref).remove({ force: true }));
  } catch (err) {
    if (statusOf(err) !== 404) throw err;
  }
}

/** True when the registry named in `ref` has its manifest (by tag or digest). */
export async function imageExistsInRegistry(ref: string): Promise<boolean> {
  const { registry, repository, reference } = parseImageRef(ref);
  const response = await registryFetch(registry, `/v2/${repository}/manifests/${reference}`, { method: 'HEAD' });
  if (response.status === 200) return true;
  if (response.status === 404) return false;
  throw new Error(`registry ${registry} answered ${response.status} for ${ref}`);
}

/**
 * Deletes `ref`'s manifest from its registry (the registry runs with delete enabled); blobs stay
 * until a garbage collection. A missing manifest is not an error.
 */
export async function deleteImageFromRegistry(ref: string): Promise<void> {
  const { registry, repository, reference } = parseImageRef(ref);
  let digest = reference;
  if (!reference.startsWith('sha256:')) {
    const head = await registryFetch(registry, `/v2/${repository}/manifests/${reference}`, { method: 'HEAD' });
    if (head.status === 404) return;
    digest = head.headers.get('docker-content-digest') ?? '';
    if (!digest) throw new Error(`registry ${registry} gave no digest for ${ref}`);
  }
  const response = await registryFetch(registry, `/v2/${repository}/manifests/${digest}`, { method: 'DELETE' });
  if (response.status !== 202 && response.status !== 404) {
    throw new Error(`registry ${registry} answered ${response.status} to deleting ${ref}`);
  }
}

export interface ContainerOutput {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * Creates, starts and waits for a container, returns its output and removes it. `labels` should
 * carry a per-test label so an `afterEach` can remove leftovers with {@link removeContainersByLabel}.
 */
export async function runContainer(
  image: string,
  options: { cmd?: string[]; labels?: Record<string, string>; hostConfig?: Docker.HostConfig } = {},
): Promise<ContainerOutput> {
  const container = await withDockerHint(() =>
    docker().createContainer({
      Image: image,
      ...(options.cmd ? { Cmd: options.cmd } : {}),
      Labels: options.labels ?? {},
      HostConfig: options.hostConfig ?? {},
    }),
  );
  try {
    await container.start();
    const { StatusCode } = (await container.wait()) as { StatusCode: number };
    const raw = await container.logs({ stdout: true, stderr: true, follow: false });
    return { exitCode: StatusCode, ...demultiplex(raw) };
  } finally {
    await container.remove({ force: true });
  }
}

interface ImageRef {
  registry: string;
  repository: string;
  /** A tag or a sha256 digest. */
  reference: string;
}

/** Splits `host:port/repo[:tag|@digest]`; only registry-qualified references are meaningful here. */
export function parseImageRef(ref: string): ImageRef {
  const slash = ref.indexOf('/');
  const host = slash > 0 ? ref.slice(0, slash) : '';
  if (!looksLikeHost(host)) throw new Error(`image reference without a registry host: ${ref}`);
  let rest = ref.slice(slash + 1);
  let reference = 'latest';
  const at = rest.indexOf('@');
  if (at >= 0) {
    reference = rest.slice(at + 1);
    rest = rest.slice(0, at);
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon >= 0) {
      reference = rest.slice(colon + 1);
      rest = rest.slice(0, colon);
    }
  }
  return { registry: host, repository: rest, reference };
}

function looksLikeHost(segment: string): boolean {
  return segment.includes('.') || segment.includes(':') || segment === 'localhost';
}

async function registryFetch(registry: string, urlPath: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(`http://${registry}${urlPath}`, {
      ...init,
      headers: { accept: MANIFEST_TYPES },
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    throw new Error(`image registry not reachable at http://${registry} (${describe(err)}): ${SETUP_HINT}`);
  }
}

interface ProgressEvent {
  error?: string;
  errorDetail?: { message?: string };
  aux?: { Digest?: string };
  stream?: string;
}

function followProgress(stream: NodeJS.ReadableStream): Promise<ProgressEvent[]> {
  return new Promise((resolve, reject) => {
    docker().modem.followProgress(stream, (err: Error | null, events: ProgressEvent[]) =>
      err ? reject(err) : resolve(events),
    );
  });
}

/** The engine reports build and push failures inside the stream, with HTTP 200. */
function failOnStreamError(events: ProgressEvent[], what: string): void {
  const failed = events.find((event) => event.error !== undefined);
  if (!failed) return;
  const log = events
    .map((event) => event.stream ?? '')
    .join('')
    .trim();
  throw new Error(`${what} failed: ${failed.errorDetail?.message ?? failed.error}${log ? `\n${log}` : ''}`);
}

async function withDockerHint<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'EACCES') {
      throw new Error(`Docker engine not reachable on ${DOCKER_SOCKET} (${String(code)}): ${SETUP_HINT}`);
    }
    throw err;
  }
}

function statusOf(err: unknown): number | undefined {
  const status = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code ?? (err.cause as { code?: unknown } | undefined)?.code;
    return code ? `${String(code)}: ${err.message}` : err.message;
  }
  return String(err);
}

/** Splits the engine's multiplexed log stream (8-byte frame headers: stream id, size). */
function demultiplex(raw: Buffer): { stdout: string; stderr: string } {
  const out: Buffer[] = [];
  const errs: Buffer[] = [];
  let offset = 0;
  while (offset + 8 <= raw.length) {
    const size = raw.readUInt32BE(offset + 4);
    const frame = raw.subarray(offset + 8, offset + 8 + size);
    (raw[offset] === 2 ? errs : out).push(frame);
    offset += 8 + size;
  }
  return { stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(errs).toString('utf8') };
}

interface TarEntry {
  name: string;
  data: Buffer;
}

/**
 * A ustar archive of regular files, enough for a build context (dockerode would take a tar-fs
 * stream of a directory; the files here exist only in memory).
 */
export function tarArchive(entries: TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const { name, data } of entries) {
    const header = Buffer.alloc(512);
    const { prefix, base } = splitTarName(name);
    header.write(base, 0, 100, 'utf8');
    header.write('0000644\0', 100, 'ascii'); // mode
    header.write('0000000\0', 108, 'ascii'); // uid
    header.write('0000000\0', 116, 'ascii'); // gid
    header.write(data.length.toString(8).padStart(11, '0') + '\0', 124, 'ascii');
    header.write('00000000000\0', 136, 'ascii'); // mtime 0: identical files give identical layers
    header.write('        ', 148, 'ascii'); // checksum is computed over spaces here
    header.write('0', 156, 'ascii'); // regular file
    header.write('ustar\0', 257, 'ascii');
    header.write('00', 263, 'ascii');
    header.write(prefix, 345, 155, 'utf8');
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'ascii');
    blocks.push(header, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

function splitTarName(name: string): { prefix: string; base: string } {
  if (Buffer.byteLength(name) <= 100) return { prefix: '', base: name };
  const cut = name.lastIndexOf('/', name.length - 1);
  const prefix = name.slice(0, cut);
  const base = name.slice(cut + 1);
  if (cut <= 0 || Buffer.byteLength(prefix) > 155 || Buffer.byteLength(base) > 100) {
    throw new Error(`file name too long for a tar header: ${name}`);
  }
  return { prefix, base };
}
