/**
 * Retention (master/retention.ts): finished runs' logs and result files go after the configured
 * age, in batches; the runs stay and say so with 410; unfinished runs are never touched.
 */
import fs from 'node:fs';
import path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { compileMasterConfig } from '../../master/config.js';
import { ResultFileStore } from '../../master/result-files.js';
import { auditExpiredTask, expireDue, type RetentionSettings } from '../../master/retention.js';
import type { ExpiredTask } from '../../master/store/registry-store.js';
import { RETENTION_LOCK_KEY } from '../../master/store/postgres-retention.js';
import { loadRawConfig } from '../../shared/config-loader.js';
import { masterConfigSchema } from '../../shared/config-schemas.js';
import { ConfigError } from '../../shared/errors.js';
import { storeArgs } from '../helpers/registry-fixture.js';
import { testBackend } from '../helpers/postgres.js';
import {
  capturingLogger,
  ensureBuilt,
  eventually,
  expectApiError,
  runMaster,
  world,
  type LoggedLine,
  type World,
} from './helpers.js';

const DAY = 86_400_000;
const settings = (batch = 500): RetentionSettings => ({ logsMs: DAY, filesMs: DAY, intervalMs: 3_600_000, batch });
/** A sweep two days from now: every run finished by now is past a one-day retention. */
const later = () => new Date(Date.now() + 2 * DAY);

/** A run that finished with a log and a result file, and its id. */
async function finishedRun(w: World, site = 0): Promise<number> {
  await w.researcher.createTask({ sites: [w.sites[site]!.name] });
  const run = await w.sites[site]!.claimAndStart();
  await w.sites[site]!.log(run.id, 'line one\nline two\n');
  await w.sites[site]!.upload(run.id, 'result.json', Buffer.from('{"n":1}')).expect(201);
  await w.sites[site]!.finish(run.id, { state: 'completed', exitCode: 0 });
  return run.id;
}

function storedFiles(w: World): string[] {
  return fs.readdirSync(path.join(w.reg.dataDir, 'files'));
}

describe('retention', () => {
  it('removes the log and files of a finished run, which then answer 410 while the run keeps its state', async () => {
    const w = await world({ siteCount: 1 });
    const runId = await finishedRun(w);
    expect(storedFiles(w)).toHaveLength(1);
    const totals = await expireDue(w.reg.store, new ResultFileStore(w.reg.dataDir), settings(), later());
    expect(totals).toMatchObject({ logs: 1, fileRuns: 1, files: 1, busy: false });
    expect(storedFiles(w)).toEqual([]);
    expectApiError(await w.researcher.get(`/api/v1/runs/${runId}/log`), 410, 'log_expired');
    expectApiError(await w.researcher.get(`/api/v1/runs/${runId}/files`), 410, 'files_expired');
    expectApiError(await w.researcher.get(`/api/v1/runs/${runId}/files/result.json`), 410, 'files_expired');
    const run = await w.researcher.run(runId);
    expect(run.status).toBe('completed');
    expect(run.exitCode).toBe(0);
    // A second sweep finds nothing left.
    expect(await expireDue(w.reg.store, new ResultFileStore(w.reg.dataDir), settings(), later())).toMatchObject({
      logs: 0,
      fileRuns: 0,
    });
  });

  it('says in the run view, its task and the task list when the log and the files were removed, each on its own', async () => {
    const w = await world({ siteCount: 1 });
    const runId = await finishedRun(w);
    const kept = await w.researcher.run(runId);
    expect(kept).toMatchObject({ logExpiredAt: null, filesExpiredAt: null });
    const results = new ResultFileStore(w.reg.dataDir);
    await expireDue(w.reg.store, results, { ...settings(), filesMs: null }, later());
    const logGone = await w.researcher.run(runId);
    expect(logGone.filesExpiredAt).toBeNull();
    expect(Date.parse(logGone.logExpiredAt!)).toBeGreaterThanOrEqual(Date.parse(kept.finishedAt!));
    await expireDue(w.reg.store, results, settings(), later());
    const bothGone = await w.researcher.run(runId);
    expect(bothGone.logExpiredAt).toBe(logGone.logExpiredAt);
    expect(Date.parse(bothGone.filesExpiredAt!)).toBeGreaterThanOrEqual(Date.parse(bothGone.logExpiredAt!));
    // The same in the task's runs, and in the task list.
    const task = await w.researcher.task(bothGone.taskId);
    expect(task.runs[0]).toEqual(bothGone);
    const list = (await w.researcher.get('/api/v1/tasks').expect(200)).body as { tasks: { runs: unknown[] }[] };
    expect(list.tasks[0]!.runs[0]).toEqual(bothGone);
  });

  it('keeps what is younger than the retention age', async () => {
    const w = await world({ siteCount: 1 });
    const runId = await finishedRun(w);
    const totals = await expireDue(w.reg.store, new ResultFileStore(w.reg.dataDir), settings(), new Date());
    expect(totals).toMatchObject({ logs: 0, fileRuns: 0 });
    expect((await w.researcher.get(`/api/v1/runs/${runId}/log`).expect(200)).text).toBe('line one\nline two\n');
    await w.researcher.get(`/api/v1/runs/${runId}/files/result.json`).expect(200);
  });

  it('never touches a running or a queued run, whatever its age', async () => {
    const w = await world({ siteCount: 2 });
    await w.researcher.createTask({ sites: [w.sites[0]!.name] });
    const running = await w.sites[0]!.claimAndStart();
    await w.sites[0]!.log(running.id, 'still going\n');
    await w.sites[0]!.upload(running.id, 'partial.bin', Buffer.from('abc')).expect(201);
    const queued = (await w.researcher.createTask({ sites: [w.sites[1]!.name] })).runs[0]!;
    const totals = await expireDue(
      w.reg.store,
      new ResultFileStore(w.reg.dataDir),
      settings(),
      new Date(Date.now() + 3650 * DAY),
    );
    expect(totals).toMatchObject({ logs: 0, fileRuns: 0, files: 0 });
    expect((await w.researcher.get(`/api/v1/runs/${running.id}/log`).expect(200)).text).toBe('still going\n');
    await w.researcher.get(`/api/v1/runs/${running.id}/files/partial.bin`).expect(200);
    expect((await w.researcher.run(queued.id)).status).toBe('queued');
    await w.researcher.get(`/api/v1/runs/${queued.id}/log`).expect(200);
    // The running run can still log and finish as usual.
    await w.sites[0]!.log(running.id, 'done\n');
    await w.sites[0]!.finish(running.id, { state: 'completed', exitCode: 0 });
  });

  it('works in batches of the configured size and lets other work run between them', async () => {
    const w = await world({ siteCount: 1 });
    const owner = (await w.reg.store.listPrincipals('user')).find((p) => p.name === 'alice')!;
    const site = (await w.reg.store.listPrincipals('site'))[0]!;
    for (let i = 0; i < 25; i++) {
      await w.reg.store.createTask(owner, {
        name: null,
        image: 'img:1',
        config: Buffer.from('{}'),
        configType: 'application/json',
        sites: null,
      });
      const run = (await w.reg.store.claimNextRun(site.id, 60_000))!;
      await w.reg.store.startRun(site.id, run.id);
      await w.reg.store.appendLog(site.id, run.id, `run ${i}\n`, 1 << 20);
      await w.reg.store.finishRun(site.id, run.id, { state: 'completed', exitCode: 0 });
    }
    // Every batch the sweep asks for, and whether the event loop turned since the previous one.
    const batches: { logs: number; turnedBefore: boolean }[] = [];
    let turns = 0;
    let lastTurns = -1;
    let ticking = true;
    const tick = async () => {
      while (ticking) {
        turns++;
        await nextTurn();
      }
    };
    const ticker = tick();
    const store = new Proxy(w.reg.store, {
      get(target, prop, receiver) {
        if (prop !== 'expireBatch') return Reflect.get(target, prop, receiver) as unknown;
        return async (...args: Parameters<typeof target.expireBatch>) => {
          const turnedBefore = lastTurns === -1 || turns > lastTurns;
          const result = await target.expireBatch(...args);
          lastTurns = turns;
          batches.push({ logs: result.logs, turnedBefore });
          return result;
        };
      },
    });
    const totals = await expireDue(
      store,
      new ResultFileStore(w.reg.dataDir),
      { ...settings(10), filesMs: null },
      later(),
    );
    ticking = false;
    await ticker;
    expect(totals.logs).toBe(25);
    expect(batches.map((b) => b.logs)).toEqual([10, 10, 5]);
    expect(batches.every((b) => b.turnedBefore)).toBe(true);
  });

  it('runs on a timer in a registry configured with a retention age', async () => {
    const w = await world({ siteCount: 1, overrides: { retention: { logs: '0s', interval: '100ms' } } });
    const runId = await finishedRun(w);
    await eventually(
      async () => (await w.researcher.get(`/api/v1/runs/${runId}/log`)).status,
      (status) => status === 410,
      'the log to be expired by the timed sweep',
    );
    // Files have no retention here: they stay.
    await w.researcher.get(`/api/v1/runs/${runId}/files/result.json`).expect(200);
  });

  it.runIf(testBackend() === 'postgres')(
    'leaves the sweep to the registry process holding the retention lock',
    async () => {
      const w = await world({ siteCount: 1 });
      await finishedRun(w);
      const url = storeArgs(w.reg.dataDir)[3]!;
      const other = new pg.Client({ connectionString: url });
      await other.connect();
      try {
        await other.query('SELECT pg_advisory_lock($1::bigint)', [RETENTION_LOCK_KEY]);
        const held = await expireDue(w.reg.store, new ResultFileStore(w.reg.dataDir), settings(), later());
        expect(held).toMatchObject({ busy: true, logs: 0, fileRuns: 0 });
        await other.query('SELECT pg_advisory_unlock($1::bigint)', [RETENTION_LOCK_KEY]);
        const free = await expireDue(w.reg.store, new ResultFileStore(w.reg.dataDir), settings(), later());
        expect(free).toMatchObject({ busy: false, logs: 1, fileRuns: 1 });
      } finally {
        await other.end();
      }
    },
  );
});

describe('retention.runs: finished tasks deleted whole', () => {
  const runsOnly = (batch = 500): RetentionSettings => ({
    ...settings(batch),
    logsMs: null,
    filesMs: null,
    runsMs: DAY,
  });

  it('deletes a task that ended longer ago, with its runs, logs and files, takes it off the counts and logs each', async () => {
    const w = await world({ siteCount: 2 });
    const runId = await finishedRun(w);
    const doneTask = (await w.researcher.run(runId)).taskId;
    // Queued at the second site: not finished, whatever its age.
    const open = await w.researcher.createTask({ sites: [w.sites[1]!.name] });
    expect((await w.researcher.get('/api/v1/tasks').expect(200)).body.total).toBe(2);
    const lines: LoggedLine[] = [];
    const audit = capturingLogger(lines);
    audit.level = 'info';
    const deleted: ExpiredTask[] = [];
    const totals = await expireDue(w.reg.store, new ResultFileStore(w.reg.dataDir), runsOnly(), later(), (t) => {
      deleted.push(t);
      auditExpiredTask(audit, t);
    });
    expect(totals).toMatchObject({ tasks: 1, taskRuns: 1, files: 1, logs: 0, fileRuns: 0, busy: false });
    expect(deleted).toEqual([{ id: doneTask, owner: 'alice', finishedAt: expect.any(String), runs: 1, files: 1 }]);
    expect(lines).toEqual([
      expect.objectContaining({
        level: 'info',
        event: 'task_expired',
        taskId: doneTask,
        owner: 'alice',
        runs: 1,
        files: 1,
      }),
    ]);
    expect(storedFiles(w)).toEqual([]);
    await w.researcher.get(`/api/v1/tasks/${doneTask}`).expect(404);
    await w.researcher.get(`/api/v1/runs/${runId}`).expect(404);
    await w.researcher.get(`/api/v1/runs/${runId}/log`).expect(404);
    const list = (await w.researcher.get('/api/v1/tasks').expect(200)).body as {
      total: number;
      tasks: { id: number }[];
    };
    expect(list.total).toBe(1);
    expect(list.tasks.map((t) => t.id)).toEqual([open.id]);
    // Nothing more to do.
    expect(await expireDue(w.reg.store, new ResultFileStore(w.reg.dataDir), runsOnly(), later())).toMatchObject({
      tasks: 0,
    });
  });

  it('keeps a finished task that ended more recently, and a cancelled task whose run is still going', async () => {
    const w = await world({ siteCount: 2 });
    const runId = await finishedRun(w);
    await w.researcher.createTask({ sites: [w.sites[1]!.name] });
    const running = await w.sites[1]!.claimAndStart();
    // Cancelled, but its running run has not stopped yet.
    await w.researcher.post(`/api/v1/tasks/${running.taskId}/cancel`).expect(200);
    const recent = await expireDue(w.reg.store, new ResultFileStore(w.reg.dataDir), runsOnly(), new Date());
    expect(recent).toMatchObject({ tasks: 0 });
    await w.researcher.get(`/api/v1/runs/${runId}`).expect(200);
    const far = new Date(Date.now() + 3650 * DAY);
    const totals = await expireDue(w.reg.store, new ResultFileStore(w.reg.dataDir), runsOnly(), far);
    expect(totals).toMatchObject({ tasks: 1 });
    await w.researcher.get(`/api/v1/runs/${running.id}`).expect(200);
    await w.researcher.get(`/api/v1/runs/${runId}`).expect(404);
  });

  it('works in batches of the configured size', async () => {
    const w = await world({ siteCount: 1 });
    for (let i = 0; i < 5; i++) await finishedRun(w);
    const totals = await expireDue(w.reg.store, new ResultFileStore(w.reg.dataDir), runsOnly(2), later());
    expect(totals).toMatchObject({ tasks: 5, taskRuns: 5, files: 5, batches: 3 });
    expect((await w.researcher.get('/api/v1/tasks').expect(200)).body.total).toBe(0);
  });
});

describe('retention settings', () => {
  const compile = (retention: unknown) =>
    compileMasterConfig(
      loadRawConfig({
        file: null,
        fileRequired: false,
        schema: masterConfigSchema,
        env: {},
        envOverrides: [],
        flagOverrides: { retention },
      }),
    ).retention;

  it('reads ages in days and defaults to keeping everything', () => {
    expect(compile({ logs: '30d', files: '90d' })).toEqual({
      logsMs: 30 * DAY,
      filesMs: 90 * DAY,
      runsMs: null,
      intervalMs: 3_600_000,
      batch: 500,
    });
    expect(compile({})).toMatchObject({ logsMs: null, filesMs: null, runsMs: null });
    expect(compile({ runs: '365d' }).runsMs).toBe(365 * DAY);
  });

  it('refuses a malformed age or an unknown field, naming it', () => {
    expect(() => compile({ logs: '30 days' })).toThrow(ConfigError);
    expect(() => compile({ logs: '30 days' })).toThrow(/retention\/logs|retention\.logs/);
    expect(() => compile({ runs: '1 year' })).toThrow(/runs/);
    expect(() => compile({ tasks: '1d' })).toThrow(/tasks/);
    expect(() => compile({ batch: 0 })).toThrow(/batch/);
  });
});

describe('node master expire', () => {
  beforeAll(() => ensureBuilt(), 180_000);

  it('says what would go with --dry-run and removes it without', async () => {
    const w = await world({ siteCount: 1 });
    const runId = await finishedRun(w);
    const dry = await runMaster([
      'expire',
      '--dry-run',
      '--retain-logs',
      '0s',
      '--retain-files',
      '0s',
      '--data-dir',
      w.reg.dataDir,
    ]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(
      /would expire the logs of 1 finished runs \(18 bytes\) and 1 result files of 1 runs \(7 bytes\)/,
    );
    await w.researcher.get(`/api/v1/runs/${runId}/log`).expect(200);
    const real = await runMaster(['expire', '--retain-logs', '0s', '--data-dir', w.reg.dataDir]);
    expect(real.code, real.stderr).toBe(0);
    expect(real.stdout).toMatch(/expired the logs of 1 finished runs and 0 result files/);
    expectApiError(await w.researcher.get(`/api/v1/runs/${runId}/log`), 410, 'log_expired');
    await w.researcher.get(`/api/v1/runs/${runId}/files/result.json`).expect(200);
  });

  it('reports finished tasks due for deletion with --dry-run, deletes them without, and logs each on stderr', async () => {
    const w = await world({ siteCount: 1 });
    const runId = await finishedRun(w);
    const taskId = (await w.researcher.run(runId)).taskId;
    const dry = await runMaster(['expire', '--dry-run', '--retain-runs', '0s', '--data-dir', w.reg.dataDir]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/and delete 1 finished tasks whole \(1 runs\)/);
    await w.researcher.get(`/api/v1/tasks/${taskId}`).expect(200);
    const real = await runMaster(['expire', '--retain-runs', '0s', '--data-dir', w.reg.dataDir]);
    expect(real.code, real.stderr).toBe(0);
    expect(real.stdout).toMatch(/and deleted 1 finished tasks whole \(1 runs\)/);
    const audited = real.stderr
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(audited).toContainEqual(
      expect.objectContaining({ event: 'task_expired', taskId, owner: 'alice', runs: 1, files: 1 }),
    );
    await w.researcher.get(`/api/v1/tasks/${taskId}`).expect(404);
  });

  it('refuses an option it does not take', async () => {
    const res = await runMaster(['expire', '--port', '1']);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/--port is not an option of "expire"/);
  });
});
