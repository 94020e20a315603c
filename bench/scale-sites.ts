/**
 * Load generator for figure 3 (a child process of scale.ts): simulates many sites over plain HTTP,
 * each either long polling or polling on an interval, and completing every run it gets (start,
 * then finish) so the registry's state stays what real sites would leave. Talks to its parent
 * over the IPC channel: "start" in, "ready" and the "done" report out.
 */
import { setMaxListeners } from 'node:events';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Agent, request } from 'undici';
import { retry, sleep } from '../shared/abortable.js';
import { wallMs } from './lib/stats.js';

export interface StartMessage {
  type: 'start';
  url: string;
  sites: { name: string; key: string }[];
  mode: 'long' | 'plain';
  waitSeconds: number;
  intervalMs: number;
}

export interface DoneMessage {
  type: 'done';
  /** [taskId, runId, receivedAt (wall ms)] per run received. */
  receipts: [number, number, number][];
  polls: number;
  /** Durations of plain polls (ms), for the request latency under load. */
  pollLatencies: number[];
  /** When (wall ms) each long poll that ended with nothing (204) was answered: its site polls again at once. */
  timeouts: number[];
  /**
   * [wall ms, worst event-loop delay (ms) over the 250 ms before]: a hand-out is timed when this
   * process reads the answer, so a busy load generator delays it as much as a busy registry.
   */
  loopDelays: [number, number][];
  errors: number;
  errorSamples: string[];
  /** Requests sent again after a network error or a 5xx, by what went wrong. */
  retries: Record<string, number>;
}

let stopping = false;
const abort = new AbortController();
// Every site's poll listens on this one signal.
setMaxListeners(0, abort.signal);
const result: DoneMessage = {
  type: 'done',
  receipts: [],
  polls: 0,
  pollLatencies: [],
  timeouts: [],
  loopDelays: [],
  errors: 0,
  errorSamples: [],
  retries: {},
};

function fail(what: string): void {
  result.errors++;
  if (result.errorSamples.length < 10) result.errorSamples.push(what);
}

/** A request that failed and was sent again: no work lost, but counted and named. */
function retried(what: string): void {
  result.retries[what] = (result.retries[what] ?? 0) + 1;
}

/** A start or finish the registry answered with something other than 200. */
class StepError extends Error {
  constructor(
    message: string,
    readonly detail: string,
    readonly transient: boolean,
  ) {
    super(message);
  }
}

async function simulate(message: StartMessage): Promise<void> {
  // One pool per process; a connection per parked poll, more for start/finish as needed. Idle
  // sockets are closed well before the registry's keep-alive timeout (65 s): a loaded generator
  // reads responses late, and a request sent on a socket the server is closing is reset.
  const agent = new Agent({
    keepAliveTimeout: 10_000,
    keepAliveMaxTimeout: 10_000,
    headersTimeout: 0,
    bodyTimeout: 0,
    connect: { timeout: 30_000 },
  });
  const base = `${message.url}/api/v1/site`;

  /** Like a real site: a start or finish that did not get through is sent again (up to 10 tries). */
  async function post(key: string, runId: number, step: 'start' | 'finish'): Promise<void> {
    try {
      await retry(
        async () => {
          const res = await request(`${base}/runs/${runId}/${step}`, {
            method: 'POST',
            dispatcher: agent,
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: step === 'start' ? '{}' : '{"state":"completed","exitCode":0}',
          });
          const text = await res.body.text();
          if (res.statusCode === 200) return;
          throw new StepError(
            `${step} answered ${res.statusCode}`,
            `${step} ${res.statusCode} ${text.slice(0, 100)}`,
            res.statusCode >= 500,
          );
        },
        {
          baseMs: 500,
          capMs: 5000,
          maxAttempts: 10,
          retryable: (e) => !stopping && (!(e instanceof StepError) || e.transient),
          onRetry: (e) => retried(e instanceof StepError ? e.message : `${step} error ${(e as Error).message}`),
        },
      );
    } catch (e) {
      fail(e instanceof StepError ? e.detail : `${step} error ${(e as Error).message}`);
    }
  }

  /** One poll; completes the run it gets. Returns whether a run came. */
  async function pollOnce(key: string, wait: number): Promise<boolean> {
    const started = wallMs();
    const res = await request(`${base}/runs/next?wait=${wait}`, {
      dispatcher: agent,
      headers: { authorization: `Bearer ${key}` },
      signal: abort.signal,
    });
    const received = wallMs();
    result.polls++;
    if (message.mode === 'plain') result.pollLatencies.push(received - started);
    if (res.statusCode === 204) {
      if (message.mode === 'long') result.timeouts.push(received);
      await res.body.dump();
      return false;
    }
    const text = await res.body.text();
    if (res.statusCode !== 200) {
      fail(`poll ${res.statusCode} ${text.slice(0, 100)}`);
      await sleep(1000);
      return false;
    }
    const run = JSON.parse(text) as { id: number; taskId: number };
    result.receipts.push([run.taskId, run.id, received]);
    await post(key, run.id, 'start');
    await post(key, run.id, 'finish');
    return true;
  }

  async function site(key: string): Promise<void> {
    if (message.mode === 'plain') await sleep(Math.random() * message.intervalMs);
    while (!stopping) {
      const tick = Date.now();
      try {
        await pollOnce(key, message.mode === 'long' ? message.waitSeconds : 0);
      } catch (e) {
        if (stopping) break;
        // Polled again after a pause; a run the registry claimed for a lost poll comes back after its lease.
        retried(`poll error ${(e as Error).message}`);
        await sleep(1000);
      }
      if (message.mode === 'plain' && !stopping) await sleep(Math.max(0, tick + message.intervalMs - Date.now()));
    }
  }

  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const sampler = setInterval(() => {
    result.loopDelays.push([wallMs(), delay.max / 1e6]);
    delay.reset();
  }, 250);
  const loops = message.sites.map((s) => site(s.key));
  process.send!({ type: 'ready' });
  await Promise.all(loops);
  clearInterval(sampler);
  await agent.close().catch(() => undefined);
}

process.on('message', (message: StartMessage | { type: 'stop' }) => {
  if (message.type === 'start') {
    simulate(message).then(
      () => process.send!(result, () => process.exit(0)),
      (e: unknown) => {
        fail(`crashed: ${(e as Error).message}`);
        process.send!(result, () => process.exit(1));
      },
    );
  } else if (message.type === 'stop') {
    stopping = true;
    abort.abort();
  }
});
