import fs from 'node:fs';
import Ajv from 'ajv';
import { ConfigError } from './errors.js';
import { describeErrors } from './validation.js';

/** Config files get their own Ajv: it fills in schema defaults, which API validation must never do. */
const configAjv = new Ajv({ allErrors: true, strict: true, useDefaults: true, allowUnionTypes: true });

export interface EnvOverride {
  /** Environment variable, e.g. PHT_PORT. */
  variable: string;
  /** Dotted path in the config object, e.g. "port" or "limits.memory". */
  path: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'json';
}

export interface LoadConfigOptions {
  /** The config file; null means "no file, defaults and overrides only". */
  file: string | null;
  /** When false, a missing file is treated as `{}`. */
  fileRequired: boolean;
  schema: object;
  env: NodeJS.ProcessEnv;
  envOverrides: readonly EnvOverride[];
  /** Values from command-line flags, by dotted path; they win over the environment. */
  flagOverrides?: Record<string, unknown>;
}

/**
 * Reads a JSON config file, applies environment and flag overrides, fills in defaults and
 * validates it. Every error names the file and the field.
 */
export function loadRawConfig(options: LoadConfigOptions): Record<string, unknown> {
  const { file } = options;
  let raw: unknown = {};
  if (file) {
    let text: string | null = null;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      if (options.fileRequired) throw new ConfigError(`cannot read config file ${file}: ${(e as Error).message}`, file);
    }
    if (text !== null) {
      try {
        raw = JSON.parse(text);
      } catch (e) {
        throw new ConfigError(`config file ${file} is not valid JSON: ${(e as Error).message}`, file);
      }
    }
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(`config file ${file ?? ''} must hold a JSON object`, file);
  }
  const config = structuredClone(raw) as Record<string, unknown>;
  for (const o of options.envOverrides) {
    const value = options.env[o.variable];
    if (value === undefined || value === '') continue;
    setPath(config, o.path, parseEnvValue(value, o, file));
  }
  for (const [path, value] of Object.entries(options.flagOverrides ?? {})) {
    if (value !== undefined) setPath(config, path, value);
  }
  const validate = configAjv.compile(options.schema);
  if (!validate(config)) {
    const where = file ? `config file ${file}` : 'configuration';
    const problems = describeErrors(validate.errors ?? [], 'config');
    throw new ConfigError(`invalid ${where}:\n  ${problems.join('\n  ')}`, file);
  }
  return config;
}

function parseEnvValue(value: string, o: EnvOverride, file: string | null): unknown {
  switch (o.type) {
    case 'string':
      return value;
    case 'integer':
    case 'number': {
      const n = Number(value);
      if (!Number.isFinite(n) || (o.type === 'integer' && !Number.isInteger(n))) {
        throw new ConfigError(
          `environment variable ${o.variable} must be ${o.type === 'integer' ? 'an integer' : 'a number'}, got "${value}"`,
          file,
        );
      }
      return n;
    }
    case 'boolean':
      if (value === 'true' || value === '1') return true;
      if (value === 'false' || value === '0') return false;
      throw new ConfigError(`environment variable ${o.variable} must be true or false, got "${value}"`, file);
    case 'json':
      try {
        return JSON.parse(value);
      } catch {
        throw new ConfigError(`environment variable ${o.variable} must be JSON`, file);
      }
  }
}

function setPath(target: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  let cursor = target;
  for (const key of keys.slice(0, -1)) {
    const next = cursor[key];
    if (!next || typeof next !== 'object' || Array.isArray(next)) cursor[key] = {};
    cursor = cursor[key] as Record<string, unknown>;
  }
  cursor[keys[keys.length - 1]!] = value;
}
