/**
 * Figure 4: runs completed per minute by one site with concurrency 1, 2 and 4, for a container
 * that sleeps 100 ms (then writes a tiny result). The queue is filled up front, so the site is
 * never idle waiting for work.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { DockerEngine } from '../client/container-engine.js';
import { runDiskSpec } from '../client/run-executor.js';
import type { DiskSpec } from '../client/run-workspace.js';
import { engineRun } from './lib/engine-run.js';
import { hotSpots, monotonicUs, newestProfile, type MonotonicWindow } from './lib/cpu-profile.js';
import { diskFloor, protocolFloor, type CpuFloor } from './lib/cpu-floors.js';
import { ClientTimeline } from './lib/instrument.js';
import { MachineProfile } from './lib/machine-profile.js';
import { SelfProfile } from './lib/self-profile.js';
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
  // The protocol floor's site: no client polls for it, the floor claims its runs itself.
  const floorSite = uniqueSite('throughput-floor');
  // --profile DIR: V8 CPU profiles of this process (the client and the SDK) over each train window
  // and of the registry process (node --cpu-prof); their summaries are printed, not recorded.
  const profileDir = args.string('profile', '');
  const registryProfiles = profileDir ? path.join(path.resolve(profileDir), 'registry') : '';
  // --perf: the whole machine's CPU per run by process (perf record -a), train and dockerode.
  const perf = args.flag('perf');
  const floorRuns = args.number('floor-runs', 40);
  const world = await startWorld(
    [...sites, floorSite],
    profileDir ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${registryProfiles}`] } : {},
  );
  const rows: (string | number)[][] = [];
  const gapRows: (string | number)[][] = [];
  const floorRows: (string | number)[][] = [];
  const callRows: (string | number)[][] = [];
  let diskSpec: DiskSpec | null = null;
  const cpuRows: (string | number)[][] = [];
  const perfRuns: { concurrency: number; train: Map<string, number>; dockerode: Map<string, number> }[] = [];
  /** train / dockerode runs/min (%) per concurrency, and the ceiling the floors leave (see below). */
  const ratios = new Map<number, number>();
  const ceilingRows: (string | number)[][] = [];
  const windows: { concurrency: number; window: MonotonicWindow; file: string }[] = [];
  const named = new Map([
    [process.pid, 'client + SDK (this process)'],
    [world.registry.pid, 'registry'],
  ]);
  const docker = dockerPids();
  const timeline = new ClientTimeline().install();
  try {
    for (const [i, concurrency] of levels.entries()) {
      const config = siteConfig(world.registry.url, world.siteKeys.get(sites[i]!)!, { concurrency, network: { mode } });
      diskSpec = runDiskSpec(config);
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
        const machine = perf ? new MachineProfile() : null;
        await machine?.start();
        const self = profileDir ? new SelfProfile() : null;
        await self?.start();
        const fromUs = monotonicUs();
        const cpuFrom = cpuMark(world.registry.pid, docker);
        const started = wallMs();
        const ids: number[] = [];
        for (let t = 0; t < tasks; t++)
          ids.push((await world.researcher.createTask({ image, config: { sleepMs: 100 }, sites: [client.site] })).id);
        const finals = [];
        for (const id of ids) finals.push(await world.researcher.waitForTask(id, { timeoutMs: 300_000 }));
        const elapsed = wallMs() - started;
        const trainCpu = cpuPerRun(cpuFrom, cpuMark(world.registry.pid, docker), tasks);
        gapRows.push([concurrency, ...betweenRuns(timeline, started, wallMs())]);
        callRows.push([concurrency, ...callsPerRun(timeline, started, wallMs(), tasks)]);
        const window = { fromUs, toUs: monotonicUs() };
        if (self) windows.push({ concurrency, window, file: await self.stop(profileDir, `client-c${concurrency}`) });
        const trainByProcess = await machine?.stop(named);
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
        const baseMachine = perf ? new MachineProfile() : null;
        await baseMachine?.start();
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
        const baseByProcess = await baseMachine?.stop(named);
        if (trainByProcess && baseByProcess)
          perfRuns.push({ concurrency, train: trainByProcess, dockerode: baseByProcess });
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
        ratios.set(concurrency, (perMinute / basePerMinute) * 100);
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
    // Floors in the same run: the registry protocol of a run alone, and a run's disk alone.
    if (floorRuns > 0) {
      const protocol = await protocolFloor(
        world.registry,
        world.siteKeys.get(floorSite)!,
        floorSite,
        world.researcher,
        floorRuns,
        perf ? named : null,
      );
      const disk =
        diskSpec?.mode === 'loop-image' ? await diskFloor(diskSpec, world.registry.pid, 20, perf ? named : null) : null;
      const floors: [string, CpuFloor, (name: string) => boolean][] = [
        ['the registry protocol of a run alone', protocol, (n) => n === 'registry' || n.startsWith('client')],
      ];
      if (disk)
        floors.push([
          'a run disk alone (made, mounted, laid out, written through, unmounted, deleted)',
          disk,
          isDiskPath,
        ]);
      const rows = floors.map(([what, floor, counted]) => floorRow(what, floor, counted));
      floorRows.push(...rows.map((r) => [r.what, ...r.values.map(ms)]));
      // What the floors alone leave of the target where both cores are busy (runs/min then follow
      // the machine's CPU per run): dockerode's CPU per run against that plus the floors'.
      const floorMachine = rows.reduce((t, r) => t + (r.values[3] ?? 0), 0);
      if (perf && rows.length > 1)
        for (const { concurrency, dockerode } of perfRuns) {
          const base = busyMs(dockerode) / tasks;
          const measured = ratios.get(concurrency);
          ceilingRows.push([
            concurrency,
            ms(base),
            ms(floorMachine),
            `${((base / (base + floorMachine)) * 100).toFixed(0)} %`,
            measured === undefined ? '–' : `${measured.toFixed(0)} %`,
          ]);
        }
      if (rows.length > 1)
        floorRows.push([
          '**both**',
          ...rows[0]!.values.map((_, i) => ms(rows.reduce((t, r) => t + (r.values[i] ?? 0), 0))),
        ]);
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

Between one run's end and the next one's start, at the site (medians over the runs, ms; at
concurrency 1 the slot stands idle meanwhile): from a run's report (POST /finish) being sent to the
next claim (the poll) being sent, the claim's round trip, and from the claim's answer to the next
run's POST /start being sent (the config opened, its workspace made, its executor started).

The site client's calls per run in the same windows: to the registry (all site requests) and
to the Docker engine (the dockerode series makes 4: create, start, wait, remove).

${table(['concurrency', ...CALLS.map((c) => c.replace(/^api\./, 'registry ').replace(/^docker\./, 'Docker '))], callRows)}

${table(['concurrency', 'report sent → claim sent', 'claim round trip', 'claim answered → POST /start sent', 'report sent → next POST /start sent'], gapRows)}
${perf ? perfTable(perfRuns, tasks) : ''}
${
  floorRows.length > 0
    ? `Floors, measured in the same run (CPU per run, ms): the same kind of work with nothing of the
train around it. "the registry protocol of a run alone": the site's requests of one run (long
poll, POST /start, a log line, a result upload, POST /finish) and the researcher's task creation
and wait, from this process to the same registry, with no container, disk or state save. "a run
disk alone": what the client's disk pool and a workspace's removal do for one run, one disk after
the other.${perf ? ' "machine (perf)": the processes of that work only (this process, the registry, the command helper and its commands, the kernel threads of loop devices, ext4 and writeback).' : ''}

${table(['floor', 'client + SDK', 'registry', 'command helper and its commands', ...(perf ? ['machine (perf)'] : [])], floorRows)}
${
  ceilingRows.length > 0
    ? `
The ceiling the floors leave: where both cores are busy, runs/min follow the machine's CPU per
run, so a train that did nothing beyond dockerode's work and the two floors would reach at most
dockerode's machine CPU per run divided by that plus the floors' (perf, ms per run). At
concurrency 1 the cores are not both busy and the ceiling does not apply.

${table(['concurrency', "dockerode's machine CPU per run", 'both floors (machine)', 'ceiling', 'measured train / dockerode'], ceilingRows)}
`
    : ''
}`
    : ''
}`;
  console.log(body);
  if (profileDir) {
    // A profiled run is slowed by the profiler: its figures are printed, not recorded.
    for (const { concurrency, window, file } of windows) {
      printHotSpots(`client + SDK at concurrency ${concurrency} (${file})`, file, tasks);
      const registry = newestProfile(registryProfiles);
      printHotSpots(`registry at concurrency ${concurrency} (${registry})`, registry, tasks, window);
    }
    return;
  }
  writeSection({
    id: 'throughput',
    title: '4. Throughput of one site',
    command: `npm run bench:throughput -- --tasks ${tasks} --concurrency ${levels.join(',')} --mode ${mode}${perf ? ' --perf' : ''}${floorRuns === 40 ? '' : ` --floor-runs ${floorRuns}`}`,
    body,
  });
}

const CALLS = [
  'api.claimNext',
  'api.start',
  'api.getRun',
  'api.progress',
  'api.log',
  'api.uploadFile',
  'api.finish',
  'docker.pull',
  'docker.inspectImage',
  'docker.create',
  'docker.start',
  'docker.inspect',
  'docker.wait',
  'docker.logs',
  'docker.remove',
];

/** Calls of each kind per run over [from, to] (the claims include the last, empty one). */
function callsPerRun(timeline: ClientTimeline, from: number, to: number, runs: number): string[] {
  const spans = timeline.between(from, to);
  return CALLS.map((what) => (spans.filter((s) => s.what === what).length / runs).toFixed(2));
}

/** Kernel threads and commands of a run's disk, and the client's side of it (for the disk floor). */
function isDiskPath(name: string): boolean {
  return /^(client|node \(helper\)|mkfs|mount|umount|kworker|kthreadd|loop\d|jbd2|ext4|ksoftirqd)/.test(name);
}

function floorRow(
  what: string,
  floor: CpuFloor,
  counted: (name: string) => boolean,
): { what: string; values: number[] } {
  const values = [floor.bench, floor.registry, floor.helper];
  if (floor.machine) values.push([...floor.machine].filter(([name]) => counted(name)).reduce((t, [, v]) => t + v, 0));
  return { what, values };
}

/**
 * Medians of the steps from each run's report (POST /finish sent) to the next claim and to the
 * next run's POST /start, over the runs of [from, to]: each claim is paired with the report sent
 * last before it.
 */
function betweenRuns(timeline: ClientTimeline, from: number, to: number): string[] {
  const spans = timeline.between(from, to).filter((s) => s.ok);
  const reports = spans.filter((s) => s.what === 'api.finish').sort((a, b) => a.start - b.start);
  const starts = new Map(spans.filter((s) => s.what === 'api.start').map((s) => [s.runId, s]));
  const steps: number[][] = [[], [], [], []];
  for (const claim of spans.filter((s) => s.what === 'api.claimNext' && s.runId !== null)) {
    const report = reports.filter((f) => f.start <= claim.start).at(-1);
    const start = starts.get(claim.runId);
    if (!report || !start) continue;
    steps[0]!.push(claim.start - report.start);
    steps[1]!.push(claim.end - claim.start);
    steps[2]!.push(start.start - claim.end);
    steps[3]!.push(start.start - report.start);
  }
  return steps.map((values) => (values.length > 0 ? ms(summarize(values).median) : '–'));
}

/**
 * CPU per run by process over the whole machine (perf), train against dockerode.
 */
/** Busy CPU (ms) of a perf profile by process: everything but the idle task. */
function busyMs(byProcess: Map<string, number>): number {
  return [...byProcess].filter(([n]) => n !== '(idle)').reduce((t, [, v]) => t + v, 0);
}

function perfTable(
  runs: { concurrency: number; train: Map<string, number>; dockerode: Map<string, number> }[],
  tasks: number,
): string {
  const rows: (string | number)[][] = [];
  for (const { concurrency, train, dockerode } of runs) {
    const busy = busyMs;
    const names = [...train.keys(), ...dockerode.keys()].filter((n, i, all) => n !== '(idle)' && all.indexOf(n) === i);
    names.sort((a, b) => (train.get(b) ?? 0) - (train.get(a) ?? 0));
    const total = busy(train);
    const rest = { train: 0, dockerode: 0 };
    for (const name of names) {
      const t = train.get(name) ?? 0;
      const d = dockerode.get(name) ?? 0;
      // Processes below 0.3 ms per run in both series are summed up as "the rest".
      if (Math.max(t, d) / tasks >= 0.3)
        rows.push([concurrency, name, ms(t / tasks), ms(d / tasks), ms((t - d) / tasks)]);
      else {
        rest.train += t;
        rest.dockerode += d;
      }
    }
    rows.push([
      concurrency,
      '(the rest)',
      ms(rest.train / tasks),
      ms(rest.dockerode / tasks),
      ms((rest.train - rest.dockerode) / tasks),
    ]);
    rows.push([
      concurrency,
      '**machine**',
      ms(total / tasks),
      ms(busy(dockerode) / tasks),
      ms((total - busy(dockerode)) / tasks),
    ]);
  }
  return `
The whole machine's CPU per run (ms) by process, sampled with \`perf record -a\` (clock samples every
2 ms on each CPU) over the same windows: every process, also the short-lived ones a run makes
(runc, the container's shim, mkfs.ext4, mount, umount) that no long-lived process accounts for.
"(helper)": the site client's command helper and its children.

${table(['concurrency', 'process', 'train', 'dockerode', 'train − dockerode'], rows)}
`;
}

function printHotSpots(title: string, file: string, runs: number, window?: MonotonicWindow): void {
  const spots = hotSpots(file, 25, window);
  const line = (h: { name: string; selfMs: number; share: number }) =>
    `${(h.selfMs / runs).toFixed(2).padStart(7)} ms/run ${(h.share * 100).toFixed(1).padStart(5)} %  ${h.name}`;
  console.log(`\n${title}: ${(spots.totalMs / runs).toFixed(1)} ms of samples per run`);
  console.log('by module:');
  for (const h of spots.files) console.log(line(h));
  console.log('by function:');
  for (const h of spots.functions) console.log(line(h));
}

runMain(
  {
    usage:
      "Usage: node dist/bench/throughput.js [--tasks N] [--concurrency 1,2,4] [--mode gateway|none] [--perf] [--profile DIR]\n         [--floor-runs N]\n  Figure 4: runs completed per minute by one site at several concurrency levels. --perf: the\n  machine's CPU per run by process (perf record -a). --profile DIR: V8 CPU profiles of the client\n  and the registry over the train's windows, summarised on stdout (BENCHMARKS.md is left alone).\n  --floor-runs N: runs of the protocol floor, measured after the levels (default 40; 0: no floors).",
    options: {
      tasks: 'value',
      concurrency: 'value',
      mode: 'value',
      perf: 'boolean',
      profile: 'value',
      'floor-runs': 'value',
    },
  },
  main,
);
