/**
 * A new task's runs go to the long polls already waiting for them from one claim for all their
 * sites (master/hand-out.ts), and never to a poll that has stopped waiting.
 */
import { Agent, fetch } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { WaitingPolls } from '../../master/hand-out.js';
import type { RegistryStore } from '../../master/store/registry-store.js';
import type { RunAssignment } from '../../shared/types.js';
import { eventually, world } from './helpers.js';

const agents: Agent[] = [];
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.close()));
});

async function longPoll(url: string, key: string, signal?: AbortSignal): Promise<{ status: number; run: unknown }> {
  const dispatcher = new Agent();
  agents.push(dispatcher);
  const res = await fetch(`${url}/api/v1/site/runs/next?wait=30`, {
    headers: { authorization: `Bearer ${key}` },
    dispatcher,
    ...(signal ? { signal } : {}),
  });
  return { status: res.status, run: res.status === 200 ? await res.json() : null };
}

async function waitingPolls(url: string, n: number): Promise<void> {
  await eventually(
    async () => ((await (await fetch(`${url}/healthz`)).json()) as { waiting: { sites: number } }).waiting.sites,
    (count) => count === n,
    `${n} waiting site polls`,
  );
}

describe('batch hand-out to waiting long polls', () => {
  it('hands every waiting site its own run of a broadcast task, each once', async () => {
    const { reg, researcher, sites } = await world({ siteCount: 4 });
    const polls = sites.map((s) => longPoll(reg.url, s.key!));
    await waitingPolls(reg.url, 4);
    const task = await researcher.createTask();
    const answers = await Promise.all(polls);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200]);
    const bySite = new Map(task.runs.map((r) => [r.site, r.id]));
    answers.forEach((a, i) => {
      // The same assignment a poll's own claim answers, who posted it included.
      expect(a.run).toMatchObject({
        id: bySite.get(sites[i]!.name),
        taskId: task.id,
        attempt: 1,
        postedBy: { researcher: 'alice' },
      });
    });
    const after = await researcher.task(task.id);
    expect(after.runs.map((r) => [r.status, r.attempt])).toEqual(Array(4).fill(['assigned', 1]));
  });

  it('does not hand a run to a poll that hung up: the run stays queued for the next poll', async () => {
    const { reg, researcher, sites } = await world({ siteCount: 1 });
    const abort = new AbortController();
    const gone = longPoll(reg.url, sites[0]!.key!, abort.signal).catch(() => null);
    await waitingPolls(reg.url, 1);
    abort.abort();
    await gone;
    await waitingPolls(reg.url, 0);
    const task = await researcher.createTask();
    expect((await researcher.task(task.id)).runs[0]!.status).toBe('queued');
    expect(await sites[0]!.claim()).toMatchObject({ id: task.runs[0]!.id, attempt: 1 });
  });
});

describe('WaitingPolls.offer', () => {
  it('claims for all waiting sites in one call and hands each run to one poll of its site', async () => {
    const batches: number[][] = [];
    let singleClaims = 0;
    const store = {
      claimNextRuns: async (ids: readonly number[]) => {
        batches.push([...ids]);
        return ids.map((siteId) => ({
          siteId,
          run: { id: siteId * 10, taskId: 1, image: 'x', config: null, attempt: 1 },
        }));
      },
      claimNextRun: async () => {
        singleClaims++;
        return null;
      },
    } as unknown as RegistryStore;
    const polls = new WaitingPolls();
    const got: [string, RunAssignment][] = [];
    polls.add('a', 1, (run) => got.push(['a1', run]));
    polls.add('a', 1, (run) => got.push(['a2', run]));
    polls.add('b', 2, (run) => got.push(['b', run]));
    const stop = polls.add('c', 3, (run) => got.push(['c', run]));
    stop();
    const handed = await polls.offer(store, ['a', 'b', 'c', 'd', 'b'], 60_000);
    expect(batches).toEqual([[1, 2]]);
    expect(singleClaims).toBe(0);
    expect([...handed].sort()).toEqual(['a', 'b']);
    expect(got.map(([who, run]) => [who, run.id])).toEqual([
      ['a1', 10],
      ['b', 20],
    ]);
    // The second poll of site a still waits.
    expect(polls.size()).toBe(1);
  });
});
