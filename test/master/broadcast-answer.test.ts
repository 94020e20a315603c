/**
 * Runs handed to waiting long polls by a batch (issue 13, target 1): one log line per batch that
 * says what an operator needs (count, tasks, run id range), each run still findable (debug lines,
 * the task view), and answers byte for byte what a poll's own claim answers.
 */
import { Writable } from 'node:stream';
import { Agent, fetch } from 'undici';
import winston from 'winston';
import { afterEach, describe, expect, it } from 'vitest';
import { AssignmentSerializer } from '../../master/http/json-answer.js';
import type { RunAssignment } from '../../shared/types.js';
import { startTestRegistry, type TestRegistry } from '../helpers/registry-fixture.js';
import { eventually, IMAGE, populate, type LoggedLine } from './helpers.js';

const registries: TestRegistry[] = [];
const agents: Agent[] = [];
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.close()));
  await Promise.all(registries.splice(0).map((r) => r.destroy()));
});

function loggerAt(level: 'info' | 'debug', lines: LoggedLine[]): winston.Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line) as LoggedLine);
      callback();
    },
  });
  return winston.createLogger({
    level,
    format: winston.format.json(),
    transports: [new winston.transports.Stream({ stream: sink })],
  });
}

async function broadcastWorld(level: 'info' | 'debug', siteCount: number) {
  const lines: LoggedLine[] = [];
  const reg = await startTestRegistry({}, { logger: loggerAt(level, lines) });
  registries.push(reg);
  return { lines, ...(await populate(reg, siteCount)) };
}

interface Answer {
  status: number;
  headers: Headers;
  text: string;
}

async function poll(url: string, key: string, wait: number): Promise<Answer> {
  const dispatcher = new Agent();
  agents.push(dispatcher);
  const res = await fetch(`${url}/api/v1/site/runs/next?wait=${wait}`, {
    headers: { authorization: `Bearer ${key}` },
    dispatcher,
  });
  return { status: res.status, headers: res.headers as unknown as Headers, text: await res.text() };
}

async function allWaiting(url: string, n: number): Promise<void> {
  await eventually(
    async () => ((await (await fetch(`${url}/healthz`)).json()) as { waiting: { sites: number } }).waiting.sites,
    (count) => count === n,
    `${n} waiting site polls`,
  );
}

describe('a batch hand-out to waiting polls', () => {
  it('is logged as one line with the run count, the task and the run id range, not one line per run', async () => {
    const { lines, reg, sites, researcher } = await broadcastWorld('info', 3);
    const answers = sites.map((s) => poll(reg.url, s.key!, 30));
    await allWaiting(reg.url, 3);
    const task = await researcher.createTask();
    expect((await Promise.all(answers)).map((a) => a.status)).toEqual([200, 200, 200]);
    const ids = task.runs.map((r) => r.id);
    if (!reg.store.claimNextRuns) {
      // A backend without a batch claim (PostgreSQL here): each poll claims, and logs, its own run.
      const own = await eventually(
        async () => lines.filter((l) => l.message === 'run assigned'),
        (found) => found.length === 3,
        'one line per run',
      );
      expect(own.map((l) => l.runId).sort()).toEqual([...ids].sort());
      return;
    }
    const batch = await eventually(
      async () => lines.filter((l) => l.message === 'runs assigned to waiting polls'),
      (found) => found.length > 0,
      'the batch line',
    );
    expect(batch).toEqual([
      expect.objectContaining({
        level: 'info',
        runs: 3,
        taskIds: [task.id],
        firstRunId: Math.min(...ids),
        lastRunId: Math.max(...ids),
      }),
    ]);
    expect(lines.filter((l) => l.message === 'run assigned')).toEqual([]);
    // Which site got which run is in the task view.
    const view = await researcher.task(task.id);
    expect(view.runs.map((r) => [r.site, r.status])).toEqual(sites.map((s) => [s.name, 'assigned']));
  });

  it('still logs each run with its site at level debug', async () => {
    const { lines, reg, sites, researcher } = await broadcastWorld('debug', 2);
    const answers = sites.map((s) => poll(reg.url, s.key!, 30));
    await allWaiting(reg.url, 2);
    const task = await researcher.createTask();
    await Promise.all(answers);
    const perRun = await eventually(
      async () => lines.filter((l) => l.message === 'run assigned'),
      (found) => found.length === 2,
      'two debug lines',
    );
    expect(perRun.map((l) => [l.site, l.runId, l.taskId]).sort()).toEqual(
      task.runs.map((r) => [r.site, r.id, task.id]).sort(),
    );
  });

  it("answers with the same headers and the same JSON as a poll's own claim", async () => {
    const { reg, sites, researcher } = await broadcastWorld('info', 2);
    // Site a is waiting when the task is posted (batch); site b polls afterwards (its own claim).
    const handed = poll(reg.url, sites[0]!.key!, 30);
    await allWaiting(reg.url, 1);
    await researcher.createTask({ config: { query: 'SELECT ?x WHERE { ?x ?p "é" }', n: [1, 2.5, null] } });
    const own = await poll(reg.url, sites[1]!.key!, 0);
    const batch = await handed;
    for (const answer of [batch, own]) {
      expect(answer.status).toBe(200);
      expect(answer.headers.get('content-type')).toBe('application/json; charset=utf-8');
      expect(answer.headers.get('x-content-type-options')).toBe('nosniff');
      expect(answer.headers.get('content-security-policy')).toBeTruthy();
      expect(Number(answer.headers.get('content-length'))).toBe(Buffer.byteLength(answer.text));
      // The text is what JSON.stringify gives for the parsed object: same keys, same order.
      expect(answer.text).toBe(JSON.stringify(JSON.parse(answer.text)));
    }
    const a = JSON.parse(batch.text) as RunAssignment;
    const b = JSON.parse(own.text) as RunAssignment;
    expect(Object.keys(a)).toEqual(Object.keys(b));
    expect({ ...a, id: 0 }).toEqual({ ...b, id: 0 });
    expect(a.config).toEqual({ query: 'SELECT ?x WHERE { ?x ?p "é" }', n: [1, 2.5, null] });
  });
});

describe("the order of the hand-out and the researcher's answer", () => {
  it('hands a task for a few sites to their waiting polls before answering, and the answer shows the runs assigned', async () => {
    const { reg, sites, researcher } = await broadcastWorld('info', 2);
    const answers = sites.map((s) => poll(reg.url, s.key!, 30));
    await allWaiting(reg.url, 2);
    const task = await researcher.createTask();
    if (reg.store.claimNextRuns) expect(task.runs.map((r) => r.status)).toEqual(['assigned', 'assigned']);
    else expect(task.runs.map((r) => r.status)).toEqual(['queued', 'queued']);
    expect((await Promise.all(answers)).map((a) => a.status)).toEqual([200, 200]);
  });

  it('answers a broadcast first, with its runs still queued, and then hands them out', async () => {
    const { reg, sites, researcher } = await broadcastWorld('info', 9);
    const answers = sites.map((s) => poll(reg.url, s.key!, 30));
    await allWaiting(reg.url, 9);
    const task = await researcher.createTask();
    expect(new Set(task.runs.map((r) => r.status))).toEqual(new Set(['queued']));
    expect((await Promise.all(answers)).map((a) => a.status)).toEqual(Array(9).fill(200));
  });
});

describe('AssignmentSerializer', () => {
  it('writes what JSON.stringify writes, whether consecutive runs share their config or not', () => {
    const shared = { query: 'SELECT 1', nested: { a: [1, '\u2028', null] } };
    const poster = { researcher: 'alice', organization: null, project: 'p' };
    const runs: RunAssignment[] = [
      { id: 1, taskId: 1, image: IMAGE, config: shared, attempt: 1, postedBy: poster },
      { id: 2, taskId: 1, image: IMAGE, config: shared, attempt: 1, postedBy: poster },
      { id: 3, taskId: 2, image: IMAGE, config: 'a string "config"', attempt: 2 },
      { id: 4, taskId: 3, image: IMAGE, config: null, attempt: 1, postedBy: poster },
      { id: 5, taskId: 4, image: IMAGE, config: 42, attempt: 1, postedBy: { ...poster, researcher: 'bob' } },
      { id: 6, taskId: 1, image: 'other:1', config: shared, attempt: 3, postedBy: poster },
      { id: 7, taskId: 5, image: IMAGE, config: { ...shared }, attempt: 1, postedBy: undefined },
    ];
    const serializer = new AssignmentSerializer();
    for (const run of runs) expect(serializer.serialize(run)).toBe(JSON.stringify(run));
  });
});
