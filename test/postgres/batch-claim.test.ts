/**
 * The batch hand-out on PostgreSQL (claimNextRuns): one statement claims the next run of many
 * sites; across processes, every run is still handed out exactly once, and a task posted on one
 * registry is handed to the polls parked on another.
 */
import fs from 'node:fs';
import type request from 'supertest';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { WaitingPolls } from '../../master/hand-out.js';
import { PostgresRegistryStore } from '../../master/store/postgres-store.js';
import type { RunAssignment } from '../../shared/types.js';
import { freshSchema } from '../helpers/postgres.js';
import { storesOnFreshSchema } from '../helpers/postgres-stores.js';
import { startTestRegistry, type TestRegistry } from '../helpers/registry-fixture.js';
import { capturingLogger, IMAGE, ResearcherClient, SiteClient, type LoggedLine } from '../master/helpers.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

const cleanup: (() => Promise<void>)[] = [];
const logged: LoggedLine[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
  expect(logged.splice(0).filter((l) => l.level === 'error')).toEqual([]);
});

function openStores(count: number): Promise<PostgresRegistryStore[]> {
  return storesOnFreshSchema(inject('postgresUrl'), count, 4, cleanup);
}

async function seed(
  store: PostgresRegistryStore,
  siteCount: number,
  tasks: number,
): Promise<{ siteIds: number[]; runIds: number[]; taskIds: number[] }> {
  const owner = await store.createPrincipal('user', 'alice', 'researcher');
  const names = Array.from({ length: siteCount }, (_, i) => `site-${i}`);
  const siteIds: number[] = [];
  for (const n of names) siteIds.push((await store.createPrincipal('site', n, 'site')).principal.id);
  const runIds: number[] = [];
  const taskIds: number[] = [];
  for (let t = 0; t < tasks; t++) {
    const task = await store.createTask(owner.principal, {
      name: null,
      image: IMAGE,
      config: Buffer.from(`{"t":${t}}`),
      configType: 'application/json',
      sites: names,
    });
    taskIds.push(task.id);
    runIds.push(...task.runs.map((r) => r.id));
  }
  return { siteIds, runIds, taskIds };
}

describe('claimNextRuns on PostgreSQL', () => {
  it('claims the oldest queued run of each site in one call, marks its task running, and skips sites with none', async () => {
    const [store] = await openStores(1);
    const { siteIds, taskIds } = await seed(store!, 5, 2);
    const idle = (await store!.createPrincipal('site', 'idle', 'site')).principal.id;
    const claimed = await store!.claimNextRuns([...siteIds, idle, siteIds[0]!], 60_000);
    expect(claimed.map((c) => c.siteId).sort()).toEqual([...siteIds].sort());
    for (const { run } of claimed) {
      expect(run).toMatchObject({ taskId: taskIds[0], attempt: 1, image: IMAGE, config: { t: 0 } });
      expect(run.postedBy?.researcher).toBe('alice');
    }
    expect((await store!.getTask(taskIds[0]!))!.task.status).toBe('running');
    expect((await store!.getTask(taskIds[1]!))!.task.status).toBe('queued');
    // The next call takes each site's next run: the second task's.
    const second = await store!.claimNextRuns(siteIds, 60_000);
    expect(second.map((c) => c.run.taskId)).toEqual(siteIds.map(() => taskIds[1]));
    expect(await store!.claimNextRuns(siteIds, 60_000)).toEqual([]);
    expect(await store!.claimNextRuns([], 60_000)).toEqual([]);
  });

  it('hands every run out exactly once when processes claim batches for the same sites at the same time', async () => {
    const stores = await openStores(3);
    const { siteIds, runIds } = await seed(stores[0]!, 40, 6);
    const got: number[] = [];
    // Every store claims batches for all sites until nothing is left; mixed with single claims.
    await Promise.all(
      stores.flatMap((st, i) =>
        [0, 1].map(async (k) => {
          for (;;) {
            if ((i + k) % 3 === 2) {
              let any = false;
              for (const id of siteIds) {
                const run = await st.claimNextRun(id, 60_000);
                if (run) {
                  got.push(run.id);
                  any = true;
                }
              }
              if (!any) return;
            } else {
              const batch = await st.claimNextRuns(siteIds, 60_000);
              if (batch.length === 0) return;
              got.push(...batch.map((c) => c.run.id));
            }
          }
        }),
      ),
    );
    expect(got.length).toBe(runIds.length);
    expect([...got].sort((a, b) => a - b)).toEqual([...runIds].sort((a, b) => a - b));
  });
});

describe('a batch claim whose poll left while it was in flight', () => {
  it('queues the run again at once (attempt taken back, task queued again) and wakes the site, instead of leaving it to the lease', async () => {
    const [store] = await openStores(1);
    const { siteIds, runIds, taskIds } = await seed(store!, 2, 1);
    const woken: string[] = [];
    const polls = new WaitingPolls((site) => woken.push(site));
    polls.add('site-0', siteIds[0]!, () => expect.fail('site-0 left before the claim answered'));
    const got: RunAssignment[] = [];
    const stopSite1 = polls.add('site-1', siteIds[1]!, (run) => got.push(run));
    // site-1's poll reaches the end of its wait while the claim's round trip is in flight.
    const racing = Object.create(store!) as PostgresRegistryStore;
    racing.claimNextRuns = (ids, leaseMs) => {
      const claim = store!.claimNextRuns(ids, leaseMs);
      stopSite1();
      return claim;
    };
    const handed = await polls.offer(racing, ['site-1'], 60_000);
    expect(handed).toEqual(new Set());
    expect(got).toEqual([]);
    expect(woken).toEqual(['site-1']);
    const run = (await store!.getRun(runIds[1]!))!.run;
    expect(run).toMatchObject({ status: 'queued', attempt: 0 });
    expect((await store!.getTask(taskIds[0]!))!.task.status).toBe('queued');
    // The site's next poll gets it, as its first attempt.
    expect(await store!.claimNextRun(siteIds[1]!, 60_000)).toMatchObject({ id: runIds[1], attempt: 1 });
  });

  it('leaves a run alone that was changed after the claim (cancelled, or claimed again under a new attempt)', async () => {
    const [store] = await openStores(1);
    const { siteIds, runIds, taskIds } = await seed(store!, 2, 1);
    const [a, b] = await store!.claimNextRuns(siteIds, 60_000);
    await store!.cancelTask(taskIds[0]!);
    expect(await store!.releaseClaimedRuns([{ id: a!.run.id, attempt: a!.run.attempt }])).toEqual([]);
    expect((await store!.getRun(runIds[0]!))!.run.status).toBe('cancelled');
    expect(await store!.releaseClaimedRuns([{ id: b!.run.id, attempt: b!.run.attempt + 1 }])).toEqual([]);
  });
});

describe('batch hand-out across registry processes', () => {
  it('answers polls parked on two processes with one run each when a broadcast is posted on one of them', async () => {
    const s = await freshSchema(inject('postgresUrl'));
    cleanup.push(() => s.drop());
    const dataDir = makeTempDir('pht-batch-');
    cleanup.push(async () => fs.rmSync(dataDir, { recursive: true, force: true }));
    const regs: TestRegistry[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await startTestRegistry(
        { database: s.url, databasePoolSize: 4 },
        { dataDir, logger: capturingLogger(logged) },
      );
      cleanup.push(() => r.close());
      regs.push(r);
    }
    const [a, b] = regs as [TestRegistry, TestRegistry];
    const names = Array.from({ length: 12 }, (_, i) => `site-${i}`);
    const sites = await Promise.all(
      names.map(async (n, i) => new SiteClient(regs[i % 2]!.url, await a.createSite(n), n)),
    );
    const polls = sites.map((site) => send(site.get('/api/v1/site/runs/next?wait=60')));
    const until = Date.now() + 15_000;
    while (a.events.waiting().sites + b.events.waiting().sites < names.length) {
      if (Date.now() > until) throw new Error('the polls did not all wait');
      await new Promise((r) => setTimeout(r, 10));
    }
    const researcher = new ResearcherClient(a.url, await a.createUser('alice'));
    const task = await researcher.createTask({ sites: names });
    const answers = await Promise.all(polls);
    expect(answers.map((r) => r.status)).toEqual(names.map(() => 200));
    const runIds = answers.map((r) => (r.body as RunAssignment).id).sort((x, y) => x - y);
    expect(runIds).toEqual(task.runs.map((r) => r.id).sort((x, y) => x - y));
    expect((await researcher.task(task.id)).status).toBe('running');
  });
});

/** supertest sends a request only once it is awaited: start it now. */
function send(t: request.Test): Promise<request.Response> {
  return new Promise((resolve, reject) => {
    t.then(resolve, reject);
  });
}
