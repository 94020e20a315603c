import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createAuditLog } from '../../client/audit-log.js';
import { DockerEngine } from '../../client/container-engine.js';
import { ClientMetrics } from '../../client/metrics.js';
import { serveMetrics, type MetricsListener } from '../../shared/metrics-server.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0)) await fn();
});

function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

async function listen(metrics: ClientMetrics): Promise<MetricsListener> {
  const listener = await serveMetrics(metrics.registry, '127.0.0.1', 0);
  cleanup.push(() => listener.close());
  return listener;
}

describe('site client metrics', () => {
  it('counts runs, refused images and gateway queries from the audit log', async () => {
    const dir = makeTempDir('pht-client-metrics-');
    cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const metrics = new ClientMetrics();
    const audit = createAuditLog(path.join(dir, 'audit.log'), 'site-a');
    metrics.watchAudit(audit);
    audit.info('run received', { event: 'run_received', runId: 1 });
    audit.info('run received', { event: 'run_received', runId: 2 });
    audit.info('image decision', { event: 'image_decision', runId: 2, allowed: false });
    audit.info('result reported', { event: 'result_reported', runId: 1, state: 'completed' });
    audit.info('result reported', { event: 'result_reported', runId: 2, state: 'rejected' });
    audit.info('sparql query', { event: 'sparql_query', runId: 1, status: 200, bytes: 300, truncated: false });
    audit.info('sparql query', { event: 'sparql_query', runId: 1, status: 400, bytes: 20, truncated: false });
    audit.info('sparql query', { event: 'sparql_query', runId: 1, status: 200, bytes: 999, truncated: true });
    audit.warn('sparql update refused', { event: 'sparql_update_refused', runId: 1 });
    const listener = await listen(metrics);
    const res = await fetch(listener.url);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(sample(text, 'pht_client_runs_received_total')).toBe(2);
    expect(sample(text, 'pht_client_runs_reported_total{state="completed"}')).toBe(1);
    expect(sample(text, 'pht_client_runs_reported_total{state="rejected"}')).toBe(1);
    expect(sample(text, 'pht_client_images_refused_total')).toBe(1);
    expect(sample(text, 'pht_client_gateway_queries_total{outcome="ok"}')).toBe(1);
    expect(sample(text, 'pht_client_gateway_queries_total{outcome="error"}')).toBe(1);
    expect(sample(text, 'pht_client_gateway_queries_total{outcome="truncated"}')).toBe(1);
    expect(sample(text, 'pht_client_gateway_queries_total{outcome="refused"}')).toBe(1);
    expect(sample(text, 'pht_client_gateway_response_bytes_total')).toBe(1319);
    expect(text).toContain('pht_client_process_resident_memory_bytes');
  });

  it('counts an unreachable Docker engine as a Docker error', async () => {
    const metrics = new ClientMetrics();
    const engine = new DockerEngine('/nonexistent/docker.sock', (kind) => metrics.dockerError(kind));
    await expect(engine.ping()).rejects.toThrow(/unreachable/);
    const text = await (await fetch((await listen(metrics)).url)).text();
    expect(sample(text, 'pht_client_docker_errors_total{kind="unavailable"}')).toBe(1);
  });

  it('answers 404 to anything but GET /metrics', async () => {
    const listener = await listen(new ClientMetrics());
    expect((await fetch(listener.url.replace('/metrics', '/'))).status).toBe(404);
    expect((await fetch(listener.url, { method: 'POST' })).status).toBe(404);
  });
});
