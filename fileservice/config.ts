import path from 'node:path';
import { loadRawConfig, type EnvOverride } from '../shared/config-loader.js';
import { DURATION_SCHEMA, parseDurationMs } from '../shared/duration.js';

/** The file service's config file (JSON). Same conventions as the registry's: see README. */
export const fileServiceConfigSchema = {
  type: 'object',
  additionalProperties: false,
  patternProperties: { '^//': {} },
  properties: {
    port: { type: 'integer', minimum: 0, maximum: 65535, default: 5100 },
    host: { type: 'string', minLength: 1, default: '0.0.0.0' },
    dataDir: { type: 'string', minLength: 1, default: './fileservice-data' },
    logLevel: { enum: ['error', 'warn', 'info', 'debug'], default: 'info' },
    /** The TTP's private key; its public key (`.pub` beside it) is served at /api/v1/public-key. */
    keyFile: { type: 'string', minLength: 1 },
    /** Files older than this are deleted. */
    retention: { ...DURATION_SCHEMA, default: '168h' },
    /** How often expired files are looked for. */
    sweepInterval: { ...DURATION_SCHEMA, default: '1m' },
    limits: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        fileBytes: { type: 'integer', minimum: 1, default: 4294967296 },
        filesPerSenderAndTask: { type: 'integer', minimum: 1, default: 10000 },
        maxConnections: { type: 'integer', minimum: 1, default: 2000 },
        headersTimeout: { ...DURATION_SCHEMA, default: '20s' },
        requestTimeout: { ...DURATION_SCHEMA, default: '2h' },
      },
    },
  },
} as const;

export interface FileServiceConfig {
  port: number;
  host: string;
  dataDir: string;
  logLevel: string;
  keyFile: string;
  retentionMs: number;
  sweepIntervalMs: number;
  limits: {
    fileBytes: number;
    filesPerSenderAndTask: number;
    maxConnections: number;
    headersTimeoutMs: number;
    requestTimeoutMs: number;
  };
}

export const FILESERVICE_ENV_OVERRIDES: readonly EnvOverride[] = [
  { variable: 'PHT_PORT', path: 'port', type: 'integer' },
  { variable: 'PHT_HOST', path: 'host', type: 'string' },
  { variable: 'PHT_DATA_DIR', path: 'dataDir', type: 'string' },
  { variable: 'PHT_LOG_LEVEL', path: 'logLevel', type: 'string' },
  { variable: 'PHT_TTP_KEY_FILE', path: 'keyFile', type: 'string' },
];

export interface FileServiceConfigSources {
  file: string | null;
  env: NodeJS.ProcessEnv;
  flags: { port?: number; host?: string; dataDir?: string; keyFile?: string };
}

export function loadFileServiceConfig(sources: FileServiceConfigSources): FileServiceConfig {
  const raw = loadRawConfig({
    file: sources.file,
    fileRequired: sources.file !== null,
    schema: fileServiceConfigSchema,
    env: sources.env,
    envOverrides: FILESERVICE_ENV_OVERRIDES,
    flagOverrides: { ...sources.flags },
  });
  return compileFileServiceConfig(raw);
}

/** Turns a validated raw config into the typed object: durations in ms, paths absolute. */
export function compileFileServiceConfig(raw: Record<string, any>): FileServiceConfig {
  const l = raw.limits;
  const dataDir = path.resolve(raw.dataDir);
  return {
    port: raw.port,
    host: raw.host,
    dataDir,
    logLevel: raw.logLevel,
    keyFile: path.resolve(raw.keyFile ?? path.join(dataDir, 'keys', 'ttp.key')),
    retentionMs: parseDurationMs(raw.retention),
    sweepIntervalMs: parseDurationMs(raw.sweepInterval),
    limits: {
      fileBytes: l.fileBytes,
      filesPerSenderAndTask: l.filesPerSenderAndTask,
      maxConnections: l.maxConnections,
      headersTimeoutMs: parseDurationMs(l.headersTimeout),
      requestTimeoutMs: parseDurationMs(l.requestTimeout),
    },
  };
}
