import path from 'node:path';
import { loadRawConfig, type EnvOverride } from '../shared/config-loader.js';
import { masterConfigSchema } from '../shared/config-schemas.js';
import { parseDurationMs } from '../shared/duration.js';

export interface MasterConfig {
  port: number;
  host: string;
  dataDir: string;
  /** postgres:// URL, or null for SQLite in dataDir. Never logged: it may hold a password. */
  database: string | null;
  databasePoolSize: number;
  /** Where GET /metrics is served, or null for no metrics listener. */
  metrics: { host: string; port: number } | null;
  logLevel: string;
  leaseMs: number;
  sweepIntervalMs: number;
  /** master/retention.ts: ages in ms after which finished runs' logs and files go (null: never). */
  retention: {
    logsMs: number | null;
    filesMs: number | null;
    /** Finished tasks are deleted whole this long after they ended (null: never). */
    runsMs: number | null;
    intervalMs: number;
    batch: number;
  };
  limits: {
    jsonBodyBytes: number;
    configBytes: number;
    resultFileBytes: number;
    runResultBytes: number;
    filesPerRun: number;
    logBytes: number;
    maxConnections: number;
    connectionsPerAddress: number;
    headersTimeoutMs: number;
    requestTimeoutMs: number;
    bodyIdleTimeoutMs: number;
    openTasksPerUser: number;
    configBytesPerUser: number;
  };
}

export const MASTER_ENV_OVERRIDES: readonly EnvOverride[] = [
  { variable: 'PHT_PORT', path: 'port', type: 'integer' },
  { variable: 'PHT_HOST', path: 'host', type: 'string' },
  { variable: 'PHT_DATA_DIR', path: 'dataDir', type: 'string' },
  { variable: 'PHT_DATABASE_URL', path: 'database', type: 'string' },
  { variable: 'PHT_METRICS_PORT', path: 'metrics.port', type: 'integer' },
  { variable: 'PHT_LOG_LEVEL', path: 'logLevel', type: 'string' },
];

export interface MasterConfigSources {
  file: string | null;
  env: NodeJS.ProcessEnv;
  flags: {
    port?: number;
    host?: string;
    dataDir?: string;
    database?: string;
    retainLogs?: string;
    retainFiles?: string;
    retainRuns?: string;
  };
}

export function loadMasterConfig(sources: MasterConfigSources): MasterConfig {
  const raw = loadRawConfig({
    file: sources.file,
    fileRequired: sources.file !== null,
    schema: masterConfigSchema,
    env: sources.env,
    envOverrides: MASTER_ENV_OVERRIDES,
    flagOverrides: {
      port: sources.flags.port,
      host: sources.flags.host,
      dataDir: sources.flags.dataDir,
      database: sources.flags.database,
      'retention.logs': sources.flags.retainLogs,
      'retention.files': sources.flags.retainFiles,
      'retention.runs': sources.flags.retainRuns,
    },
  }) as Record<string, never>;
  return compileMasterConfig(raw);
}

/** Turns a validated raw config into the typed object: durations in ms, paths absolute. */
export function compileMasterConfig(raw: Record<string, any>): MasterConfig {
  const l = raw.limits;
  return {
    port: raw.port,
    host: raw.host,
    dataDir: path.resolve(raw.dataDir),
    database: raw.database ?? null,
    databasePoolSize: raw.databasePoolSize,
    metrics: raw.metrics ? { host: raw.metrics.host, port: raw.metrics.port } : null,
    logLevel: raw.logLevel,
    leaseMs: parseDurationMs(raw.lease),
    sweepIntervalMs: parseDurationMs(raw.sweepInterval),
    retention: {
      logsMs: raw.retention.logs === undefined ? null : parseDurationMs(raw.retention.logs),
      filesMs: raw.retention.files === undefined ? null : parseDurationMs(raw.retention.files),
      runsMs: raw.retention.runs === undefined ? null : parseDurationMs(raw.retention.runs),
      intervalMs: parseDurationMs(raw.retention.interval),
      batch: raw.retention.batch,
    },
    limits: {
      jsonBodyBytes: l.jsonBodyBytes,
      configBytes: l.configBytes,
      resultFileBytes: l.resultFileBytes,
      runResultBytes: l.runResultBytes,
      filesPerRun: l.filesPerRun,
      logBytes: l.logBytes,
      maxConnections: l.maxConnections,
      connectionsPerAddress: l.connectionsPerAddress,
      headersTimeoutMs: parseDurationMs(l.headersTimeout),
      requestTimeoutMs: parseDurationMs(l.requestTimeout),
      bodyIdleTimeoutMs: parseDurationMs(l.bodyIdleTimeout),
      openTasksPerUser: l.openTasksPerUser,
      configBytesPerUser: l.configBytesPerUser,
    },
  };
}
