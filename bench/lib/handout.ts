import fs from 'node:fs';
import { Agent, request } from 'undici';
import { sleep } from '../../shared/abortable.js';
import { wallMs } from './stats.js';
import type { TrainWorld } from './world.js';

/** One hand-out to an idle long-polling site, in milliseconds of the wall clock. */
export interface HandoutSample {
  /** The researcher's createTask called → the site's long poll has its response headers. */
  handoutMs: number;
  /** createTask called → its answer in hand (the POST's round trip, for scale). */
  postMs: number;
  /** Whether the site had its run before the researcher had the POST's answer. */
  siteFirst: boolean;
  /** A GET /healthz round trip just before the POST: the HTTP floor of the registry at that moment. */
  healthMs: number;
  /** The registry process's CPU time (all threads) from before the POST to after both answers. */
  registryCpuMs: number;
  /** That span on the machine's monotonic clock, in microseconds (V8 CPU profiles use the same clock). */
  window: { fromUs: number; toUs: number };
}

/**
 * A raw HTTP long poller for one site (undici, one keep-alive connection) and the researcher's
 * SDK: each `sample()` parks the site's poll at the registry (its /healthz counts the poll as
 * waiting), posts a task to the site, times the hand-out, then starts and finishes the run like a
 * site would so that the registry's state stays realistic. Shared by bench:dispatch and
 * bench:celery, so that both measure the same thing.
 */
export class HandoutProbe {
  private readonly agent = new Agent({ keepAliveTimeout: 60_000, headersTimeout: 0, bodyTimeout: 0 });
  private readonly base: string;
  private readonly headers: Record<string, string>;

  constructor(
    private readonly world: TrainWorld,
    private readonly site: string,
    private readonly image: string,
  ) {
    this.base = `${world.registry.url}/api/v1/site`;
    this.headers = { authorization: `Bearer ${world.siteKeys.get(site)!}` };
  }

  async sample(): Promise<HandoutSample> {
    let received = 0;
    const poll = request(`${this.base}/runs/next?wait=30`, { dispatcher: this.agent, headers: this.headers }).then(
      async (res) => {
        received = wallMs();
        if (res.statusCode !== 200) throw new Error(`long poll answered ${res.statusCode}`);
        return (await res.body.json()) as { id: number };
      },
    );
    const healthMs = await this.waitUntilParked();
    const cpuBefore = cpuNs(this.world.registry.pid);
    const fromUs = monotonicUs();
    const posted = wallMs();
    const task = await this.world.researcher.createTask({ image: this.image, config: {}, sites: [this.site] });
    const answered = wallMs();
    const run = await poll;
    const toUs = monotonicUs();
    const registryCpuMs = (cpuNs(this.world.registry.pid) - cpuBefore) / 1e6;
    if (run.id !== task.runs[0]!.id) throw new Error('the poller got another run');
    for (const [step, body] of [
      ['start', {}],
      ['finish', { state: 'completed', exitCode: 0 }],
    ] as const) {
      const res = await request(`${this.base}/runs/${run.id}/${step}`, {
        method: 'POST',
        dispatcher: this.agent,
        headers: { ...this.headers, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      await res.body.text();
      if (res.statusCode !== 200) throw new Error(`${step} answered ${res.statusCode}`);
    }
    return {
      handoutMs: received - posted,
      postMs: answered - posted,
      siteFirst: received < answered,
      healthMs,
      registryCpuMs,
      window: { fromUs, toUs },
    };
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  /** Answers the round trip of the last /healthz, the one that saw the poll waiting. */
  private async waitUntilParked(): Promise<number> {
    for (let i = 0; i < 2000; i++) {
      const sent = wallMs();
      const res = await request(`${this.world.registry.url}/healthz`, { dispatcher: this.agent });
      const body = (await res.body.json()) as { waiting: { sites: number } };
      if (body.waiting.sites >= 1) return wallMs() - sent;
      await sleep(1);
    }
    throw new Error('the long poll never reached the registry');
  }
}

/** CPU time of every thread of a process so far, in nanoseconds (Linux schedstat: exact, not in ticks). */
export function cpuNs(pid: number): number {
  let total = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      total += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      /* a thread that ended between the listing and the read */
    }
  }
  return total;
}

/** The monotonic clock in microseconds (CLOCK_MONOTONIC, which V8's profiler timestamps use too). */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}
