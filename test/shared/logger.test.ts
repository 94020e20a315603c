import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../shared/errors.js';
import { createLogger, type LoggerOptions } from '../../shared/logger.js';

/** Logs one line through a logger writing to a pipe (not a terminal, as under a supervisor). */
async function oneLine(env: NodeJS.ProcessEnv, options: LoggerOptions = {}, tty = false): Promise<string> {
  const stream = Object.assign(new PassThrough(), { isTTY: tty });
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  const logger = createLogger({ ...options, stream }, env);
  logger.info('run received', { runId: 7 });
  await new Promise<void>((resolve) => setImmediate(resolve));
  return Buffer.concat(chunks).toString('utf8').trimEnd();
}

describe('the logger', () => {
  it('writes JSON lines by default when not on a terminal', async () => {
    const line = await oneLine({});
    expect(JSON.parse(line)).toMatchObject({ level: 'info', message: 'run received', runId: 7 });
  });

  it('PHT_LOG_FORMAT=pretty gives readable lines even when not on a terminal (as documented)', async () => {
    const line = await oneLine({ PHT_LOG_FORMAT: 'pretty' });
    expect(line).toMatch(/^\d\d:\d\d:\d\d\.\d{3} info run received \{"runId":7\}$/);
  });

  it('colours pretty lines on a terminal only', async () => {
    expect(await oneLine({ PHT_LOG_FORMAT: 'pretty' }, {}, true)).toContain('\u001b[');
    expect(await oneLine({ PHT_LOG_FORMAT: 'pretty' })).not.toContain('\u001b[');
  });

  it('PHT_LOG_FORMAT=json gives JSON lines on a terminal too', async () => {
    expect(JSON.parse(await oneLine({ PHT_LOG_FORMAT: 'json' }, {}, true))).toMatchObject({ runId: 7 });
  });

  it('refuses an unknown PHT_LOG_FORMAT with a message naming the variable', () => {
    expect(() => createLogger({}, { PHT_LOG_FORMAT: 'yaml' })).toThrow(ConfigError);
    expect(() => createLogger({}, { PHT_LOG_FORMAT: 'yaml' })).toThrow(/PHT_LOG_FORMAT must be "json" or "pretty"/);
  });
});
