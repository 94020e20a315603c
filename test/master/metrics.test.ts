import { describe, expect, it } from 'vitest';
import { populate, registry } from './helpers.js';

async function scrape(url: string): Promise<string> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
  return res.text();
}

/** The value of one sample line, e.g. `pht_registry_runs{state="running"}`. */
function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

describe('registry metrics', () => {
  it('serves no metrics listener unless one is configured', async () => {
    const reg = await registry();
    expect(reg.metricsUrl).toBeNull();
    // Nor on the public port.
    expect((await fetch(`${reg.url}/metrics`)).status).toBe(404);
  });

  it('counts requests by route pattern and status, hand-outs, uploads, runs by state and sites last seen', async () => {
    const reg = await registry({ metrics: { port: 0 } });
    expect(reg.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const w = await populate(reg, 2);
    const [a, b] = [w.sites[0]!, w.sites[1]!];
    await w.researcher.createTask({ sites: ['site-a', 'site-b'] });
    const run = await a.claimAndStart();
    await a.upload(run.id, 'out.csv', Buffer.alloc(1234, 7)).expect(201);
    await a.post(`/api/v1/site/runs/${run.id}/start`).expect(409);
    const text = await scrape(reg.metricsUrl!);

    const requests = 'pht_registry_http_request_duration_seconds_count';
    expect(sample(text, `${requests}{method="GET",route="/api/v1/site/runs/next",status="200"}`)).toBe(1);
    expect(sample(text, `${requests}{method="POST",route="/api/v1/site/runs/:id/start",status="200"}`)).toBe(1);
    expect(sample(text, `${requests}{method="POST",route="/api/v1/site/runs/:id/start",status="409"}`)).toBe(1);
    expect(sample(text, `${requests}{method="POST",route="/api/v1/tasks",status="201"}`)).toBe(1);
    // Run ids never become label values (one series per run would grow without bound).
    expect(text).not.toContain(`/runs/${run.id}/`);
    expect(sample(text, 'pht_registry_handout_duration_seconds_count')).toBe(1);
    expect(sample(text, 'pht_registry_upload_bytes_total')).toBe(1234);
    expect(sample(text, 'pht_registry_runs{state="running"}')).toBe(1);
    expect(sample(text, 'pht_registry_runs{state="queued"}')).toBe(1);
    expect(sample(text, 'pht_registry_runs{state="completed"}')).toBe(0);
    const seen = sample(text, 'pht_registry_site_last_seen_timestamp_seconds{site="site-a"}');
    expect(seen).toBeGreaterThan(Date.now() / 1000 - 60);
    expect(sample(text, 'pht_registry_site_last_seen_timestamp_seconds{site="site-b"}')).toBeUndefined();
    expect(text).toContain('pht_registry_process_resident_memory_bytes');

    // A waiting long poll is counted while it waits.
    const poll = new Promise((resolve, reject) => {
      a.get('/api/v1/site/runs/next?wait=30').then(resolve, reject);
    });
    const until = Date.now() + 10_000;
    while (sample(await scrape(reg.metricsUrl!), 'pht_registry_long_polls_waiting{kind="site"}') !== 1) {
      if (Date.now() > until) throw new Error('the waiting poll was never counted');
      await new Promise((r) => setTimeout(r, 20));
    }
    await b.claim();
    await w.researcher.createTask({ sites: ['site-a'] });
    await poll;
  });
});
