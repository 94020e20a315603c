import { Writable } from 'node:stream';
import winston from 'winston';

export interface LoggedLine {
  level: string;
  message: string;
  [field: string]: unknown;
}

/**
 * A winston logger that keeps what it logs at `level` and above in `lines` (parsed JSON lines),
 * and tells `onLine` of each as it comes, for tests that wait for a line.
 */
export function capturingLogger(
  lines: LoggedLine[],
  options: { level?: string; onLine?: (line: LoggedLine) => void } = {},
): winston.Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, callback) {
      for (const text of chunk.toString('utf8').split('\n')) {
        if (!text) continue;
        const line = JSON.parse(text) as LoggedLine;
        lines.push(line);
        options.onLine?.(line);
      }
      callback();
    },
  });
  return winston.createLogger({
    level: options.level ?? 'warn',
    format: winston.format.json(),
    transports: [new winston.transports.Stream({ stream: sink })],
  });
}
