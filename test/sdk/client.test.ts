import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  PhtApiError,
  PhtClient,
  PhtConnectionError,
  PhtError,
  PhtResponseError,
  PhtResultError,
  PhtTimeoutError,
  type Task,
} from '../../sdk/index.js';
import { closedPort, IMAGE, startFakeServer, startWorld, type RegistryWorld } from './registry-world.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

/** Collects onUpdate calls and lets a test wait until the task reaches a given state. */
function updateRecorder() {
  const seen: Task[] = [];
  const waiters: { match: (t: Task) => boolean; resolve: (t: Task) => void }[] = [];
  return {
    seen,
    onUpdate(task: Task) {
      seen.push(task);
      for (const w of waiters.filter((w) => w.match(task))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(task);
      }
    },
    until(match: (t: Task) => boolean): Promise<Task> {
      const found = seen.find(match);
      return found ? Promise.resolve(found) : new Promise((resolve) => waiters.push({ match, resolve }));
    },
  };
}

let world: RegistryWorld;
let tmp: string;

beforeEach(async () => {
  world = await startWorld();
  tmp = makeTempDir('pht-sdk-');
});

afterEach(async () => {
  await world.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('tasks', () => {
  it('creates a task at the named sites and reads it back', async () => {
    const created = await world.client.createTask({
      image: IMAGE,
      config: { rounds: 3 },
      sites: ['site-a'],
      name: 'count',
    });
    expect(created).toMatchObject({ image: IMAGE, name: 'count', status: 'queued', owner: 'alice' });
    expect(created.runs.map((r) => [r.site, r.status])).toEqual([['site-a', 'queued']]);
    const read = await world.client.getTask(created.id);
    expect(read.id).toBe(created.id);
    expect(read.runs[0]!.id).toBe(created.runs[0]!.id);
  });

  it('targets every enabled site when no sites are named', async () => {
    const task = await world.client.createTask({ image: IMAGE, config: null });
    expect(task.runs.map((r) => r.site).sort()).toEqual(['site-a', 'site-b']);
  });

  it('lists tasks newest first, filtered by status and paged', async () => {
    const first = await world.client.createTask({ image: IMAGE, sites: ['site-a'] });
    const second = await world.client.createTask({ image: IMAGE, sites: ['site-b'] });
    await world.client.cancelTask(first.id);

    const all = await world.client.listTasks();
    expect(all.total).toBe(2);
    expect(all.tasks.map((t) => t.id)).toEqual([second.id, first.id]);
    const cancelled = await world.client.listTasks({ status: 'cancelled' });
    expect(cancelled.tasks.map((t) => t.id)).toEqual([first.id]);
    const page = await world.client.listTasks({ limit: 1, offset: 1 });
    expect(page).toMatchObject({ total: 2, limit: 1, offset: 1 });
    expect(page.tasks.map((t) => t.id)).toEqual([first.id]);
  });

  it('cancels a queued task at once', async () => {
    const task = await world.client.createTask({ image: IMAGE, sites: ['site-a', 'site-b'] });
    const cancelled = await world.client.cancelTask(task.id);
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled.runs.map((r) => r.status)).toEqual(['cancelled', 'cancelled']);
  });

  it('asks a running run to stop when its task is cancelled', async () => {
    const task = await world.client.createTask({ image: IMAGE, sites: ['site-a'] });
    const run = await world.siteA.claim();
    await world.siteA.start(run.id);
    const cancelled = await world.client.cancelTask(task.id);
    expect(cancelled.runs[0]).toMatchObject({ status: 'running', cancelRequested: true });
  });

  it('tells who the token belongs to', async () => {
    expect(await world.client.me()).toMatchObject({ name: 'alice', kind: 'user', role: 'researcher' });
  });

  it('lists the sites', async () => {
    const sites = await world.client.listSites();
    expect(sites.map((s) => [s.name, s.enabled])).toEqual([
      ['site-a', true],
      ['site-b', true],
    ]);
  });
});

describe('waiting', () => {
  it('returns the task once every run has finished, reporting changes on the way', async () => {
    const task = await world.client.createTask({ image: IMAGE, sites: ['site-a', 'site-b'] });
    const updates = updateRecorder();
    const waiting = world.client.waitForTask(task.id, { timeoutMs: 20_000, onUpdate: updates.onUpdate });

    await updates.until((t) => t.status === 'queued');
    const runA = await world.siteA.claim();
    await world.siteA.start(runA.id);
    await updates.until((t) => t.runs.some((r) => r.status === 'running'));
    await world.siteA.finish(runA.id, { state: 'completed', exitCode: 0 });
    await world.siteB.play({ finish: { state: 'failed', exitCode: 2, reason: 'no data' } });

    const done = await waiting;
    expect(done.status).toBe('failed');
    expect(done.runs.map((r) => [r.site, r.status, r.exitCode])).toEqual([
      ['site-a', 'completed', 0],
      ['site-b', 'failed', 2],
    ]);
    expect(updates.seen.at(-1)).toEqual(done);
    expect(updates.seen.map((t) => t.status)).toContain('running');
  });

  it('resolves immediately for a task that is already final', async () => {
    const task = await world.client.createTask({ image: IMAGE, sites: ['site-a'] });
    await world.siteA.play();
    const done = await world.client.waitForTask(task.id, { timeoutMs: 0 });
    expect(done.status).toBe('completed');
    expect(done).not.toHaveProperty('done');
  });

  it('times out with the task as last seen when runs do not finish', async () => {
    const task = await world.client.createTask({ image: IMAGE, sites: ['site-a'] });
    const error = await world.client.waitForTask(task.id, { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PhtTimeoutError);
    expect((error as PhtTimeoutError).task).toMatchObject({ id: task.id, status: 'queued' });
    expect((error as PhtTimeoutError).timeoutMs).toBe(300);
  });

  it("stops waiting when its signal aborts, with the signal's reason", async () => {
    const task = await world.client.createTask({ image: IMAGE, sites: ['site-a'] });
    const controller = new AbortController();
    const updates = updateRecorder();
    const waiting = world.client.waitForTask(task.id, { signal: controller.signal, onUpdate: updates.onUpdate });
    await updates.until(() => true);
    const reason = new Error('researcher pressed stop');
    controller.abort(reason);
    await expect(waiting).rejects.toBe(reason);
  });

  it('hands an exception thrown by onUpdate to the caller', async () => {
    const task = await world.client.createTask({ image: IMAGE, sites: ['site-a'] });
    const failure = new Error('display broke');
    await expect(
      world.client.waitForTask(task.id, {
        onUpdate: () => {
          throw failure;
        },
      }),
    ).rejects.toBe(failure);
  });

  it("runs a task and parses every completed run's JSON result", async () => {
    const running = world.client.runTask({ image: IMAGE, config: { round: 1 } }, { timeoutMs: 20_000 });
    await world.siteA.play({ files: { 'result.json': { count: 12, mean: 3.5 } } });
    await world.siteB.play({ files: { 'result.json': { count: 30, mean: 4 } } });
    const task = await running;
    expect(task.status).toBe('completed');
    expect(task.runs.map((r) => [r.site, r.result])).toEqual([
      ['site-a', { count: 12, mean: 3.5 }],
      ['site-b', { count: 30, mean: 4 }],
    ]);
  });

  it('leaves the result out for runs that failed or sent no result file', async () => {
    const running = world.client.runTask({ image: IMAGE }, { resultFile: 'model.json' });
    await world.siteA.play({ files: { 'other.json': { x: 1 } } });
    await world.siteB.play({ files: { 'model.json': { w: [1] } }, finish: { state: 'failed', exitCode: 1 } });
    const task = await running;
    expect(task.status).toBe('failed');
    expect(task.runs.map((r) => ('result' in r ? r.result : 'none'))).toEqual(['none', 'none']);
  });
});

describe('runs, logs and files', () => {
  it('reads a run and its log', async () => {
    const task = await world.client.createTask({ image: IMAGE, sites: ['site-a'] });
    await world.siteA.play({
      log: 'loading 10 patients\ndone\n',
      progress: { current: 10, total: 10, message: 'done' },
    });
    const run = await world.client.getRun(task.runs[0]!.id);
    expect(run).toMatchObject({
      taskId: task.id,
      site: 'site-a',
      status: 'completed',
      exitCode: 0,
      progress: { current: 10, total: 10, message: 'done' },
    });
    expect(await world.client.getRunLog(run.id)).toBe('loading 10 patients\ndone\n');
  });

  it('follows a log as it grows until the run is final', async () => {
    const task = await world.client.createTask({ image: IMAGE, sites: ['site-a'] });
    const runId = task.runs[0]!.id;
    const assignment = await world.siteA.claim();
    await world.siteA.start(assignment.id);
    await world.siteA.log(runId, 'epoch 1 ');
    const pieces: string[] = [];
    let sawFirst!: () => void;
    const firstSeen = new Promise<void>((resolve) => (sawFirst = resolve));
    const following = world.client.followRunLog(runId, {
      intervalMs: 20,
      onText: (text) => {
        pieces.push(text);
        sawFirst();
      },
    });
    await firstSeen;
    await world.siteA.log(runId, 'loss 0.5\nepoch 2 ');
    await world.siteA.log(runId, 'loss 0.2 ✓\n');
    await world.siteA.finish(runId, { state: 'completed', exitCode: 0 });
    const run = await following;
    expect(run.status).toBe('completed');
    expect(pieces[0]).toBe('epoch 1 ');
    expect(pieces.join('')).toBe('epoch 1 loss 0.5\nepoch 2 loss 0.2 ✓\n');
  });

  it('lists, streams and saves result files, sub-folders included', async () => {
    const task = await world.client.createTask({ image: IMAGE, sites: ['site-a'] });
    const weights = Buffer.alloc(200_000, 7);
    await world.siteA.play({ files: { 'result.json': { ok: true }, 'model/weights.bin': weights } });
    const runId = task.runs[0]!.id;

    const files = await world.client.listRunFiles(runId);
    expect(files.map((f) => [f.name, f.size])).toEqual([
      ['model/weights.bin', 200_000],
      ['result.json', 11],
    ]);

    const chunks: Buffer[] = [];
    for await (const chunk of await world.client.downloadRunFile(runId, 'model/weights.bin'))
      chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).equals(weights)).toBe(true);

    const saved = await world.client.saveRunFiles(runId, path.join(tmp, 'out'));
    expect(saved.map((f) => path.relative(tmp, f.path))).toEqual([
      path.join('out', 'model', 'weights.bin'),
      path.join('out', 'result.json'),
    ]);
    expect(fs.readFileSync(path.join(tmp, 'out/model/weights.bin')).equals(weights)).toBe(true);
    expect(JSON.parse(fs.readFileSync(path.join(tmp, 'out/result.json'), 'utf8'))).toEqual({ ok: true });
    expect(fs.readdirSync(path.join(tmp, 'out')).sort()).toEqual(['model', 'result.json']);
  });

  it('parses a JSON result, and says which file is not JSON', async () => {
    const task = await world.client.createTask({ image: IMAGE, sites: ['site-a'] });
    await world.siteA.play({ files: { 'result.json': { n: 1 }, 'broken.json': '{"n": ' } });
    const runId = task.runs[0]!.id;
    expect(await world.client.readJsonResult(runId)).toEqual({ n: 1 });
    const error = await world.client.readJsonResult(runId, 'broken.json').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PhtResultError);
    expect(error).toMatchObject({ runId, file: 'broken.json' });
  });

  it('reports a missing result file as a 404', async () => {
    const task = await world.client.createTask({ image: IMAGE, sites: ['site-a'] });
    await world.siteA.play();
    await expect(world.client.readJsonResult(task.runs[0]!.id)).rejects.toMatchObject({
      name: 'PhtApiError',
      status: 404,
      code: 'not_found',
    });
  });
});

describe('errors', () => {
  it('refuses an unknown token with a 401 PhtApiError', async () => {
    const stranger = new PhtClient({ url: world.registry.url, token: 'not-a-real-token' });
    try {
      const error = await stranger.listTasks().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PhtApiError);
      expect(error).toMatchObject({ status: 401, code: 'unauthorized', method: 'GET', path: '/tasks' });
    } finally {
      await stranger.close();
    }
  });

  it('answers 404 for a task that does not exist or belongs to someone else', async () => {
    await expect(world.client.getTask(999)).rejects.toMatchObject({
      name: 'PhtApiError',
      status: 404,
      code: 'not_found',
    });
    const bob = new PhtClient({ url: world.registry.url, token: await world.registry.createUser('bob') });
    try {
      const task = await world.client.createTask({ image: IMAGE, sites: ['site-a'] });
      await expect(bob.getTask(task.id)).rejects.toMatchObject({ status: 404, code: 'not_found' });
    } finally {
      await bob.close();
    }
  });

  it('refuses a task for an unknown site with 422 unknown_site', async () => {
    const error = await world.client
      .createTask({ image: IMAGE, sites: ['site-a', 'nowhere'] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PhtApiError);
    expect(error).toMatchObject({ status: 422, code: 'unknown_site' });
    expect((error as PhtApiError).message).toContain('nowhere');
  });

  it("passes the registry's validation message on", async () => {
    await expect(world.client.createTask({ image: 'Not An Image!' })).rejects.toMatchObject({
      status: 400,
      code: 'validation_failed',
    });
  });

  it('reports a registry that is not there as a PhtConnectionError', async () => {
    const port = await closedPort();
    const client = new PhtClient({ url: `http://127.0.0.1:${port}`, token: 'whatever-token' });
    try {
      const error = await client.listSites().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PhtConnectionError);
      expect(error).toMatchObject({ systemCode: 'ECONNREFUSED', url: `http://127.0.0.1:${port}` });
    } finally {
      await client.close();
    }
  });

  it('reports a registry that stays silent as a PhtTimeoutError', async () => {
    const silent = await startFakeServer(() => {
      // never answers
    });
    const client = new PhtClient({ url: silent.url, token: 'whatever-token', timeoutMs: 200 });
    try {
      await expect(client.listSites()).rejects.toBeInstanceOf(PhtTimeoutError);
    } finally {
      await client.close();
      await silent.close();
    }
  });

  it("says clearly when the answer does not have the API's shape", async () => {
    const wrong = await startFakeServer((req, res) => {
      res.setHeader('content-type', req.url?.includes('/sites') ? 'text/html' : 'application/json');
      res.end(
        req.url?.includes('/sites') ? '<html>hello</html>' : JSON.stringify({ id: 1, status: 'sleeping', runs: [] }),
      );
    });
    const client = new PhtClient({ url: wrong.url, token: 'whatever-token' });
    try {
      const shape = await client.getTask(1).catch((e: unknown) => e);
      expect(shape).toBeInstanceOf(PhtResponseError);
      expect((shape as Error).message).toMatch(/GET \/tasks\/1: .*answer: missing required field "image"/);
      await expect(client.listSites()).rejects.toThrow(/not JSON/);
    } finally {
      await client.close();
      await wrong.close();
    }
  });

  it('reports an error page without a {code, message} body with code "unknown"', async () => {
    const proxy = await startFakeServer((_req, res) => {
      res.statusCode = 502;
      res.end('<html>Bad Gateway</html>');
    });
    const client = new PhtClient({ url: proxy.url, token: 'whatever-token' });
    try {
      const error = await client.listSites().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PhtApiError);
      expect(error).toMatchObject({ status: 502, code: 'unknown' });
      expect(error).toBeInstanceOf(PhtError);
    } finally {
      await client.close();
      await proxy.close();
    }
  });
});

describe('saving files from a registry that cannot be trusted blindly', () => {
  async function registryListing(listing: unknown, content: string) {
    return startFakeServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      if (req.url === '/api/v1/runs/1/files') res.end(JSON.stringify(listing));
      else res.end(content);
    });
  }

  it('refuses a file whose bytes do not match the listed checksum, leaving nothing behind', async () => {
    const fake = await registryListing([{ name: 'result.json', size: 2, sha256: '0'.repeat(64) }], '{}');
    const client = new PhtClient({ url: fake.url, token: 'whatever-token' });
    try {
      const error = await client.saveRunFiles(1, path.join(tmp, 'out')).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PhtResponseError);
      expect((error as Error).message).toMatch(
        /result\.json arrived with 2 bytes and SHA-256 [0-9a-f]{64}; the registry listed 2 bytes/,
      );
      expect(fs.readdirSync(path.join(tmp, 'out'))).toEqual([]);
    } finally {
      await client.close();
      await fake.close();
    }
  });

  it('refuses a listed file name that would leave the target folder', async () => {
    const fake = await registryListing([{ name: '../escaped.txt', size: 1, sha256: '0'.repeat(64) }], 'x');
    const client = new PhtClient({ url: fake.url, token: 'whatever-token' });
    try {
      await expect(client.saveRunFiles(1, path.join(tmp, 'out'))).rejects.toThrow(
        /answer\[0\]\.name: must match pattern/,
      );
      expect(fs.existsSync(path.join(tmp, 'escaped.txt'))).toBe(false);
    } finally {
      await client.close();
      await fake.close();
    }
  });
});

describe('downloads that break off', () => {
  it('fail the stream with a PhtConnectionError, not a raw socket error', async () => {
    const fake = await startFakeServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '100000' });
      res.write(Buffer.alloc(1000));
      setImmediate(() => res.destroy());
    });
    const client = new PhtClient({ url: fake.url, token: 'whatever-token' });
    try {
      const stream = await client.downloadRunFile(1, 'big.bin');
      const error = await (async () => {
        for await (const _chunk of stream) {
          // keep reading until it breaks
        }
      })().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PhtConnectionError);
    } finally {
      await client.close();
      await fake.close();
    }
  });
});

describe('configuration', () => {
  it('reads the URL and token from the environment it is given', async () => {
    const client = PhtClient.fromEnv({ PHT_URL: `${world.registry.url}/`, PHT_TOKEN: world.token });
    try {
      expect(client.apiUrl).toBe(`${world.registry.url}/api/v1`);
      expect((await client.me()).name).toBe('alice');
    } finally {
      await client.close();
    }
  });

  it('refuses to start without a URL or token', () => {
    expect(() => PhtClient.fromEnv({ PHT_TOKEN: 'x' })).toThrow(/PHT_URL/);
    expect(() => PhtClient.fromEnv({ PHT_URL: 'http://localhost:5000' })).toThrow(/PHT_TOKEN/);
    expect(() => new PhtClient({ url: 'localhost:5000', token: 'x' })).toThrow(/http\(s\) URL/);
  });

  it('accepts a URL that already ends in /api/v1', async () => {
    const client = new PhtClient({ url: `${world.registry.url}/api/v1`, token: world.token });
    try {
      expect((await client.listSites()).length).toBe(2);
    } finally {
      await client.close();
    }
  });
});
