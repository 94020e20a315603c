import { Agent, fetch, type Response } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import type { RegistryStore } from '../../master/store/registry-store.js';
import type { RunAssignment, Task, TaskWaitResult } from '../../shared/types.js';
import { HOLD_JITTER, longPollHoldMs } from '../../master/http/site-routes.js';
import { eventually, world } from './helpers.js';

// Real sockets, one per request: several pollers of one site race for the same runs.
const agents: Agent[] = [];
function agent(): Agent {
  const a = new Agent({ connections: 64, pipelining: 0 });
  agents.push(a);
  return a;
}
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.close()));
});

async function poll(
  url: string,
  key: string,
  dispatcher: Agent,
  query = '',
): Promise<{ status: number; run: RunAssignment | null }> {
  const res = await fetch(`${url}/api/v1/site/runs/next${query}`, {
    headers: { authorization: `Bearer ${key}` },
    dispatcher,
  });
  if (res.status === 204) return { status: 204, run: null };
  const body = (await res.json()) as RunAssignment;
  return { status: res.status, run: res.status === 200 ? body : null };
}

/** Resolves once the registry has `n` long polls of the given kind waiting. */
async function waiting(url: string, kind: 'sites' | 'tasks', n: number): Promise<void> {
  await eventually(
    async () => ((await (await fetch(`${url}/healthz`)).json()) as { waiting: Record<string, number> }).waiting[kind],
    (count) => count === n,
    `${n} waiting ${kind} polls`,
  );
}

describe('concurrent polling', () => {
  it('hands each run to exactly one of many simultaneous pollers of the same site', async () => {
    const { reg, researcher, sites } = await world({ siteCount: 1 });
    const site = sites[0]!;
    const created: number[] = [];
    for (let i = 0; i < 30; i++) created.push((await researcher.createTask({ sites: ['site-a'] })).runs[0]!.id);

    const dispatcher = agent();
    const claimed: number[] = [];
    // Eight pollers, each claiming until the queue is empty.
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (;;) {
          const { status, run } = await poll(reg.url, site.key!, dispatcher);
          if (status === 204) return;
          expect(status).toBe(200);
          claimed.push(run!.id);
        }
      }),
    );
    expect(claimed.slice().sort((a, b) => a - b)).toEqual(created);
    expect(new Set(claimed).size).toBe(created.length);
  });

  it('gives each of several waiting pollers a different newly posted run', async () => {
    const { reg, researcher, sites } = await world({ siteCount: 1 });
    const dispatcher = agent();
    const polls = Array.from({ length: 5 }, () => poll(reg.url, sites[0]!.key!, dispatcher, '?wait=30'));
    await waiting(reg.url, 'sites', 5);
    // Each task wakes every waiting poller; one claims the run, the others go back to waiting.
    const runIds: number[] = [];
    for (let i = 0; i < 5; i++) runIds.push((await researcher.createTask()).runs[0]!.id);
    const results = await Promise.all(polls);
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(results.map((r) => r.run!.id).sort((a, b) => a - b)).toEqual(runIds);
  });

  it('only hands a site its own runs', async () => {
    const { reg, researcher, sites } = await world({ siteCount: 2 });
    const task = await researcher.createTask({ sites: ['site-b'] });
    const dispatcher = agent();
    expect((await poll(reg.url, sites[0]!.key!, dispatcher)).status).toBe(204);
    expect((await poll(reg.url, sites[1]!.key!, dispatcher)).run?.id).toBe(task.runs[0]!.id);
  });

  it('hands out a site’s runs oldest first', async () => {
    const { researcher, sites } = await world({ siteCount: 1 });
    const first = await researcher.createTask();
    const second = await researcher.createTask();
    expect((await sites[0]!.claim()).taskId).toBe(first.id);
    expect((await sites[0]!.claim()).taskId).toBe(second.id);
  });
});

describe('long polling for work', () => {
  it('answers a waiting poll with the run once a task is posted for the site', async () => {
    const { reg, researcher, sites } = await world({ siteCount: 1 });
    const pending = poll(reg.url, sites[0]!.key!, agent(), '?wait=30');
    await waiting(reg.url, 'sites', 1);
    const task = await researcher.createTask();
    const { status, run } = await pending;
    expect(status).toBe(200);
    expect(run).toMatchObject({ id: task.runs[0]!.id, taskId: task.id, attempt: 1 });
  });

  it('answers 204 when the wait is over and nothing was queued', async () => {
    const { reg, sites } = await world({ siteCount: 1 });
    expect((await poll(reg.url, sites[0]!.key!, agent(), '?wait=0.2')).status).toBe(204);
    expect((await poll(reg.url, sites[0]!.key!, agent())).status).toBe(204);
  });

  it('holds a poll between 0.8 and 1 times the asked wait, never longer', () => {
    expect(HOLD_JITTER).toBe(0.2);
    expect(longPollHoldMs(30, () => 0)).toBe(30_000);
    expect(longPollHoldMs(30, () => 0.5)).toBe(27_000);
    expect(longPollHoldMs(30, () => 0.999999)).toBeGreaterThanOrEqual(24_000);
    // A random source out of range (it is Math.random in production) cannot lengthen or invert it.
    expect(longPollHoldMs(30, () => -1)).toBe(30_000);
    expect(longPollHoldMs(30, () => 7)).toBe(24_000);
    expect(longPollHoldMs(0, () => 0.5)).toBe(0);
  });

  it('does not end polls asked for the same wait all at once', async () => {
    // Sites that parked together must not all time out (and poll again) together: after a
    // broadcast every site re-parks within seconds, and each round of timeouts came back as one
    // wave (issue 10). Twelve polls, parked together, asked to wait 1 s: with the hold drawn
    // between 0.8 and 1 s their ends spread over ~170 ms; without it they end within a few ms.
    const { reg, sites } = await world({ siteCount: 1 });
    const dispatcher = agent();
    const ends = await Promise.all(
      Array.from({ length: 12 }, async () => {
        const started = performance.now();
        const { status } = await poll(reg.url, sites[0]!.key!, dispatcher, '?wait=1');
        expect(status).toBe(204);
        return performance.now() - started;
      }),
    );
    // Never early: the shortest hold is 0.8 of the asked wait.
    expect(Math.min(...ends)).toBeGreaterThanOrEqual(800 - 5);
    expect(Math.max(...ends) - Math.min(...ends)).toBeGreaterThan(40);
  });

  it('answers a poll whose wait ran out without claiming again', async () => {
    // The site polls again at once and that poll claims: a second claim per timeout doubled the
    // database work of a wave of 10,000 timeouts (a round trip each on PostgreSQL). A claim made
    // early is a wake-up by a notification (on PostgreSQL the test world's own setup comes back
    // through LISTEN); none may come near the end of the hold (at least 0.8 × 0.5 s).
    const { reg, sites } = await world({ siteCount: 1 });
    const claimTimes: number[] = [];
    // The store's class, patched before anything claims: the registry's store is a proxy that
    // keeps the methods it has handed out (principal-cache.ts).
    const proto = Object.getPrototypeOf(reg.store) as RegistryStore;
    const claim = proto.claimNextRun;
    proto.claimNextRun = function (this: RegistryStore, siteId, leaseMs) {
      claimTimes.push(performance.now());
      return claim.call(this, siteId, leaseMs);
    };
    try {
      expect((await poll(reg.url, sites[0]!.key!, agent(), '?wait=0.5')).status).toBe(204);
    } finally {
      proto.claimNextRun = claim;
    }
    // Measured from the poll's first claim (its authentication may take a while before it).
    const first = claimTimes[0]!;
    expect(claimTimes.map((t) => t - first).filter((t) => t >= 350)).toEqual([]);
  });

  it('does not ask the database again for a site that had nothing, until something happens for it', async () => {
    // At 10,000 sites most polls come back after a 204 with nothing changed for their site
    // (master/empty-claims.ts). A task posted for the site, or a run requeued, must still reach
    // the very next poll.
    const { reg, researcher, sites } = await world({ siteCount: 2, overrides: { lease: '300ms' } });
    const [a, b] = sites as [(typeof sites)[0], (typeof sites)[0]];
    let claims = 0;
    const proto = Object.getPrototypeOf(reg.store) as RegistryStore;
    const claim = proto.claimNextRun;
    proto.claimNextRun = function (this: RegistryStore, siteId, leaseMs) {
      claims++;
      return claim.call(this, siteId, leaseMs);
    };
    try {
      const dispatcher = agent();
      expect((await poll(reg.url, a.key!, dispatcher)).status).toBe(204);
      const after = claims;
      expect(after).toBeGreaterThan(0);
      for (let i = 0; i < 3; i++) expect((await poll(reg.url, a.key!, dispatcher)).status).toBe(204);
      expect(claims).toBe(after);
      // A task for another site changes nothing for this one.
      await researcher.createTask({ sites: [b.name] });
      expect((await poll(reg.url, a.key!, dispatcher)).status).toBe(204);
      expect(claims).toBe(after);
      // A task for it: the next poll claims and gets it.
      const task = await researcher.createTask({ sites: [a.name] });
      const got = await poll(reg.url, a.key!, dispatcher);
      expect(got.run?.id).toBe(task.runs[0]!.id);
      expect((await poll(reg.url, a.key!, dispatcher)).status).toBe(204);
      // Its lease runs out (never started): the sweep requeues it, and a plain poll gets it again.
      const again = await eventually(
        () => poll(reg.url, a.key!, dispatcher),
        (p) => p.status === 200,
        'the requeued run at the next poll',
      );
      expect(again.run).toMatchObject({ id: task.runs[0]!.id, attempt: 2 });
    } finally {
      proto.claimNextRun = claim;
    }
  });

  it('hands out every run at once while its site keeps polling, whatever the moment its polls end', async () => {
    // Tasks posted while the sites' polls keep timing out (0.2 s waits, each ended at a random
    // point of its last fifth) and coming back: a run claimed for a poll that then answered 204
    // would wait out its lease (60 s here) before going to the site; every run must arrive long
    // before that, exactly once.
    const { reg, researcher, sites } = await world({ siteCount: 6, overrides: { lease: '60s' } });
    const dispatcher = agent();
    const received = new Map<number, number>();
    let stop = false;
    const loops = sites.map(async (site) => {
      while (!stop) {
        const { status, run } = await poll(reg.url, site.key!, dispatcher, '?wait=0.2');
        if (status !== 200 || !run) continue;
        received.set(run.id, (received.get(run.id) ?? 0) + 1);
        await site.start(run.id);
        await site.finish(run.id, { state: 'completed', exitCode: 0 });
      }
    });
    const posted: number[] = [];
    try {
      for (let i = 0; i < 90; i++) {
        posted.push((await researcher.createTask({ sites: [sites[i % sites.length]!.name] })).runs[0]!.id);
        // Spread over about two rounds of polls, so that creations meet polls at every point of their wait.
        await new Promise((r) => setTimeout(r, 3 + (i % 5)));
      }
      await eventually(
        () => Promise.resolve(posted.filter((id) => !received.has(id))),
        (missing) => missing.length === 0,
        'every run at its site (well within its 60 s lease)',
      );
    } finally {
      stop = true;
      await Promise.all(loops);
    }
    expect([...received.values()].every((n) => n === 1)).toBe(true);
  });

  it('wakes a waiting poll when an expired lease puts a run back in the queue', async () => {
    const { reg, researcher, sites } = await world({ siteCount: 1, overrides: { lease: '300ms' } });
    const task = await researcher.createTask();
    await sites[0]!.claim();
    const { status, run } = await poll(reg.url, sites[0]!.key!, agent(), '?wait=30');
    expect(status).toBe(200);
    expect(run).toMatchObject({ id: task.runs[0]!.id, attempt: 2 });
  });

  it('does not hand a run to a poll whose site hung up', async () => {
    const { reg, researcher, sites } = await world({ siteCount: 1 });
    const abort = new AbortController();
    const pending = fetch(`${reg.url}/api/v1/site/runs/next?wait=30`, {
      headers: { authorization: `Bearer ${sites[0]!.key}` },
      signal: abort.signal,
    }).catch((e: unknown) => e);
    await waiting(reg.url, 'sites', 1);
    abort.abort();
    await pending;
    await waiting(reg.url, 'sites', 0);
    const task = await researcher.createTask();
    expect((await researcher.run(task.runs[0]!.id)).status).toBe('queued');
  });

  it('ends waiting polls, task waits and event streams cleanly when the registry shuts down', async () => {
    const { reg, researcher, sites } = await world({ siteCount: 1 });
    const task = await researcher.createTask({ sites: ['site-a'] });
    await sites[0]!.claim();
    const dispatcher = agent();
    const headers = { authorization: `Bearer ${researcher.key}` };
    const pending = [
      poll(reg.url, sites[0]!.key!, dispatcher, '?wait=30'),
      fetch(`${reg.url}/api/v1/tasks/${task.id}/wait?timeout=30`, { headers, dispatcher }).then((r) => r.text()),
      fetch(`${reg.url}/api/v1/tasks/${task.id}/events`, { headers, dispatcher }).then((r) => r.text()),
    ].map((p) => p.catch((e: unknown) => e));
    await waiting(reg.url, 'sites', 1);
    await waiting(reg.url, 'tasks', 2);
    await reg.close();
    await Promise.all(pending);
    expect(reg.events.waiting()).toEqual({ sites: 0, tasks: 0 });
    // The afterEach check fails the test if any of them hit the closed database (a logged 500).
  });
});

describe('waiting for a task', () => {
  it('answers done:true once every run has ended', async () => {
    const { reg, researcher, sites } = await world({ siteCount: 2 });
    const task = await researcher.createTask();
    // supertest sends on then(): start the long poll now.
    const pending = researcher.get(`/api/v1/tasks/${task.id}/wait?timeout=30`).then((r) => r);
    const a = await sites[0]!.claimAndStart();
    await sites[0]!.finish(a.id, { state: 'completed' });
    const b = await sites[1]!.claimAndStart();
    await waiting(reg.url, 'tasks', 1);
    await sites[1]!.finish(b.id, { state: 'failed', exitCode: 1 });
    const res = await pending;
    expect(res.status).toBe(200);
    const body = res.body as TaskWaitResult;
    expect(body).toMatchObject({ id: task.id, status: 'failed', done: true });
    expect(body.runs.map((r) => r.status)).toEqual(['completed', 'failed']);
  });

  it('answers done:false with the current task when the timeout passes first', async () => {
    const { researcher, sites } = await world({ siteCount: 1 });
    const task = await researcher.createTask();
    await sites[0]!.claim();
    const res = await researcher.get(`/api/v1/tasks/${task.id}/wait?timeout=0.2`).expect(200);
    expect(res.body).toMatchObject({ id: task.id, status: 'running', done: false });
  });

  it('answers at once with done:true for a task that has already ended', async () => {
    const { researcher } = await world({ siteCount: 1 });
    const task = await researcher.createTask();
    await researcher.post(`/api/v1/tasks/${task.id}/cancel`).expect(200);
    const res = await researcher.get(`/api/v1/tasks/${task.id}/wait?timeout=60`).expect(200);
    expect(res.body).toMatchObject({ status: 'cancelled', done: true });
  });
});

/** Reads a server-sent event stream to its end and returns the `task` events' data. */
async function readTaskEvents(res: Response): Promise<Task[]> {
  expect(res.headers.get('content-type')).toBe('text/event-stream');
  const text = await res.text();
  const events: Task[] = [];
  for (const block of text.split('\n\n')) {
    const lines = block.split('\n');
    if (!lines.includes('event: task')) continue;
    const data = lines.find((l) => l.startsWith('data: '))!;
    events.push(JSON.parse(data.slice('data: '.length)) as Task);
  }
  return events;
}

describe('task event stream', () => {
  it('sends the task on every change and ends with the final task', async () => {
    const { reg, researcher, sites } = await world({ siteCount: 1 });
    const task = await researcher.createTask();
    const res = await fetch(`${reg.url}/api/v1/tasks/${task.id}/events`, {
      headers: { authorization: `Bearer ${researcher.key}` },
    });
    expect(res.status).toBe(200);
    const events = readTaskEvents(res);
    await waiting(reg.url, 'tasks', 1);
    const run = await sites[0]!.claimAndStart();
    await sites[0]!.finish(run.id, { state: 'completed', exitCode: 0 });
    const received = await events;
    expect(received[0]!.status).toBe('queued');
    const last = received[received.length - 1]!;
    expect(last).toMatchObject({ id: task.id, status: 'completed' });
    expect(last.runs[0]).toMatchObject({ status: 'completed', exitCode: 0 });
    expect(received.filter((e) => e.status === 'completed')).toHaveLength(1);
  });

  it('sends a single event and ends for a task that has already ended', async () => {
    const { reg, researcher } = await world({ siteCount: 1 });
    const task = await researcher.createTask();
    await researcher.post(`/api/v1/tasks/${task.id}/cancel`).expect(200);
    const res = await fetch(`${reg.url}/api/v1/tasks/${task.id}/events`, {
      headers: { authorization: `Bearer ${researcher.key}` },
    });
    const received = await readTaskEvents(res);
    expect(received.map((t) => t.status)).toEqual(['cancelled']);
  });

  it('answers a HEAD on an open task with the stream headers at once, not when the task ends', async () => {
    const { reg, researcher } = await world({ siteCount: 1 });
    const task = await researcher.createTask();
    const res = await fetch(`${reg.url}/api/v1/tasks/${task.id}/events`, {
      method: 'HEAD',
      headers: { authorization: `Bearer ${researcher.key}` },
      signal: AbortSignal.timeout(5_000),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    expect(await res.text()).toBe('');
  });
});
