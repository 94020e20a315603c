/**
 * What the demo needs from the machine (the Docker engine, the loopback image registry, the base
 * image and the two algorithm images) and what it must take away again (the containers and
 * networks the site clients created).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { CONTAINER_LABELS } from '../shared/container-contract.js';
import type { ProcessGroup } from './processes.js';

const execFileAsync = promisify(execFile);

/** The value site clients put in the org.pht.managed-by label of what they create. */
export const CLIENT_MANAGED_BY = 'pht-client';

export interface InfrastructureStatus {
  docker: boolean;
  registry: boolean;
  baseImage: boolean;
}

export interface InfrastructureOptions {
  /** host:port of the image registry (127.0.0.1:5050). */
  imageRegistry: string;
  /** The docker CLI to ask (Debian's /usr/bin/docker matches the engine; another may be first on PATH). */
  dockerCli: string;
}

/** The docker CLI the project's scripts use: Debian's when it is there, else the one on PATH. */
export function defaultDockerCli(): string {
  return fs.existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
}

/** Asks `docker version`, the registry's /v2/ and the base image's manifest; never throws. */
export async function checkInfrastructure(
  options: InfrastructureOptions,
  signal?: AbortSignal,
): Promise<InfrastructureStatus> {
  const docker = await execFileAsync(options.dockerCli, ['version'], { timeout: 15_000, signal }).then(
    () => true,
    () => false,
  );
  signal?.throwIfAborted();
  const registry = (await httpStatus(`http://${options.imageRegistry}/v2/`)) === 200;
  const baseImage =
    registry &&
    (await httpStatus(
      `http://${options.imageRegistry}/v2/pht/node-base/manifests/20`,
      'application/vnd.docker.distribution.manifest.v2+json',
    )) === 200;
  return { docker, registry, baseImage };
}

async function httpStatus(url: string, accept?: string): Promise<number> {
  try {
    const response = await fetch(url, { headers: accept ? { accept } : {}, signal: AbortSignal.timeout(5_000) });
    await response.arrayBuffer();
    return response.status;
  } catch {
    return 0;
  }
}

/** `bash scripts/infra.sh up`: installs and starts what is missing (its daemons outlive the demo, on purpose). */
export async function bringInfrastructureUp(
  processes: ProcessGroup,
  root: string,
  logFile: string,
  env: NodeJS.ProcessEnv,
  signal?: AbortSignal,
): Promise<void> {
  await processes.run(
    {
      name: 'scripts/infra.sh up',
      command: 'bash',
      args: [path.join(root, 'scripts', 'infra.sh'), 'up'],
      cwd: root,
      logFile,
      env,
    },
    signal,
  );
}

/** The two algorithm images, as a researcher names them in a task. */
export function algorithmImages(imageRegistry: string): {
  descriptiveStats: string;
  logisticRegression: string;
  pooledQuantiles: string;
} {
  return {
    descriptiveStats: `${imageRegistry}/pht/descriptive-stats:1`,
    logisticRegression: `${imageRegistry}/pht/logistic-regression:1`,
    pooledQuantiles: `${imageRegistry}/pht/pooled-quantiles:1`,
  };
}

/** Builds both algorithm images and pushes them to the registry (demo/build-algorithm-images.sh). */
export async function buildAlgorithmImages(
  processes: ProcessGroup,
  root: string,
  logFile: string,
  env: NodeJS.ProcessEnv,
  signal?: AbortSignal,
): Promise<void> {
  await processes.run(
    {
      name: 'demo/build-algorithm-images.sh',
      command: 'bash',
      args: [path.join(root, 'demo', 'build-algorithm-images.sh')],
      cwd: root,
      logFile,
      env,
    },
    signal,
  );
}

export interface SiteDockerResources {
  containers: string[];
  networks: string[];
}

function siteFilter(site: string): string[] {
  return [`${CONTAINER_LABELS.managedBy}=${CLIENT_MANAGED_BY}`, `${CONTAINER_LABELS.site}=${site}`];
}

/** The containers (running or not) and networks a site's client created, by their labels. */
export async function listSiteResources(docker: Docker, site: string): Promise<SiteDockerResources> {
  const label = siteFilter(site);
  const containers = await docker.listContainers({ all: true, filters: { label } });
  const networks = await docker.listNetworks({ filters: { label } });
  return { containers: containers.map((c) => c.Id), networks: networks.map((n) => n.Name) };
}

/**
 * Removes a site's containers (a run cut short by a shutdown leaves its container running: a
 * stopped client hands it to its next start, and there is none) and then its gateway network,
 * which the client keeps between starts. Resolves with what it removed.
 */
export async function removeSiteResources(docker: Docker, site: string): Promise<SiteDockerResources> {
  const label = siteFilter(site);
  const removed: SiteDockerResources = { containers: [], networks: [] };
  for (const info of await docker.listContainers({ all: true, filters: { label } })) {
    await ignoreNotFound(docker.getContainer(info.Id).remove({ force: true, v: true }));
    removed.containers.push(info.Id.slice(0, 12));
  }
  for (const info of await docker.listNetworks({ filters: { label } })) {
    await ignoreNotFound(docker.getNetwork(info.Id).remove());
    removed.networks.push(info.Name);
  }
  return removed;
}

/** The name a site client gives its gateway network when its config names none (client/container-network.ts). */
export function defaultGatewayNetwork(site: string): string {
  return `pht-gw-${site}`;
}

/**
 * Removes the host firewall rules a site client put in front of its gateway network. A client
 * that stops normally removes them itself; one that had to be killed leaves them, and the next
 * start of a client for the same network would remove them, but the demo's clients have no next
 * start. The client marks its rules with the comment `pht-<network>`. Best effort: without
 * iptables (or its permission) there is nothing to remove. Resolves with how many it removed.
 */
export async function removeFirewallRules(networks: readonly string[]): Promise<number> {
  let listing: string;
  try {
    listing = (await execFileAsync('iptables', ['-w', '-S', 'INPUT'], { timeout: 15_000 })).stdout;
  } catch {
    return 0;
  }
  const comments = new Set(networks.map((n) => `pht-${n}`));
  let removed = 0;
  for (const line of listing.split('\n')) {
    const comment = /--comment (\S+)/.exec(line)?.[1];
    if (!line.startsWith('-A INPUT ') || !comment || !comments.has(comment)) continue;
    const rule = line.slice('-A '.length).split(/\s+/).filter(Boolean);
    await execFileAsync('iptables', ['-w', '-D', ...rule], { timeout: 15_000 }).then(
      () => removed++,
      () => undefined,
    );
  }
  return removed;
}

async function ignoreNotFound(operation: Promise<unknown>): Promise<void> {
  try {
    await operation;
  } catch (e) {
    if ((e as { statusCode?: unknown } | null)?.statusCode !== 404) throw e;
  }
}
