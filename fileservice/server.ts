import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { coerceError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { createFileServiceApp } from './app.js';
import type { FileServiceConfig } from './config.js';
import { FileBytes } from './file-store.js';
import { FileServiceStore } from './store.js';

export interface RunningFileService {
  url: string;
  port: number;
  store: FileServiceStore;
  /** Deletes files older than the retention (also run on a timer); returns how many. */
  sweep(now?: Date): number;
  /** Stops accepting requests and closes the database. Idempotent. */
  close(): Promise<void>;
}

export async function startFileService(config: FileServiceConfig, logger: Logger): Promise<RunningFileService> {
  const store = new FileServiceStore(config.dataDir);
  const bytes = new FileBytes(config.dataDir);
  const orphans = bytes.removeUnreferenced(store.storedNames());
  if (orphans > 0)
    logger.warn('removed stored files no record refers to (left by a crash mid-upload)', { files: orphans });
  const app = createFileServiceApp({ store, bytes, config, logger });
  const server = http.createServer(
    { connectionsCheckingInterval: Math.max(250, Math.min(30_000, Math.floor(config.limits.headersTimeoutMs / 2))) },
    app,
  );
  server.headersTimeout = config.limits.headersTimeoutMs;
  server.requestTimeout = config.limits.requestTimeoutMs;
  server.maxConnections = config.limits.maxConnections;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  const sweep = (now: Date = new Date()): number => {
    let removed = 0;
    for (;;) {
      const expired = store.takeExpired(now.getTime() - config.retentionMs);
      for (const f of expired) bytes.remove(f.storedAs);
      removed += expired.length;
      if (expired.length === 0) break;
    }
    if (removed > 0) logger.info('deleted files past their retention', { files: removed });
    return removed;
  };
  const sweeper = setInterval(() => {
    try {
      sweep();
    } catch (e) {
      logger.error('retention sweep failed', { error: coerceError(e).message });
    }
  }, config.sweepIntervalMs);
  sweeper.unref();

  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  logger.info('file service listening', { host: config.host, port, dataDir: config.dataDir });
  let closing: Promise<void> | null = null;
  return {
    url: `http://${host}:${port}`,
    port,
    store,
    sweep,
    close() {
      closing ??= (async () => {
        clearInterval(sweeper);
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        store.close();
        logger.info('file service stopped');
      })();
      return closing;
    },
  };
}
