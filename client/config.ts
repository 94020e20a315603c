import path from 'node:path';
import { loadRawConfig, type EnvOverride } from '../shared/config-loader.js';
import { clientConfigSchema } from '../shared/config-schemas.js';
import { parseDurationMs } from '../shared/duration.js';
import { ConfigError } from '../shared/errors.js';
import { compileAllowlist, type Allowlist } from './allowlist.js';
import { compileSitePolicy, type SitePolicy } from './policy/site-policy.js';
import cron from 'node-cron';

export type NetworkMode = 'gateway' | 'none' | 'bridge' | 'named';
export type PullPolicy = 'always' | 'if-not-present' | 'never';

export interface ClientConfig {
  registryUrl: string;
  apiKey: string;
  sparqlEndpoint: string;
  allowlist: Allowlist;
  pullPolicy: PullPolicy;
  workDir: string;
  concurrency: number;
  dockerSocket: string;
  containerUser: string;
  keepOnFailure: boolean;
  auditLog: string;
  logLevel: string;
  /** Where GET /metrics is served, or null for no metrics listener (the default). */
  metrics: { host: string; port: number } | null;
  /** End-to-end encryption: the site's private key, learned pins, pins from config. */
  keys: {
    keyFile: string;
    pinsFile: string;
    pinned: Record<string, string>;
    ttpApiKeys: Record<string, string>;
    ttpInbox: { url: string; token: string } | null;
  };
  /** What may run and what may leave (client/policy/); off unless configured. */
  policy: SitePolicy;
  network: {
    mode: NetworkMode;
    /** gateway: the Docker network to create (default pht-gw-<site>); named: the existing network. */
    name: string | null;
    subnet: string | null;
    sparqlEndpointForContainer: string | null;
    /** gateway mode without confirmed firewall rules: run with no network (true) or refuse (false). */
    fallbackToNone: boolean;
  };
  gateway: {
    allowUpdates: boolean;
    maxResponseBytes: number;
    queryTimeoutMs: number;
    maxConnectionsPerRun: number;
    maxConnections: number;
    idleTimeoutMs: number;
    allowedGraphs: string[];
  };
  limits: {
    memoryBytes: number;
    nanoCpus: number;
    pids: number;
    timeoutMs: number;
    outputBytes: number;
    outputFiles: number;
    logBytes: number;
    tmpfsBytes: number;
    progressBytes: number;
    disk: 'loop-image' | 'unenforced';
  };
  poll: {
    longPollSeconds: number;
    /** Pause between empty polls (ms), or a cron expression gating when the site takes work. */
    schedule: { kind: 'interval'; ms: number } | { kind: 'cron'; expression: string };
    maxBackoffMs: number;
    cancelCheckMs: number;
  };
}

export const CLIENT_ENV_OVERRIDES: readonly EnvOverride[] = [
  { variable: 'PHT_REGISTRY_URL', path: 'registryUrl', type: 'string' },
  { variable: 'PHT_API_KEY', path: 'apiKey', type: 'string' },
  { variable: 'PHT_SPARQL_ENDPOINT', path: 'sparqlEndpoint', type: 'string' },
  { variable: 'PHT_WORK_DIR', path: 'workDir', type: 'string' },
  { variable: 'PHT_ALLOWED_IMAGES', path: 'allowedImages', type: 'json' },
  { variable: 'PHT_LOG_LEVEL', path: 'logLevel', type: 'string' },
];

export function loadClientConfig(file: string, env: NodeJS.ProcessEnv): ClientConfig {
  const raw = loadRawConfig({
    file,
    fileRequired: true,
    schema: clientConfigSchema,
    env,
    envOverrides: CLIENT_ENV_OVERRIDES,
  });
  return compileClientConfig(raw, file, path.dirname(path.resolve(file)));
}

/** Turns a validated raw config into the typed object; relative paths are relative to `baseDir`. */
export function compileClientConfig(raw: Record<string, any>, file: string | null, baseDir: string): ClientConfig {
  let allowlist: Allowlist;
  try {
    allowlist = compileAllowlist(raw.allowedImages);
  } catch (e) {
    throw new ConfigError(`config${file ? ` file ${file}` : ''}: allowedImages: ${(e as Error).message}`, file);
  }
  const schedule = raw.poll.schedule as string;
  let compiledSchedule: ClientConfig['poll']['schedule'];
  if (/^[0-9]+(\.[0-9]+)?(ms|s|m|h)$/.test(schedule))
    compiledSchedule = { kind: 'interval', ms: parseDurationMs(schedule) };
  else if (cron.validate(schedule)) compiledSchedule = { kind: 'cron', expression: schedule };
  else
    throw new ConfigError(
      `config${file ? ` file ${file}` : ''}: poll.schedule: "${schedule}" is neither a duration (e.g. "5s") nor a cron expression`,
      file,
    );
  const mode = raw.network.mode as NetworkMode;
  if (mode === 'named' && !raw.network.name)
    throw new ConfigError('config: network.name is required when network.mode is "named"', file);
  const workDir = path.resolve(baseDir, raw.workDir);
  return {
    registryUrl: raw.registryUrl,
    apiKey: raw.apiKey,
    sparqlEndpoint: raw.sparqlEndpoint,
    allowlist,
    pullPolicy: raw.pullPolicy,
    workDir,
    concurrency: raw.concurrency,
    dockerSocket: raw.dockerSocket,
    containerUser: raw.containerUser,
    keepOnFailure: raw.keepOnFailure,
    auditLog: raw.auditLog ? path.resolve(baseDir, raw.auditLog) : path.join(workDir, 'audit.log'),
    logLevel: raw.logLevel,
    metrics: raw.metrics ? { host: raw.metrics.host, port: raw.metrics.port } : null,
    keys: {
      keyFile: raw.keys.keyFile ? path.resolve(baseDir, raw.keys.keyFile) : path.join(workDir, 'keys', 'site.key'),
      pinsFile: raw.keys.pinsFile ? path.resolve(baseDir, raw.keys.pinsFile) : path.join(workDir, 'keys', 'pins.json'),
      pinned: raw.keys.pinned,
      ttpApiKeys: raw.keys.ttpApiKeys,
      ttpInbox: raw.keys.ttpInbox ?? null,
    },
    policy: compileSitePolicy(raw.policy, file),
    network: {
      mode,
      name: raw.network.name ?? null,
      subnet: raw.network.subnet ?? null,
      sparqlEndpointForContainer: raw.network.sparqlEndpointForContainer ?? null,
      fallbackToNone: raw.network.fallbackToNone,
    },
    gateway: {
      allowUpdates: raw.gateway.allowUpdates,
      maxResponseBytes: raw.gateway.maxResponseBytes,
      queryTimeoutMs: parseDurationMs(raw.gateway.queryTimeout),
      maxConnectionsPerRun: raw.gateway.maxConnectionsPerRun,
      maxConnections: raw.gateway.maxConnections,
      idleTimeoutMs: parseDurationMs(raw.gateway.idleTimeout),
      allowedGraphs: raw.gateway.allowedGraphs,
    },
    limits: {
      memoryBytes: raw.limits.memoryMb * 1024 * 1024,
      nanoCpus: Math.round(raw.limits.cpus * 1e9),
      pids: raw.limits.pids,
      timeoutMs: parseDurationMs(raw.limits.timeout),
      outputBytes: raw.limits.outputBytes,
      outputFiles: raw.limits.outputFiles,
      logBytes: raw.limits.logBytes,
      tmpfsBytes: raw.limits.tmpfsMb * 1024 * 1024,
      progressBytes: raw.limits.progressBytes,
      disk: raw.limits.disk,
    },
    poll: {
      longPollSeconds: raw.poll.longPollSeconds,
      schedule: compiledSchedule,
      maxBackoffMs: parseDurationMs(raw.poll.maxBackoff),
      cancelCheckMs: parseDurationMs(raw.poll.cancelCheck),
    },
  };
}
