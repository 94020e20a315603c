import winston from 'winston';

export type Logger = winston.Logger;

export interface LoggerOptions {
  level?: string;
  /** 'json' writes one JSON object per line (production); 'pretty' is for a terminal. */
  format?: 'json' | 'pretty';
  /** Extra fields on every line, e.g. { component: 'master' }. */
  defaultMeta?: Record<string, unknown>;
}

/**
 * The one logger setup of the project. Defaults: JSON lines unless stderr is a terminal, level
 * from PHT_LOG_LEVEL or 'info'. Logs go to stderr so stdout stays free for command output.
 */
export function createLogger(options: LoggerOptions = {}, env: NodeJS.ProcessEnv = process.env): Logger {
  const format = options.format ?? (env.PHT_LOG_FORMAT === 'json' || !process.stderr.isTTY ? 'json' : 'pretty');
  const level = options.level ?? env.PHT_LOG_LEVEL ?? 'info';
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
        : winston.format.combine(
            winston.format.timestamp({ format: 'HH:mm:ss.SSS' }),
            winston.format.colorize(),
            winston.format.printf(({ timestamp, level: lvl, message, ...meta }) => {
              const rest = Object.keys(meta).length ? ' ' + JSON.stringify(meta) : '';
              return `${String(timestamp)} ${lvl} ${String(message)}${rest}`;
            }),
          ),
    transports: [
      new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'] }),
    ],
  });
}

/** A logger that drops everything: for tests and library users who bring no logger. */
export function silentLogger(): Logger {
  return winston.createLogger({ silent: true, transports: [new winston.transports.Console({ silent: true })] });
}
