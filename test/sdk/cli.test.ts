import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ResultFileStore } from '../../master/result-files.js';
import { expireDue } from '../../master/retention.js';
import { main } from '../../sdk/cli/main.js';
import type { Task } from '../../sdk/index.js';
import { closedPort, IMAGE, startWorld, type RegistryWorld } from './registry-world.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

let world: RegistryWorld;
let tmp: string;

beforeEach(async () => {
  world = await startWorld();
  tmp = makeTempDir('pht-cli-');
});

afterEach(async () => {
  await world.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

interface Outcome {
  code: number;
  out: string;
  err: string;
}

/** Runs `pht …` in-process against the test registry, with stdout and stderr captured. */
async function pht(args: string[], options: { tty?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<Outcome> {
  return startPht(args, options).done;
}

/** Like pht(), but lets the test act while the command runs, once its output shows `text`. */
function startPht(args: string[], options: { tty?: boolean; env?: NodeJS.ProcessEnv } = {}) {
  let out = '';
  let err = '';
  const waiters: { text: string; resolve: () => void }[] = [];
  const write = (text: string) => {
    out += text;
    for (const w of waiters.filter((w) => out.includes(w.text))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
    return true;
  };
  const done = main(args, {
    stdout: { write, isTTY: options.tty ?? false, columns: 100 },
    stderr: { write: (text: string) => (err += text) },
    env: options.env ?? { PHT_URL: world.registry.url, PHT_TOKEN: world.token },
  }).then((code): Outcome => ({ code, out, err }));
  return {
    done,
    printed: (text: string) =>
      out.includes(text) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ text, resolve })),
  };
}

function writeConfig(value: unknown): string {
  const file = path.join(tmp, 'config.json');
  fs.writeFileSync(file, JSON.stringify(value));
  return file;
}

async function finishedTask(
  runs: { a?: Parameters<RegistryWorld['siteA']['play']>[0]; b?: Parameters<RegistryWorld['siteB']['play']>[0] } = {},
): Promise<Task> {
  const task = await world.client.createTask({ image: IMAGE, name: 'count' });
  await world.siteA.play(runs.a);
  await world.siteB.play(runs.b);
  return world.client.getTask(task.id);
}

describe('pht task create', () => {
  it('waits for the task and exits 0 when every run completed', async () => {
    const running = pht([
      'task',
      'create',
      '--image',
      IMAGE,
      '--config',
      writeConfig({ rounds: 2 }),
      '--name',
      'count',
      '--wait',
    ]);
    await world.siteA.play({ progress: { current: 1, total: 2, message: 'half way' } });
    await world.siteB.play();
    const { code, out, err } = await running;
    expect(err).toBe('');
    expect(code).toBe(0);
    expect(out).toContain('created task 1 (count)');
    expect(out).toContain('task 1 (count): waiting for 2 runs (site-a, site-b)');
    expect(out).toContain('site-a: completed exit 0');
    expect(out).toContain('task 1 (count) completed: 2 of 2 runs completed');
    expect(out).toContain('pht task results 1 --out DIR');
    expect(out).not.toContain('\x1b[');
  });

  it('exits 1 when a run fails', async () => {
    const running = pht(['task', 'create', '--image', IMAGE, '--sites', 'site-a,site-b', '--wait']);
    await world.siteA.play();
    await world.siteB.play({ finish: { state: 'failed', exitCode: 3, reason: 'query failed' } });
    const { code, out } = await running;
    expect(code).toBe(1);
    expect(out).toContain('site-b: failed exit 3: query failed');
    expect(out).toContain('task 1 failed: 1 of 2 runs completed; site-b failed');
  });

  it('exits 1 when the task does not finish within --timeout, leaving it running', async () => {
    const { code, err } = await pht([
      'task',
      'create',
      '--image',
      IMAGE,
      '--sites',
      'site-a',
      '--wait',
      '--timeout',
      '0.2',
    ]);
    expect(code).toBe(1);
    expect(err).toContain(
      'task 1 did not finish within 200 ms; it is queued and keeps running (stop it with: pht task cancel 1)',
    );
    expect((await world.client.getTask(1)).status).toBe('queued');
  });

  it('redraws the per-site lines in place on a terminal', async () => {
    const running = startPht(['task', 'create', '--image', IMAGE, '--wait'], { tty: true });
    await running.printed('site-a  queued');
    await world.siteA.play();
    await world.siteB.play();
    const { code, out } = await running.done;
    expect(code).toBe(0);
    expect(out).toContain('\x1b[3A');
    expect(out).toMatch(/\r\x1b\[2K {2}site-a {2}completed {2}exit 0\n/);
  });

  it('prints only the created task as JSON with --json', async () => {
    const { code, out } = await pht([
      'task',
      'create',
      '--image',
      IMAGE,
      '--sites',
      'site-b',
      '--name',
      'n1',
      '--config',
      writeConfig([1, 2]),
      '--json',
    ]);
    expect(code).toBe(0);
    const task = JSON.parse(out) as Task;
    expect(task).toMatchObject({ id: 1, name: 'n1', image: IMAGE, status: 'queued' });
    expect(task.runs.map((r) => r.site)).toEqual(['site-b']);
    const assignment = await world.siteB.claim();
    expect(assignment.config).toEqual([1, 2]);
  });

  it('prints only the final task as JSON with --wait --json', async () => {
    const running = pht(['task', 'create', '--image', IMAGE, '--sites', 'site-a', '--wait', '--json']);
    await world.siteA.play();
    const { code, out } = await running;
    expect(code).toBe(0);
    expect(JSON.parse(out)).toMatchObject({ id: 1, status: 'completed' });
  });

  it("exits 3 when a site is unknown, with the registry's message", async () => {
    const { code, err } = await pht(['task', 'create', '--image', IMAGE, '--sites', 'site-a,nowhere']);
    expect(code).toBe(3);
    expect(err).toMatch(/^pht: .*nowhere.* \(HTTP 422, unknown_site\)\n$/);
  });
});

describe('pht task wait, show, list, cancel', () => {
  it('waits for an existing task', async () => {
    await world.client.createTask({ image: IMAGE, sites: ['site-a'] });
    const running = pht(['task', 'wait', '1']);
    await world.siteA.play({ finish: { state: 'cancelled', reason: 'stopped by site' } });
    const { code, out } = await running;
    expect(code).toBe(1);
    expect(out).toContain('task 1 failed');
  });

  it('shows a task and its runs', async () => {
    await finishedTask({ b: { finish: { state: 'failed', exitCode: 1, reason: 'boom' } } });
    const { code, out } = await pht(['task', 'show', '1']);
    expect(code).toBe(0);
    expect(out).toContain('status  failed');
    expect(out).toContain(`image   ${IMAGE}`);
    expect(out).toMatch(
      /SITE\s+RUN\s+STATUS\s+DETAIL\nsite-a\s+1\s+completed\s+exit 0\nsite-b\s+2\s+failed\s+exit 1: boom\n/,
    );
    const json = await pht(['task', 'show', '1', '--json']);
    expect(JSON.parse(json.out)).toMatchObject({ id: 1, status: 'failed' });
  });

  it('lists tasks, filtered by status', async () => {
    await finishedTask();
    await world.client.createTask({ image: IMAGE, sites: ['site-a'] });
    const all = await pht(['task', 'list']);
    expect(all.code).toBe(0);
    expect(all.out).toMatch(
      /^ID\s+STATUS\s+RUNS\s+NAME\s+IMAGE\s+CREATED\n2\s+queued\s+0\/1\s+-\s+.+\n1\s+completed\s+2\/2\s+count\s+/,
    );
    const completed = await pht(['task', 'list', '--status', 'completed', '--json']);
    expect((JSON.parse(completed.out) as { tasks: Task[] }).tasks.map((t) => t.id)).toEqual([1]);
    const paged = await pht(['task', 'list', '--limit', '1']);
    expect(paged.out).toContain('tasks 1–1 of 2 (more with --offset 1)');
  });

  it('cancels a task', async () => {
    await world.client.createTask({ image: IMAGE });
    const run = await world.siteA.claim();
    await world.siteA.start(run.id);
    const { code, out } = await pht(['task', 'cancel', '1']);
    expect(code).toBe(0);
    expect(out).toBe('task 1: running (1 running run asked to stop)\n');
    const again = await pht(['task', 'cancel', '1', '--json']);
    expect(JSON.parse(again.out)).toMatchObject({ id: 1, status: 'running' });
  });

  it('exits 3 for a task that does not exist', async () => {
    const { code, err } = await pht(['task', 'show', '42']);
    expect(code).toBe(3);
    expect(err).toBe('pht: task 42 not found (HTTP 404, not_found)\n');
  });
});

describe('pht task logs', () => {
  it("prints every run's log with its site in front of each line", async () => {
    await finishedTask({ a: { log: 'one\ntwo\n' }, b: { log: 'three (no newline)' } });
    const { code, out } = await pht(['task', 'logs', '1']);
    expect(code).toBe(0);
    expect(out).toBe('[site-a] one\n[site-a] two\n[site-b] three (no newline)\n');
    const json = await pht(['task', 'logs', '1', '--json']);
    expect(JSON.parse(json.out)).toEqual({
      taskId: 1,
      runs: [
        { site: 'site-a', runId: 1, status: 'completed', log: 'one\ntwo\n', logExpiredAt: null },
        { site: 'site-b', runId: 2, status: 'completed', log: 'three (no newline)', logExpiredAt: null },
      ],
    });
  });

  it('follows the logs of running runs until they finish', async () => {
    await world.client.createTask({ image: IMAGE });
    const a = await world.siteA.claim();
    const b = await world.siteB.claim();
    await world.siteA.start(a.id);
    await world.siteB.start(b.id);
    await world.siteA.log(a.id, 'a: start\n');
    const following = pht(['task', 'logs', '1', '--follow']);
    await world.siteB.log(b.id, 'b: half a line');
    await world.siteB.log(b.id, ', the other half\n');
    await world.siteA.log(a.id, 'a: end');
    await world.siteA.finish(a.id, { state: 'completed', exitCode: 0 });
    await world.siteB.finish(b.id, { state: 'completed', exitCode: 0 });
    const { code, out } = await following;
    expect(code).toBe(0);
    const lines = out.split('\n').filter(Boolean);
    expect(lines.filter((l) => l.startsWith('[site-a] '))).toEqual(['[site-a] a: start', '[site-a] a: end']);
    expect(lines.filter((l) => l.startsWith('[site-b] '))).toEqual(['[site-b] b: half a line, the other half']);
  });
  it('follows as JSON lines with --json', async () => {
    await finishedTask({ a: { log: 'a1\n' }, b: { log: 'b1\n' } });
    const { code, out } = await pht(['task', 'logs', '1', '--follow', '--json']);
    expect(code).toBe(0);
    const records = out
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { site: string });
    expect(records.sort((x, y) => x.site.localeCompare(y.site))).toEqual([
      { site: 'site-a', runId: 1, text: 'a1\n' },
      { site: 'site-b', runId: 2, text: 'b1\n' },
    ]);
  });
});

describe('pht task results', () => {
  it("saves every run's files under DIR/<site>/", async () => {
    await finishedTask({
      a: { files: { 'result.json': { n: 1 } } },
      b: { files: { 'result.json': { n: 2 }, 'plots/hist.csv': 'x,y\n' } },
    });
    const out = path.join(tmp, 'results');
    const human = await pht(['task', 'results', '1', '--out', out]);
    expect(human.code).toBe(0);
    expect(human.out).toMatch(/SITE\s+FILE\s+BYTES\nsite-a\s+site-a\/result.json\s+7\n/);
    expect(human.out).toContain('saved 3 files from 2 of 2 runs to');
    expect(JSON.parse(fs.readFileSync(path.join(out, 'site-b/result.json'), 'utf8'))).toEqual({ n: 2 });
    expect(fs.readFileSync(path.join(out, 'site-b/plots/hist.csv'), 'utf8')).toBe('x,y\n');

    const json = await pht(['task', 'results', '1', '--out', path.join(tmp, 'again'), '--json']);
    const report = JSON.parse(json.out) as { runs: { site: string; files: { name: string; path: string }[] }[] };
    expect(report.runs.map((r) => [r.site, r.files.map((f) => f.name)])).toEqual([
      ['site-a', ['result.json']],
      ['site-b', ['plots/hist.csv', 'result.json']],
    ]);
    expect(fs.existsSync(report.runs[1]!.files[0]!.path)).toBe(true);
  });

  it('warns that results of an unfinished task may be incomplete', async () => {
    await world.client.createTask({ image: IMAGE, sites: ['site-a'] });
    const { code, out, err } = await pht(['task', 'results', '1', '--out', path.join(tmp, 'r')]);
    expect(code).toBe(0);
    expect(err).toContain('task 1 is queued; results may be incomplete');
    expect(out).toContain('saved 0 files from 0 of 1 runs');
  });
});

describe('runs whose log or files retention removed', () => {
  /** site-a's run loses its log and files, site-b's only its log. */
  async function expiredTask(): Promise<Task> {
    const files = new ResultFileStore(world.registry.dataDir);
    const later = new Date(Date.now() + 2 * 86_400_000);
    const settings = { logsMs: null, filesMs: 86_400_000, intervalMs: 3_600_000, batch: 500 };
    await world.client.createTask({ image: IMAGE, name: 'count' });
    await world.siteA.play({ log: 'a1\n', files: { 'result.json': { n: 1 } } });
    // site-b's run is not final yet: retention leaves it alone.
    await expireDue(world.registry.store, files, settings, later);
    await world.siteB.play({ log: 'b1\n', files: { 'result.json': { n: 2 } } });
    await expireDue(world.registry.store, files, { ...settings, logsMs: 86_400_000, filesMs: null }, later);
    return world.client.getTask(1);
  }

  it('task show says which parts expired', async () => {
    const task = await expiredTask();
    expect(task.runs.map((r) => [r.site, r.logExpiredAt !== null, r.filesExpiredAt !== null])).toEqual([
      ['site-a', true, true],
      ['site-b', true, false],
    ]);
    const { code, out } = await pht(['task', 'show', '1']);
    expect(code).toBe(0);
    expect(out).toMatch(
      /site-a\s+1\s+completed\s+exit 0; log and files expired\nsite-b\s+2\s+completed\s+exit 0; log expired\n/,
    );
  });

  it('task logs says a log expired instead of failing on it, with or without --follow', async () => {
    const task = await expiredTask();
    const at = task.runs[0]!.logExpiredAt!;
    const plain = await pht(['task', 'logs', '1']);
    expect(plain.code, plain.err).toBe(0);
    expect(plain.out).toContain(`[site-a] (log removed by the registry's retention at ${at})\n`);
    const json = await pht(['task', 'logs', '1', '--json']);
    expect(json.code, json.err).toBe(0);
    expect((JSON.parse(json.out) as { runs: unknown[] }).runs[0]).toEqual({
      site: 'site-a',
      runId: 1,
      status: 'completed',
      log: null,
      logExpiredAt: at,
    });
    const follow = await pht(['task', 'logs', '1', '--follow']);
    expect(follow.code, follow.err).toBe(0);
    expect(follow.out).toContain(`[site-a] (log removed by the registry's retention at ${at})\n`);
  });

  it('task results saves the files that are left and names the runs whose files expired', async () => {
    const task = await expiredTask();
    const out = path.join(tmp, 'results');
    const { code, out: stdout, err } = await pht(['task', 'results', '1', '--out', out]);
    expect(code, err).toBe(0);
    expect(err).toBe(
      `pht: run 1 (site-a): (result files removed by the registry's retention at ${task.runs[0]!.filesExpiredAt})\n`,
    );
    expect(stdout).toContain('saved 1 file from 1 of 2 runs');
    expect(fs.existsSync(path.join(out, 'site-b/result.json'))).toBe(true);
    expect(fs.existsSync(path.join(out, 'site-a/result.json'))).toBe(false);
  });
});

describe('pht sites', () => {
  it('lists the sites as a table or as JSON', async () => {
    const { code, out } = await pht(['sites']);
    expect(code).toBe(0);
    expect(out).toBe('SITE    ENABLED  LAST SEEN\nsite-a  yes      never\nsite-b  yes      never\n');
    const json = await pht(['sites', '--json']);
    expect((JSON.parse(json.out) as { name: string }[]).map((s) => s.name)).toEqual(['site-a', 'site-b']);
  });
});

describe('command line', () => {
  it('documents the commands and exit codes in --help', async () => {
    const { code, out } = await pht(['--help'], { env: {} });
    expect(code).toBe(0);
    for (const text of [
      'pht task create',
      'pht task logs ID [--follow]',
      'pht sites',
      'Exit codes:',
      '3  the registry refused',
    ])
      expect(out).toContain(text);
    const one = await pht(['task', 'results', '--help'], { env: {} });
    expect(one.out).toContain('Usage: pht task results ID --out DIR');
  });

  it.each([
    [[], /no command given/],
    [['task', 'explode'], /unknown command "task explode"/],
    [['task'], /"pht task" needs a subcommand: create, wait, show, list, logs, results, cancel/],
    [['task', 'create'], /needs --image/],
    [['task', 'create', '--image'], /--image needs a value/],
    [['task', 'create', '--image', IMAGE, '--timeout', '5'], /--timeout only makes sense with --wait/],
    [['task', 'create', '--image', IMAGE, '--wait', '--timeout', 'soon'], /--timeout must be seconds/],
    [['task', 'create', '--image', IMAGE, '--config', '/nonexistent/config.json'], /cannot read --config file/],
    [['task', 'show'], /takes ID; got none/],
    [['task', 'show', 'abc'], /task ID must be a positive integer/],
    [['task', 'show', '1', '--follow'], /unknown option --follow/],
    [['sites', '--prot', '5001'], /unknown option --prot/],
    [['task', 'create', '--image', IMAGE, '--wait=yes'], /option --wait takes no value/],
    [['task', 'list', '--status', 'done'], /--status must be one of/],
    [['task', 'results', '1'], /needs --out DIR/],
  ])('exits 2 on a usage error: %j', async (args, message) => {
    const { code, err, out } = await pht(args);
    expect(code).toBe(2);
    expect(out).toBe('');
    expect(err).toMatch(message);
  });

  it('exits 2 when no registry URL or token is configured', async () => {
    expect((await pht(['sites'], { env: {} })).err).toContain('no registry URL');
    expect((await pht(['sites'], { env: { PHT_URL: world.registry.url } })).err).toContain('no token');
  });

  it('takes --url and --token over the environment', async () => {
    const port = await closedPort();
    const { code } = await pht(['sites', '--url', world.registry.url, '--token', world.token], {
      env: { PHT_URL: `http://127.0.0.1:${port}`, PHT_TOKEN: 'wrong-token' },
    });
    expect(code).toBe(0);
  });

  it('exits 3 with a hint when the token is refused', async () => {
    const { code, err } = await pht(['sites', '--token', 'not-a-real-token']);
    expect(code).toBe(3);
    expect(err).toContain('(HTTP 401, unauthorized) (check PHT_TOKEN or --token)');
  });

  it('exits 3 when the registry cannot be reached, as JSON on stderr with --json', async () => {
    const port = await closedPort();
    const { code, out, err } = await pht(['task', 'list', '--json', '--url', `http://127.0.0.1:${port}`]);
    expect(code).toBe(3);
    expect(out).toBe('');
    expect(JSON.parse(err)).toEqual({
      error: { type: 'PhtConnectionError', message: expect.stringContaining('ECONNREFUSED') },
    });
  });
});
