/**
 * Figure 4: runs completed per minute by one site with concurrency 1, 2 and 4, for a container
 * that sleeps 100 ms (then writes a tiny result). The queue is filled up front, so the site is
 * never idle waiting for work.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { DockerEngine } from '../client/container-engine.js';
import { engineRun } from './lib/engine-run.js';
import { ClientTimeline } from './lib/instrument.js';
import { readProc } from './lib/proc-stats.js';
import { writeSection } from './lib/report.js';
import { workloadImage } from './lib/images.js';
import { createInternalNetwork, removeSiteLeftovers, siteConfig, startSite, stopSite, uniqueSite } from './lib/site.js';
import { ms, summarize, table, wallMs } from './lib/stats.js';
import { type BenchArgs, runMain, startWorld } from './lib/world.js';

/** CPU used so far (ms): this process (the site client and the SDK), the registry, Docker's daemons, the machine. */
interface CpuMark {
  bench: number;
  registry: number;
  docker: number;
  machine: number;
}

function dockerPids(): number[] {
  try {
    return execFileSync('pidof', ['dockerd', 'containerd'], { encoding: 'utf8' }).trim().split(/\s+/).map(Number);
  } catch {
    return [];
  }
}

/** Busy CPU of the whole machine from /proc/stat (all but idle and iowait), in ms. */
function machineBusyMs(): number {
  const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
  return ((total - fields[3]! - fields[4]!) * 1000) / 100; // USER_HZ is 100 on Linux
}

function cpuMark(registryPid: number, docker: number[]): CpuMark {
  const usage = process.cpuUsage();
  return {
    bench: (usage.user + usage.system) / 1000,
    registry: readProc(registryPid).cpuMs,
    docker: docker.reduce((t, pid) => t + readProc(pid).cpuMs, 0),
    machine: machineBusyMs(),
  };
}

function cpuPerRun(from: CpuMark, to: CpuMark, runs: number): CpuMark {
  return {
    bench: (to.bench - from.bench) / runs,
    registry: (to.registry - from.registry) / runs,
    docker: (to.docker - from.docker) / runs,
    machine: (to.machine - from.machine) / runs,
  };
}

async function main(args: BenchArgs): Promise<void> {
  const tasks = args.number('tasks', 40);
  const levels = args.string('concurrency', '1,2,4').split(',').map(Number);
  const mode = args.string('mode', 'gateway') as 'gateway' | 'none';
  await removeSiteLeftovers();
  const image = await workloadImage();
  const sites = levels.map((c) => uniqueSite(`throughput-c${c}`));
  // --registry-profile DIR: the registry process writes a V8 CPU profile there (node --cpu-prof).
  const profileDir = args.string('registry-profile', '');
  const world = await startWorld(sites, profileDir ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] } : {});
  const rows: (string | number)[][] = [];
  const cpuRows: (string | number)[][] = [];
  const docker = dockerPids();
  const timeline = new ClientTimeline().install();
  try {
    for (const [i, concurrency] of levels.entries()) {
      const config = siteConfig(world.registry.url, world.siteKeys.get(sites[i]!)!, { concurrency, network: { mode } });
      const client = await startSite(config);
      const engine = new DockerEngine(config.dockerSocket);
      const rawNetwork =
        mode === 'gateway'
          ? await createInternalNetwork(`throughput-c${concurrency}`)
          : { name: 'none', remove: async () => undefined };
      try {
        // Warm-up: the first pull and the first container on a fresh network are slower.
        for (let w = 0; w < 2; w++)
          await world.researcher.waitForTask(
            (await world.researcher.createTask({ image, config: { sleepMs: 100 }, sites: [client.site] })).id,
          );
        const pool = timeline.diskPoolMisses();
        const cpuFrom = cpuMark(world.registry.pid, docker);
        const started = wallMs();
        const ids: number[] = [];
        for (let t = 0; t < tasks; t++)
          ids.push((await world.researcher.createTask({ image, config: { sleepMs: 100 }, sites: [client.site] })).id);
        const finals = [];
        for (const id of ids) finals.push(await world.researcher.waitForTask(id, { timeoutMs: 300_000 }));
        const elapsed = wallMs() - started;
        const trainCpu = cpuPerRun(cpuFrom, cpuMark(world.registry.pid, docker), tasks);
        const poolAfter = timeline.diskPoolMisses();
        const failed = finals.filter((f) => f.status !== 'completed').length;
        if (failed > 0) throw new Error(`${failed} of ${tasks} tasks did not complete`);
        const runs = finals.map((f) => f.runs[0]!);
        // Steady state from the registry's own timestamps: first to last run finished.
        const finished = runs.map((r) => Date.parse(r.finishedAt!)).sort((a, b) => a - b);
        const steady = ((tasks - 1) / ((finished.at(-1)! - finished[0]!) / 1000)) * 60;
        const perRun = summarize(runs.map((r) => Date.parse(r.finishedAt!) - Date.parse(r.startedAt!)));
        const container = summarize(runs.map((r) => r.durationMs ?? NaN).filter(Number.isFinite));
        const perMinute = (tasks / (elapsed / 1000)) * 60;
        // Baseline in the same run: the same containers (same spec, image, task config and network
        // kind) through dockerode, create → start → wait → remove, `concurrency` at a time.
        const imageId = (await engine.inspectImage(image))!.id;
        await engineRun(engine, imageId, config, rawNetwork.name, { sleepMs: 100 }); // warm-up
        const baseCpuFrom = cpuMark(world.registry.pid, docker);
        const baseStarted = wallMs();
        let next = 0;
        await Promise.all(
          Array.from({ length: concurrency }, async () => {
            while (next < tasks) {
              next++;
              await engineRun(engine, imageId, config, rawNetwork.name, { sleepMs: 100 });
            }
          }),
        );
        const baseElapsed = wallMs() - baseStarted;
        const baseCpu = cpuPerRun(baseCpuFrom, cpuMark(world.registry.pid, docker), tasks);
        cpuRows.push(
          [
            concurrency,
            'train',
            ms(trainCpu.bench),
            ms(trainCpu.registry),
            ms(trainCpu.docker),
            ms(trainCpu.machine),
            `${poolAfter.misses - pool.misses} of ${poolAfter.takes - pool.takes}`,
          ],
          [
            concurrency,
            'dockerode',
            ms(baseCpu.bench),
            ms(baseCpu.registry),
            ms(baseCpu.docker),
            ms(baseCpu.machine),
            '',
          ],
        );
        const basePerMinute = (tasks / (baseElapsed / 1000)) * 60;
        rows.push([
          concurrency,
          tasks,
          (elapsed / 1000).toFixed(1),
          perMinute.toFixed(0),
          steady.toFixed(0),
          basePerMinute.toFixed(0),
          `${((perMinute / basePerMinute) * 100).toFixed(0)} %`,
          ms(perRun.median),
          ms(container.median),
        ]);
        console.log(
          `concurrency ${concurrency}: ${tasks} runs in ${(elapsed / 1000).toFixed(1)} s = ${perMinute.toFixed(0)} runs/min; dockerode ${basePerMinute.toFixed(0)} runs/min`,
        );
      } finally {
        await stopSite(client, config);
        await rawNetwork.remove();
      }
    }
  } finally {
    timeline.uninstall();
    await world.close();
  }
  const body = `
Target: at least 90 % of the runs/min of the same containers run straight through dockerode at
the same concurrency, measured in the same run.

One site client (in the benchmark's process, defaults but for \`concurrency\`; network mode
"${mode}", pullPolicy always) against a registry process. ${tasks} single-site tasks are posted
back to back after 2 warm-up tasks; the container sleeps 100 ms, then writes result.json.
"runs/min" counts from the first POST to the last task seen final by the researcher's SDK;
"steady runs/min" from the registry's finishedAt of the first to that of the last run.
"run at the site" is the registry's startedAt → finishedAt (site's POST /start to POST /finish);
"container" is Docker's own StartedAt → FinishedAt.

"dockerode runs/min": the same ${tasks} containers (the client's container spec, same image, same
task config, \`--network none\` or an internal network for "gateway") through the Engine API,
create → start → wait → remove, ${'`concurrency`'} at a time, no registry; "train / dockerode" compares
the two runs/min.

${table(['concurrency', 'runs', 'wall (s)', 'runs/min', 'steady runs/min', 'dockerode runs/min', 'train / dockerode', 'run at the site, median (ms)', 'container, median (ms)'], rows)}

CPU per run (ms) in the same windows: this process (the site client with the researcher's SDK;
for dockerode, the benchmark's dockerode calls), the registry process, Docker's daemons
(dockerd + containerd; the per-container shims and runc are only in the machine's figure), and
the whole machine's busy time (/proc/stat, everything running, other users included). "no
pooled disk" counts the runs that found the disk pool empty and formatted and mounted their own
disk on their path.

${table(['concurrency', 'series', 'client + SDK', 'registry', 'dockerd + containerd', 'machine', 'no pooled disk'], cpuRows)}
`;
  console.log(body);
  writeSection({
    id: 'throughput',
    title: '4. Throughput of one site',
    command: `npm run bench:throughput -- --tasks ${tasks} --concurrency ${levels.join(',')} --mode ${mode}`,
    body,
  });
}

runMain(
  {
    usage:
      'Usage: node dist/bench/throughput.js [--tasks N] [--concurrency 1,2,4] [--mode gateway|none] [--registry-profile DIR]\n  Figure 4: runs completed per minute by one site at several concurrency levels.',
    options: { tasks: 'value', concurrency: 'value', mode: 'value', 'registry-profile': 'value' },
  },
  main,
);
