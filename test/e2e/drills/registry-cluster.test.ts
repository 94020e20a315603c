import fs from 'node:fs';
import path from 'node:path';
import pgLib from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Task } from '../../../shared/types.js';
import { startNginx, type RunningNginx } from '../../helpers/nginx.js';
import { startPostgresCluster, withDatabase, type PostgresCluster } from '../../helpers/postgres.js';
import {
  allFileProblems,
  buildDrillImage,
  cleanupSites,
  ContainerStartRecorder,
  drillDir,
  DrillResearcher,
  freePort,
  histogram,
  leftoverContainers,
  leftoverWorkspaces,
  MasterProcess,
  notCompleted,
  ProgramProcess,
  randomBetween,
  runsOf,
  sleep,
  startProblems,
  storedFileCount,
  uniqueName,
  waitUntilAllFinal,
  writeClientConfig,
  type DrillConfig,
  type DrillSite,
  type PlannedTask,
} from './drill-harness.js';

/**
 * Fault drill: a consortium registry of three `node master` processes on one PostgreSQL database
 * and one result files directory, behind nginx. Every 1–3 s one of the three, chosen at random,
 * is SIGKILLed and started again, while three `node client` processes (talking to nginx) work
 * through 200 runs; once during the drill PostgreSQL itself crashes (`pg_ctl -m immediate`) and
 * comes back. Afterwards every run must have completed exactly once (Docker's own count of
 * container starts, the sites' audit logs), every file must be served intact by each process,
 * and no task may exist twice.
 */

const RUNS = 200;
const UNUSED_SPARQL = 'http://127.0.0.1:9/sparql';

describe('fault drill: three registries behind nginx, one SIGKILLed in a loop, PostgreSQL restarted', () => {
  let dir: string;
  let pg: PostgresCluster | undefined;
  let masters: MasterProcess[] = [];
  let nginx: RunningNginx | undefined;
  const sites: DrillSite[] = [];
  let researcher: DrillResearcher;
  let image: string;
  let passed = false;
  let starts: ContainerStartRecorder | undefined;

  beforeAll(async () => {
    dir = drillDir('registry-cluster');
    pg = await startPostgresCluster(await freePort());
    const admin = new pgLib.Client({ connectionString: pg.url });
    await admin.connect();
    await admin.query('CREATE DATABASE pht');
    await admin.end();
    const database = withDatabase(pg.url, 'pht');
    const configFile = path.join(dir, 'master.json');
    fs.writeFileSync(configFile, JSON.stringify({ lease: '15s', sweepInterval: '1s', logLevel: 'warn' }));
    const dataDir = path.join(dir, 'shared-data');
    for (let i = 0; i < 3; i++)
      masters.push(
        new MasterProcess(await freePort(), dataDir, path.join(dir, `master-${i}.log`), configFile, database),
      );
    // Started together: the migration lock lets exactly one of them create the schema.
    await Promise.all(masters.map((m) => m.startReady()));
    nginx = await startNginx(
      await freePort(),
      masters.map((m) => m.port),
    );
    image = await buildDrillImage();
    researcher = new DrillResearcher(nginx.url, await masters[0]!.createUser('driller'));
    for (let i = 0; i < 3; i++) {
      const name = uniqueName(`rc${i}`);
      const apiKey = await masters[i]!.createSite(name);
      const workDir = path.join(dir, `${name}-work`);
      const clientConfig = path.join(dir, `${name}.json`);
      writeClientConfig(clientConfig, {
        registryUrl: nginx.url,
        apiKey,
        sparqlEndpoint: UNUSED_SPARQL,
        workDir,
        concurrency: 3,
      });
      sites.push({
        name,
        apiKey,
        workDir,
        client: new ProgramProcess('client', ['--config', clientConfig], path.join(dir, `${name}.log`)),
      });
    }
    starts = await ContainerStartRecorder.listen();
    for (const site of sites) site.client.start();
  }, 180_000);

  afterAll(async () => {
    await starts?.close();
    for (const site of sites) await site.client.close();
    await nginx?.stop();
    for (const m of masters) await m.close();
    await pg?.destroy();
    await cleanupSites(sites);
    if (passed) fs.rmSync(dir, { recursive: true, force: true });
    else if (dir) console.log(`registry-cluster drill: logs and state kept in ${dir}`);
  });

  it('ends each of 200 runs exactly once with intact files while registries die and PostgreSQL restarts', async () => {
    const began = Date.now();
    const plan: PlannedTask[] = [];
    for (let i = 0; i < 100; i++) {
      const taskSites = i % 2 === 0 ? sites.map((s) => s.name) : [sites[i % 3]!.name];
      const config: DrillConfig = {
        seed: `rc-${i}-${began}`,
        sleepMs: Math.round(randomBetween(100, 600)),
        files: [{ name: 'result.bin', bytes: Math.round(randomBetween(8, 64)) * 1024 }],
      };
      plan.push({ name: `registry-cluster-${i}`, sites: taskSites, config });
    }
    expect(plan.reduce((n, t) => n + t.sites.length, 0)).toBe(RUNS);

    let postRetries = 0;
    const post = async (t: PlannedTask) => {
      const { attempts } = await researcher.postOnce(t.name, image, t.config, t.sites);
      postRetries += attempts - 1;
    };
    for (const t of plan.slice(0, 50)) await post(t);

    // One thing at a time: a registry cannot start while the database is down (it exits), so
    // the killer and the database restart take turns.
    let busy: Promise<void> = Promise.resolve();
    const exclusive = (fn: () => Promise<void>) => (busy = busy.then(fn));
    let stopKilling = false;
    const killer = (async () => {
      while (!stopKilling) {
        await sleep(randomBetween(1000, 3000));
        if (stopKilling) break;
        await exclusive(async () => {
          const i = Math.floor(Math.random() * masters.length);
          await masters[i]!.kill('SIGKILL');
          await masters[i]!.startReady();
        });
      }
    })();

    let databaseDownMs = 0;
    let tasks: Task[];
    try {
      for (const [n, t] of plan.slice(50).entries()) {
        await post(t);
        await sleep(100);
        if (n === 10) {
          // PostgreSQL crashes (no clean shutdown: recovery replays its log) and comes back.
          await exclusive(async () => {
            const down = Date.now();
            await pg!.stop('immediate');
            await sleep(2000);
            await pg!.start();
            databaseDownMs = Date.now() - down;
          });
        }
      }
      tasks = await waitUntilAllFinal(researcher, plan.length, 420_000);
    } finally {
      stopKilling = true;
      await killer;
      await busy;
    }
    const tookMs = Date.now() - began;

    tasks = await researcher.allTasks();
    expect(histogram(tasks.map((t) => t.name ?? '')), 'a retried POST created a task twice').toEqual(
      Object.fromEntries(plan.map((t) => [t.name, 1])),
    );
    const runs = runsOf(tasks, plan);
    expect(runs.length).toBe(RUNS);
    expect(notCompleted(runs)).toEqual([]);
    const attempts = histogram(runs.map((r) => r.run.attempt));

    await starts!.close();
    expect(startProblems(starts!, runs)).toEqual([]);

    const reportProblems: string[] = [];
    for (const site of sites) {
      const reports = fs
        .readFileSync(path.join(site.workDir, 'audit.log'), 'utf8')
        .split('\n')
        .filter((l) => l.includes('"result_reported"'))
        .map((l) => JSON.parse(l) as { runId: number });
      const perRun = histogram(reports.map((r) => r.runId));
      for (const { run } of runs.filter((r) => r.run.site === site.name))
        if (perRun[run.id] !== 1)
          reportProblems.push(`run ${run.id} at ${site.name}: reported ${perRun[run.id] ?? 0} times`);
    }
    expect(reportProblems).toEqual([]);

    // Every file intact, whichever process serves it: through nginx, then from each registry.
    expect(await allFileProblems(researcher, runs)).toEqual([]);
    for (const m of masters) {
      const direct = new DrillResearcher(m.url, researcher.token);
      const sample = runs.filter((_, i) => i % 10 === 0);
      expect(await allFileProblems(direct, sample), `files served by ${m.url}`).toEqual([]);
    }

    for (const site of sites) {
      expect(await leftoverContainers(site.name), `containers left by ${site.name}`).toEqual([]);
      expect(await leftoverWorkspaces(site.workDir), `run folders left by ${site.name}`).toEqual([]);
    }
    const stored = storedFileCount(masters[0]!.dataDir);
    const kills = masters.reduce((n, m) => n + m.kills, 0);
    const summary = {
      runs: runs.length,
      registryKills: kills,
      killsPerMaster: masters.map((m) => m.kills),
      databaseDownMs,
      postRetries,
      attempts,
      storedFiles: stored.files,
      // A registry killed between storing an upload and recording it leaves a file no run refers
      // to; with a shared directory only files older than the grace period are removed at start.
      unreferencedFiles: stored.files - RUNS,
      tmpFiles: stored.tmp,
      tookSeconds: Math.round(tookMs / 1000),
    };
    console.log(`registry-cluster drill: ${JSON.stringify(summary)}`);
    fs.writeFileSync(path.join(dir, 'summary.json'), JSON.stringify(summary, null, 2));
    expect(kills).toBeGreaterThanOrEqual(5);
    expect(databaseDownMs).toBeGreaterThan(0);
    expect(stored.files).toBeGreaterThanOrEqual(RUNS);
    passed = true;
  }, 600_000);
});
