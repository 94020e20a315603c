import { Writable } from 'node:stream';
import winston from 'winston';
import client from 'prom-client';
import type { Logger } from '../shared/logger.js';

/**
 * The site client's Prometheus metrics (names in the README, "Metrics"). Runs and SPARQL queries
 * are counted from the audit log's events, so they count exactly what the site's own record
 * says; Docker errors come from the engine boundary.
 */
export class ClientMetrics {
  readonly registry = new client.Registry();
  readonly runsReceived = new client.Counter({
    name: 'pht_client_runs_received_total',
    help: 'Runs handed to this site by the registry',
    registers: [this.registry],
  });
  readonly runsReported = new client.Counter({
    name: 'pht_client_runs_reported_total',
    help: 'Runs whose result was reported to the registry, by final state',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });
  readonly imagesRefused = new client.Counter({
    name: 'pht_client_images_refused_total',
    help: 'Runs refused because their image is not on the allowlist',
    registers: [this.registry],
  });
  readonly dockerErrors = new client.Counter({
    name: 'pht_client_docker_errors_total',
    help: 'Errors from the Docker engine: unavailable (retried) or permanent (the run fails)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly gatewayQueries = new client.Counter({
    name: 'pht_client_gateway_queries_total',
    help: 'SPARQL requests through the gateway: ok, error (upstream status >= 400), truncated (over the size cap), refused (updates)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly gatewayBytes = new client.Counter({
    name: 'pht_client_gateway_response_bytes_total',
    help: 'Bytes of SPARQL answers passed to containers',
    registers: [this.registry],
  });

  constructor() {
    client.collectDefaultMetrics({ register: this.registry, prefix: 'pht_client_' });
  }

  /** Counts the audit log's events from now on. */
  watchAudit(audit: Logger): void {
    const sink = new Writable({
      write: (chunk: Buffer, _enc, callback) => {
        for (const line of chunk.toString('utf8').split('\n')) {
          if (!line) continue;
          try {
            this.count(JSON.parse(line) as Record<string, unknown>);
          } catch {
            /* not one of ours: the audit log writes JSON lines only */
          }
        }
        callback();
      },
    });
    // Its own JSON format: the audit logger leaves serialising to its chain transport, so a plain
    // stream transport would receive no line at all.
    audit.add(new winston.transports.Stream({ stream: sink, format: winston.format.json() }));
  }

  /** For the engine boundary: one Docker error of this kind. */
  dockerError(kind: 'unavailable' | 'permanent'): void {
    this.dockerErrors.inc({ kind });
  }

  count(event: Record<string, unknown>): void {
    switch (event.event) {
      case 'run_received':
        this.runsReceived.inc();
        return;
      case 'result_reported':
        if (typeof event.state === 'string') this.runsReported.inc({ state: event.state });
        return;
      case 'image_decision':
        if (event.allowed === false) this.imagesRefused.inc();
        return;
      case 'sparql_query': {
        const status = typeof event.status === 'number' ? event.status : 0;
        this.gatewayQueries.inc({ outcome: event.truncated === true ? 'truncated' : status >= 400 ? 'error' : 'ok' });
        if (typeof event.bytes === 'number') this.gatewayBytes.inc(event.bytes);
        return;
      }
      case 'sparql_update_refused':
        this.gatewayQueries.inc({ outcome: 'refused' });
        return;
    }
  }
}
