import type { Writable } from 'node:stream';
import winston from 'winston';
import { ConfigError } from './errors.js';

export type Logger = winston.Logger;

export type LogFormat = 'json' | 'pretty';

export interface LoggerOptions {
  level?: string;
  /** 'json' writes one JSON object per line (production); 'pretty' is for a terminal. Wins over PHT_LOG_FORMAT. */
  format?: LogFormat;
  /** Extra fields on every line, e.g. { component: 'master' }. */
  defaultMeta?: Record<string, unknown>;
  /** Where lines go (default: stderr, so stdout stays free for command output). */
  stream?: Writable & { isTTY?: boolean };
}

/**
 * The one logger setup of the project. The format is `options.format`, else PHT_LOG_FORMAT
 * (`json` or `pretty`; anything else is refused), else pretty on a terminal and JSON lines
 * otherwise. Pretty lines are coloured only on a terminal. Level from PHT_LOG_LEVEL or 'info'.
 */
export function createLogger(options: LoggerOptions = {}, env: NodeJS.ProcessEnv = process.env): Logger {
  const stream = options.stream ?? process.stderr;
  const format = options.format ?? formatFromEnv(env) ?? (stream.isTTY ? 'pretty' : 'json');
  const level = options.level ?? env.PHT_LOG_LEVEL ?? 'info';
  const pretty = [
    winston.format.timestamp({ format: 'HH:mm:ss.SSS' }),
    ...(stream.isTTY ? [winston.format.colorize()] : []),
    winston.format.printf(({ timestamp, level: lvl, message, ...meta }) => {
      const rest = Object.keys(meta).length ? ' ' + JSON.stringify(meta) : '';
      return `${String(timestamp)} ${lvl} ${String(message)}${rest}`;
    }),
  ];
  return winston.createLogger({
    level,
    defaultMeta: options.defaultMeta,
    format:
      format === 'json'
        ? winston.format.combine(
            winston.format.timestamp(),
            winston.format.errors({ stack: false }),
            winston.format.json(),
          )
        : winston.format.combine(...pretty),
    transports: [
      options.stream
        ? new winston.transports.Stream({ stream: options.stream })
        : new winston.transports.Console({
            stderrLevels: ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'],
          }),
    ],
  });
}

function formatFromEnv(env: NodeJS.ProcessEnv): LogFormat | undefined {
  const value = env.PHT_LOG_FORMAT;
  if (value === undefined || value === '') return undefined;
  if (value === 'json' || value === 'pretty') return value;
  throw new ConfigError(`environment variable PHT_LOG_FORMAT must be "json" or "pretty", got "${value}"`, null);
}

/** A logger that drops everything: for tests and library users who bring no logger. */
export function silentLogger(): Logger {
  return winston.createLogger({ silent: true, transports: [new winston.transports.Console({ silent: true })] });
}
