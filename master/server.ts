import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { coerceError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import type { MasterConfig } from './config.js';
import { RegistryEvents } from './events.js';
import { guardConnections } from './connection-guard.js';
import { WaitingPolls } from './hand-out.js';
import { createRequestListener } from './http/app.js';
import { RegistryMetrics } from './metrics.js';
import { ResultFileStore } from './result-files.js';
import { startRetention } from './retention.js';
import { serveMetrics } from '../shared/metrics-server.js';
import type { RegistryStore } from './store/registry-store.js';
import type { PublicKeys } from './public-keys.js';
import { connectEvents, openPublicKeys, openStore } from './store/open-store.js';
import {
  PRINCIPAL_CACHE_TTL_MS,
  PrincipalWatch,
  WATCHED_PRINCIPAL_CACHE_TTL_MS,
  withPrincipalCache,
} from './store/principal-cache.js';

export { openStore };

/**
 * How long a file in a shared result directory must have been left untouched before a starting
 * registry treats it as a crash's leftover: far longer than recording a stored upload takes, and
 * an upload still being written keeps its temporary file's time fresh.
 */
export const SHARED_FILES_GRACE_MS = 15 * 60_000;

export interface RunningRegistry {
  url: string;
  port: number;
  store: RegistryStore;
  events: RegistryEvents;
  /** The public keys the registry relays (same database as `store`). */
  keys: PublicKeys;
  /** URL of this process's GET /metrics, or null when no metrics listener is configured. */
  metricsUrl: string | null;
  /** Stops accepting requests, ends long polls, closes the database. Idempotent. */
  close(): Promise<void>;
}

export async function startRegistry(config: MasterConfig, logger: Logger): Promise<RunningRegistry> {
  const location = {
    dataDir: config.dataDir,
    database: config.database,
    poolSize: config.databasePoolSize,
    onIdleError: (e: Error) => logger.warn('a database connection was lost', { error: e.message }),
  };
  // The event bus and the public keys need the backend itself (its pool). The principal cache
  // sees a change made by another process (`node master revoke`, another registry) at the next
  // request: on SQLite through the file's data_version, on PostgreSQL through a trigger's NOTIFY
  // (migration 0007); while the LISTEN connection is down, the cache is bypassed.
  const backend = await openStore(location);
  const watch = config.database ? new PrincipalWatch() : undefined;
  const store = withPrincipalCache(backend, watch ? WATCHED_PRINCIPAL_CACHE_TTL_MS : PRINCIPAL_CACHE_TTL_MS, watch);
  const events = new RegistryEvents();
  // Shared by the routes and the event bus: a task posted on another registry process is handed
  // to the polls parked here in one batch claim too.
  const polls = new WaitingPolls((site) => events.notifySite(site));
  const bus = await connectEvents(
    backend,
    location,
    events,
    (message, e) => logger.warn(message, { error: e.message }),
    watch,
    (sites) => polls.offer(store, sites, config.leaseMs),
  ).catch(async (e: unknown) => {
    await store.close();
    throw e;
  });
  // With PostgreSQL, several registry processes share the result files directory (see README).
  const files = new ResultFileStore(config.dataDir, config.database ? SHARED_FILES_GRACE_MS : 0);
  const orphans = files.removeUnreferenced(await store.storedFileNames());
  if (orphans > 0)
    logger.warn('removed result files no run refers to (left by a crash mid-upload)', { files: orphans });
  const keys = openPublicKeys(backend, location);
  const metrics = new RegistryMetrics(store, events);
  const app = createRequestListener({ store, events, files, config, logger, keys, metrics, polls });
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
    // A deep accept queue (the kernel caps it at net.core.somaxconn): thousands of sites whose
    // polls are answered by one broadcast come back at once, as does a load balancer refilling
    // its connection pool; Node's default of 511 refused them (nginx then answered 502).
    server.listen({ port: config.port, host: config.host, backlog: 4096 }, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const metricsListener = config.metrics
    ? await serveMetrics(metrics.registry, config.metrics.host, config.metrics.port)
    : null;

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
  const stopRetention = startRetention(store, files, config.retention, logger);

  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  logger.info('registry listening', {
    host: config.host,
    port,
    dataDir: config.dataDir,
    backend: config.database ? 'postgres' : 'sqlite',
    metrics: metricsListener?.url ?? null,
  });
  let closing: Promise<void> | null = null;
  return {
    url: `http://${host}:${port}`,
    keys,
    metricsUrl: metricsListener?.url ?? null,
    port,
    store,
    events,
    close() {
      closing ??= (async () => {
        clearInterval(sweeper);
        await stopRetention();
        await metricsListener?.close();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        await bus?.close();
        await keys.close();
        await store.close();
        logger.info('registry stopped');
      })();
      return closing;
    },
  };
}
