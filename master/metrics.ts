import type { NextFunction, Request, Response } from 'express';
import client from 'prom-client';
import { RUN_STATES } from '../shared/run-state.js';
import type { RegistryEvents } from './events.js';
import type { RegistryStore } from './store/registry-store.js';

/**
 * The registry's Prometheus metrics. Names are documented in the README ("Metrics"); each
 * registry process has its own, so a consortium scrapes every process. Gauges that describe the
 * whole registry (runs by state, sites last seen) are read from the database at scrape time and
 * are the same on every process.
 */
export class RegistryMetrics {
  readonly registry = new client.Registry();
  private readonly requestDuration = new client.Histogram({
    name: 'pht_registry_http_request_duration_seconds',
    help: 'HTTP requests by method, route pattern and status, with their latency (long polls included)',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30, 60],
    registers: [this.registry],
  });
  /** Time the database took to hand a run to a site (the claim transaction). */
  readonly handoutDuration = new client.Histogram({
    name: 'pht_registry_handout_duration_seconds',
    help: 'Time to claim a queued run for a polling site (one database transaction), for claims that handed out a run',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly uploadBytes = new client.Counter({
    name: 'pht_registry_upload_bytes_total',
    help: 'Bytes of result files received and stored',
    registers: [this.registry],
  });

  constructor(store: RegistryStore, events: RegistryEvents) {
    client.collectDefaultMetrics({ register: this.registry, prefix: 'pht_registry_' });
    new client.Gauge({
      name: 'pht_registry_long_polls_waiting',
      help: 'Long polls waiting in this process: site polls for work, researcher waits and event streams on tasks',
      labelNames: ['kind'] as const,
      registers: [this.registry],
      collect() {
        const { sites, tasks } = events.waiting();
        this.set({ kind: 'site' }, sites);
        this.set({ kind: 'task' }, tasks);
      },
    });
    new client.Gauge({
      name: 'pht_registry_runs',
      help: 'Runs in the registry by state',
      labelNames: ['state'] as const,
      registers: [this.registry],
      async collect() {
        const counts = await store.countRunsByState();
        for (const state of RUN_STATES) this.set({ state }, counts[state] ?? 0);
      },
    });
    new client.Gauge({
      name: 'pht_registry_site_last_seen_timestamp_seconds',
      help: 'When each site last called the registry (Unix time; absent: never)',
      labelNames: ['site'] as const,
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const site of await store.listSites())
          if (site.lastSeen) this.set({ site: site.name }, Date.parse(site.lastSeen) / 1000);
      },
    });
  }

  /**
   * Express middleware timing every request. The route label is the matched pattern (never the raw
   * path: one series per run id would grow without bound). `mounts` are the routers' mount paths,
   * longest first: once a handler has thrown, Express has already reset `req.baseUrl`.
   */
  /** One request served outside Express (the long poll's fast path, app.ts); `seconds` since it arrived. */
  recordRequest(method: string, route: string, status: number, seconds: number): void {
    this.requestDuration.observe({ method, route, status: String(status) }, seconds);
  }

  middleware(mounts: readonly string[]) {
    return (req: Request, res: Response, next: NextFunction): void => {
      const end = this.requestDuration.startTimer();
      res.once('close', () => {
        let pattern = 'unmatched';
        if (req.route) {
          const mount =
            req.baseUrl || (mounts.find((m) => req.originalUrl === m || req.originalUrl.startsWith(`${m}/`)) ?? '');
          pattern = `${mount}${String(req.route.path)}`;
        }
        end({ method: req.method, route: pattern, status: String(res.statusCode) });
      });
      next();
    };
  }
}
