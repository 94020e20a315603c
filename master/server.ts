import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { coerceError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import type { MasterConfig } from './config.js';
import { RegistryEvents } from './events.js';
import { guardConnections } from './connection-guard.js';
import { createApp } from './http/app.js';
import { ResultFileStore } from './result-files.js';
import type { RegistryStore } from './store/registry-store.js';
import { openStore } from './store/open-store.js';
import { PublicKeyStore } from './public-keys.js';

export { openStore };

export interface RunningRegistry {
  url: string;
  port: number;
  store: RegistryStore;
  events: RegistryEvents;
  /** Stops accepting requests, ends long polls, closes the database. Idempotent. */
  close(): Promise<void>;
}

export async function startRegistry(config: MasterConfig, logger: Logger): Promise<RunningRegistry> {
  const store = openStore(config.dataDir);
  const events = new RegistryEvents();
  const files = new ResultFileStore(config.dataDir);
  const orphans = files.removeUnreferenced(await store.storedFileNames());
  if (orphans > 0)
    logger.warn('removed result files no run refers to (left by a crash mid-upload)', { files: orphans });
  const keys = new PublicKeyStore(config.dataDir);
  const app = createApp({ store, events, files, config, logger, keys });
  // Node enforces headersTimeout only when it checks its connections (every 30 s by default):
  // check often enough that a slow-loris connection is closed close to the configured limit.
  const server = http.createServer(
    { connectionsCheckingInterval: Math.max(250, Math.min(30_000, Math.floor(config.limits.headersTimeoutMs / 2))) },
    app,
  );
  // Slow-loris defence: headers must arrive quickly; bodies may take long (multi-GB results).
  server.headersTimeout = config.limits.headersTimeoutMs;
  server.requestTimeout = config.limits.requestTimeoutMs;
  server.keepAliveTimeout = 65_000;
  server.maxConnections = config.limits.maxConnections;
  guardConnections(server, config.limits, logger);

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  const sweeper = setInterval(() => {
    store
      .sweep(Date.now(), config.leaseMs)
      .then((outcome) => {
        for (const site of outcome.requeuedSites) events.notifySite(site);
        for (const taskId of outcome.changedTasks) events.notifyTask(taskId);
        if (outcome.requeuedSites.length || outcome.changedTasks.length) logger.info('sweep changed runs', outcome);
      })
      .catch((e: unknown) => logger.error('sweep failed', { error: coerceError(e).message }));
  }, config.sweepIntervalMs);
  sweeper.unref();

  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  logger.info('registry listening', { host: config.host, port, dataDir: config.dataDir });
  let closing: Promise<void> | null = null;
  return {
    url: `http://${host}:${port}`,
    port,
    store,
    events,
    close() {
      closing ??= (async () => {
        clearInterval(sweeper);
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        keys.close();
        await store.close();
        logger.info('registry stopped');
      })();
      return closing;
    },
  };
}
