import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { compileClientConfig, type ClientConfig } from '../../client/config.js';
import { SiteClient } from '../../client/site-client.js';
import { loadRawConfig } from '../../shared/config-loader.js';
import { clientConfigSchema } from '../../shared/config-schemas.js';
import { CONTAINER_LABELS } from '../../shared/container-contract.js';
import { silentLogger, type Logger } from '../../shared/logger.js';
import { docker, IMAGE_REGISTRY } from '../../test/helpers/docker.js';

/** Label on every container and network the benchmarks create themselves (raw `docker run`, dockerode). */
export const BENCH_LABEL = 'org.pht.bench';
/** Site names start with this, so leftovers of an interrupted benchmark can be found and removed. */
export const SITE_PREFIX = 'bench-';
/** Nothing listens there: the workload never queries SPARQL, but a client config needs an endpoint. */
export const UNUSED_SPARQL = 'http://127.0.0.1:9/sparql';

export function uniqueSite(kind: string): string {
  return `${SITE_PREFIX}${kind}-${crypto.randomBytes(3).toString('hex')}`;
}

/**
 * The raw config a site would write (as JSON), the client's defaults for everything not given: the
 * benchmarks measure the client as shipped, so only what they must (registry, key, allowlist,
 * work dir) and what a figure varies is set.
 */
export function rawSiteConfig(
  registryUrl: string,
  apiKey: string,
  workDir: string,
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    registryUrl,
    apiKey,
    sparqlEndpoint: UNUSED_SPARQL,
    allowedImages: [`${IMAGE_REGISTRY.replace(/\./g, '\\.')}/pht-bench/.*`],
    workDir,
    ...overrides,
  };
}

/** The config modules a site config is made with: this checkout's, or a baseline build's (bench/overhead.ts). */
export interface ConfigModules {
  loadRawConfig: typeof loadRawConfig;
  clientConfigSchema: typeof clientConfigSchema;
  compileClientConfig: typeof compileClientConfig;
}

const OWN_CONFIG_MODULES: ConfigModules = { loadRawConfig, clientConfigSchema, compileClientConfig };

export function siteConfig(
  registryUrl: string,
  apiKey: string,
  overrides: Record<string, unknown> = {},
  modules: ConfigModules = OWN_CONFIG_MODULES,
): ClientConfig {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pht-bench-site-'));
  const validated = modules.loadRawConfig({
    file: null,
    fileRequired: false,
    schema: modules.clientConfigSchema,
    env: {},
    envOverrides: [],
    flagOverrides: rawSiteConfig(registryUrl, apiKey, workDir, overrides),
  });
  return modules.compileClientConfig(validated, null, workDir);
}

/** A site client in this process (so its Docker and registry calls can be timed). */
export async function startSite(config: ClientConfig, logger: Logger = silentLogger()): Promise<SiteClient> {
  const client = new SiteClient({ config, logger });
  await client.start();
  return client;
}

/** Closes the client and removes its containers, its gateway network and its work dir. */
export async function stopSite(client: SiteClient, config: ClientConfig): Promise<void> {
  await client.close();
  await removeSiteLeftovers(client.site);
  fs.rmSync(config.workDir, { recursive: true, force: true });
}

/** Containers and networks of one site, or (without a name) of every benchmark site and of the benchmarks themselves. */
export async function removeSiteLeftovers(site?: string): Promise<void> {
  const containers = await docker().listContainers({
    all: true,
    filters: { label: site ? [`${CONTAINER_LABELS.site}=${site}`] : [CONTAINER_LABELS.site] },
  });
  const own = await docker().listContainers({ all: true, filters: { label: [BENCH_LABEL] } });
  for (const c of [...containers, ...(site ? [] : own)]) {
    const name = c.Labels?.[CONTAINER_LABELS.site];
    if (!site && name !== undefined && !name.startsWith(SITE_PREFIX)) continue;
    await docker()
      .getContainer(c.Id)
      .remove({ force: true, v: true })
      .catch(() => undefined);
  }
  const networks = await docker().listNetworks({
    filters: { label: site ? [`${CONTAINER_LABELS.site}=${site}`] : [CONTAINER_LABELS.site] },
  });
  const ownNetworks = await docker().listNetworks({ filters: { label: [BENCH_LABEL] } });
  for (const n of [...networks, ...(site ? [] : ownNetworks)]) {
    const name = n.Labels?.[CONTAINER_LABELS.site];
    if (!site && name !== undefined && !name.startsWith(SITE_PREFIX)) continue;
    await docker()
      .getNetwork(n.Id)
      .remove()
      .catch(() => undefined);
  }
}

/** An internal network made like the client's gateway network, for the raw runs of "gateway" mode. */
export async function createInternalNetwork(purpose: string): Promise<{ name: string; remove(): Promise<void> }> {
  const name = `pht-bench-${purpose}-${process.pid}`;
  const network = await docker().createNetwork({
    Name: name,
    Driver: 'bridge',
    Internal: true,
    Labels: { [BENCH_LABEL]: purpose },
    Options: {
      'com.docker.network.bridge.enable_icc': 'false',
      'com.docker.network.bridge.enable_ip_masquerade': 'false',
    },
  });
  return { name, remove: () => network.remove().catch(() => undefined) };
}
