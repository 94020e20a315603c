/**
 * Figure 1: what the train adds to one trivial task. The same image runs (a) with a raw
 * `docker run --rm` carrying the client's hardening flags, mounts and network setting and (b)
 * through the whole train (SDK post → long poll → pull → run → upload → the researcher's wait
 * returns), alternately, for the client's "none" and default "gateway" network modes. The train's
 * time is split into phases from the client's own calls, timed in this process.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { silentLogger } from '../shared/logger.js';
import type { ClientConfig } from '../client/config.js';
import { DockerEngine } from '../client/container-engine.js';
import { CONTAINER_PATHS } from '../shared/container-contract.js';
import { engineRun, runFolders, type EngineSteps } from './lib/engine-run.js';
import { workloadImage } from './lib/images.js';
import { measureFloors, type Floors } from './lib/floors.js';
import { measureProtocolAlone, type ProtocolAlone } from './lib/protocol-alone.js';
import { ClientTimeline, type ClientClasses, type Span } from './lib/instrument.js';
import { type Build, buildBaseline, removeBuild } from './lib/baseline.js';
import { writeSection } from './lib/report.js';
import {
  BENCH_LABEL,
  type ConfigModules,
  createInternalNetwork,
  removeSiteLeftovers,
  siteConfig,
  startSite,
  stopSite,
  uniqueSite,
} from './lib/site.js';
import { ms, summarize, table, wallMs, type Summary } from './lib/stats.js';
import { type BenchArgs, runMain, startWorld, type TrainWorld } from './lib/world.js';

const TARGET_MS = 150;
/** Issue 13 target 7: what the train adds beyond the same container spec through dockerode. */
const ENGINE_TARGET_MS = 20;
const PHASES = [
  ['hand-out', "researcher POST sent → the site's long poll returns the run"],
  [
    'before create',
    'workspace written, POST /start sent, image inspected (no pull: digest-pinned and present), run disk ready',
  ],
  ['create', 'docker create (POST /start in flight)'],
  ['create → start', "the container's id saved and POST /start answered, whichever ends later"],
  ['start', 'docker start'],
  ['wait', 'container runs until docker reports the exit'],
  [
    'after exit',
    'inspect, output scanned and PUT of result.json, while the log drains and its last chunk is sent (the finish waits for both)',
  ],
  ['finish', 'POST /finish'],
  ['researcher wake-up', "finish answered → the SDK's waitForTask returns"],
] as const;
/** Single steps inside the phases (they may overlap one another): summed per run. */
const STEPS = [
  ['api.start', 'POST /start'],
  ['docker.inspect', 'inspect container (by name, after create, after exit)'],
  ['docker.inspectImage', 'inspect image'],
  ['docker.pull', 'docker pull'],
  ['workspace.create', 'workspace folder + config + first state save'],
  ['workspace.update', 'state.json saves (temp file, fsync, rename)'],
  ['workspace.prepareDisk', "the run's disk (loop-mounted ext4) ready and mounted"],
  ['docker.remove', 'docker rm (after the finish: holds the slot, not the researcher)'],
  ['api.log', 'POST /log'],
  ['api.uploadFile', 'PUT of result files'],
  ['workspace.remove', 'disk unmounted, workspace deleted (after finish: holds the slot, not the researcher)'],
] as const;
type Phase = (typeof PHASES)[number][0];

interface Series {
  mode: string;
  raw: number[];
  api: number[];
  /** Docker's steps of each engine API run: the floor of the train's own Docker steps. */
  apiSteps: EngineSteps[];
  train: TrainSample[];
  paired: number[];
  /** The same train with the baseline commit's site client (`--baseline`), interleaved; else empty. */
  baseline: TrainSample[];
}

interface TrainSample {
  totalMs: number;
  phases: Record<Phase, number>;
  containerMs: number | null;
  /** Summed time in each single step of {@link STEPS}, and how many calls. */
  steps: Record<string, { ms: number; calls: number }>;
}

async function main(args: BenchArgs): Promise<void> {
  const samples = args.number('samples', 40);
  const warmup = args.number('warmup', 3);
  const modes = args.string('modes', 'none,gateway').split(',') as ('none' | 'gateway')[];
  const baselineRef = args.string('baseline', '');
  await removeSiteLeftovers();
  const image = await workloadImage();
  const sites = Object.fromEntries(modes.map((m) => [m, uniqueSite(`overhead-${m}`)]));
  const baselineSites = Object.fromEntries(modes.map((m) => [m, uniqueSite(`overhead-base-${m}`)]));
  const protocolSite = uniqueSite('overhead-protocol');
  // The baseline's site client (and what it needs) built from that commit; same registry process.
  const build = baselineRef ? buildBaseline(baselineRef, ['shared', 'master', 'client', 'sdk']) : null;
  const base = build ? loadBaselineClient(build) : null;
  const world = await startWorld([
    ...Object.values(sites),
    ...(base ? Object.values(baselineSites) : []),
    protocolSite,
  ]);
  const timeline = new ClientTimeline().install();
  const baseTimeline = base ? new ClientTimeline(base.classes).install() : null;
  const results: Series[] = [];
  let alone: ProtocolAlone;
  try {
    for (const mode of modes) {
      console.log(`\n== network mode ${mode}: ${warmup} warm-up + ${samples} samples of each, alternating`);
      const config = siteConfig(world.registry.url, world.siteKeys.get(sites[mode]!)!, { network: { mode } });
      const client = await startSite(config);
      const baseSite = base
        ? await base.startSite(world.registry.url, world.siteKeys.get(baselineSites[mode]!)!, { network: { mode } })
        : null;
      const rawNetwork =
        mode === 'gateway' ? await createInternalNetwork('overhead') : { name: 'none', remove: async () => undefined };
      const result: Series = { mode, raw: [], api: [], apiSteps: [], train: [], paired: [], baseline: [] };
      const engine = new DockerEngine(config.dockerSocket);
      const imageId = (await engine.inspectImage(image))!.id;
      try {
        for (let i = 0; i < warmup + samples; i++) {
          // Rotate which goes first, so none always follows another's leftovers.
          let raw = 0;
          let api = 0;
          let apiSteps: EngineSteps | null = null;
          let train: TrainSample | null = null;
          let baseTrain: TrainSample | null = null;
          const steps = [
            async () => (raw = await rawDockerRun(image, config, rawNetwork.name)),
            async () => (api = await engineRun(engine, imageId, config, rawNetwork.name, {}, (s) => (apiSteps = s))),
            async () => (train = await trainTask(world, timeline, image, client.site)),
            ...(baseSite && baseTimeline
              ? [async () => (baseTrain = await trainTask(world, baseTimeline, image, baseSite.site))]
              : []),
          ];
          for (let k = 0; k < steps.length; k++) await steps[(i + k) % steps.length]!();
          if (i < warmup) continue;
          const t = train as unknown as TrainSample;
          result.raw.push(raw);
          result.api.push(api);
          result.apiSteps.push(apiSteps!);
          result.train.push(t);
          result.paired.push(t.totalMs - raw);
          if (baseTrain) result.baseline.push(baseTrain);
          if ((i - warmup + 1) % 10 === 0)
            console.log(
              `  ${i - warmup + 1}/${samples}: raw ${ms(raw)} ms, engine API ${ms(api)} ms, train ${ms(t.totalMs)} ms${baseTrain ? `, baseline train ${ms((baseTrain as TrainSample).totalMs)} ms` : ''}`,
            );
        }
      } finally {
        await stopSite(client, config);
        await baseSite?.stop();
        await rawNetwork.remove();
      }
      results.push(result);
    }
    console.log("\n== the registry's requests of a run alone, same registry process, no client work around them");
    alone = await measureProtocolAlone(
      world.registry.url,
      world.siteKeys.get(protocolSite)!,
      protocolSite,
      world.researcher,
    );
  } finally {
    timeline.uninstall();
    baseTimeline?.uninstall();
    await world.close();
    if (build) removeBuild(build);
  }
  console.log('\n== floors: a bare HTTP round trip, a durable write, a loop mount');
  const floors = await measureFloors();
  report(results, samples, warmup, modes, floors, alone, build?.label ?? null, baselineRef);
}

interface BaselineClient {
  classes: ClientClasses;
  startSite(
    registryUrl: string,
    apiKey: string,
    overrides: Record<string, unknown>,
  ): Promise<{ site: string; stop(): Promise<void> }>;
}

/**
 * The baseline build's site client, loaded from its compiled files: its own classes (timed by a
 * timeline of their own) and its own config compiler, fed the same raw config as this checkout's.
 */
function loadBaselineClient(build: Build): BaselineClient {
  const load = (file: string) => require(path.join(build.root, 'dist', file)) as Record<string, any>;
  const { SiteClient } = load('client/site-client.js');
  const modules = {
    compileClientConfig: load('client/config.js').compileClientConfig,
    loadRawConfig: load('shared/config-loader.js').loadRawConfig,
    clientConfigSchema: load('shared/config-schemas.js').clientConfigSchema,
  } as ConfigModules;
  return {
    classes: {
      DockerEngine: load('client/container-engine.js').DockerEngine,
      SiteRegistryApi: load('client/registry-api.js').SiteRegistryApi,
      RunWorkspace: load('client/run-workspace.js').RunWorkspace,
      DiskPool: load('client/disk-pool.js').DiskPool,
    },
    async startSite(registryUrl, apiKey, overrides) {
      const config = siteConfig(registryUrl, apiKey, overrides, modules);
      const workDir = config.workDir;
      const client = new SiteClient({ config, logger: silentLogger() });
      await client.start();
      return {
        site: client.site as string,
        async stop() {
          await client.close();
          await removeSiteLeftovers(client.site);
          fs.rmSync(workDir, { recursive: true, force: true });
        },
      };
    },
  };
}

/**
 * `docker run --rm` through /usr/bin/docker with what the client gives a container (see
 * client/container-engine.ts create()): same flags, limits, user, mounts and environment.
 * Preparing the folders is not timed: the client's workspace writes are (in "start call").
 */
async function rawDockerRun(image: string, config: ClientConfig, network: string): Promise<number> {
  const { dir, configFile, out, progress, env } = runFolders(config);
  const { limits } = config;
  const args = [
    'run',
    '--rm',
    '--label',
    `${BENCH_LABEL}=overhead`,
    '--cap-drop',
    'ALL',
    '--security-opt',
    'no-new-privileges',
    '--read-only',
    '--tmpfs',
    `/tmp:rw,noexec,nosuid,size=${limits.tmpfsBytes}`,
    '--memory',
    String(limits.memoryBytes),
    '--memory-swap',
    String(limits.memoryBytes),
    '--pids-limit',
    String(limits.pids),
    '--cpus',
    String(limits.nanoCpus / 1e9),
    '--ipc',
    'private',
    '--user',
    config.containerUser,
    '--network',
    network,
    '--log-driver',
    'json-file',
    '--log-opt',
    'max-size=10m',
    '--log-opt',
    'max-file=1',
    '-v',
    `${configFile}:${CONTAINER_PATHS.configFile}:ro`,
    '-v',
    `${out}:${CONTAINER_PATHS.outputDir}:rw`,
    '-v',
    `${progress}:${path.posix.dirname(CONTAINER_PATHS.progressFile)}:rw`,
    ...Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]),
    image,
  ];
  const started = wallMs();
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn('/usr/bin/docker', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (c) => (c === 0 ? resolve(0) : reject(new Error(`docker run exited with ${c}: ${stderr}`))));
  });
  const elapsed = wallMs() - started;
  const wrote = fs.existsSync(path.join(out, 'result.json'));
  fs.rmSync(dir, { recursive: true, force: true });
  if (code !== 0 || !wrote) throw new Error('the raw run did not write its result');
  return elapsed;
}

/** One task through the whole train; the phases come from the client's calls in the window. */
async function trainTask(
  world: TrainWorld,
  timeline: ClientTimeline,
  image: string,
  site: string,
): Promise<TrainSample> {
  const posted = wallMs();
  const task = await world.researcher.createTask({ image, config: {}, sites: [site] });
  const final = await world.researcher.waitForTask(task.id, { timeoutMs: 60_000 });
  const done = wallMs();
  const run = final.runs[0]!;
  if (final.status !== 'completed') throw new Error(`task ${task.id} ended ${final.status}: ${JSON.stringify(run)}`);
  const spans = timeline.spans.filter((s) => s.end >= posted && s.start <= done);
  const one = (what: string, runId: number | null = null): Span => {
    const hit = spans.filter((s) => s.what === what && (runId === null || s.runId === runId));
    if (hit.length === 0) throw new Error(`no ${what} for run ${run.id}`);
    return hit[0]!;
  };
  const claim = one('api.claimNext', run.id);
  const create = one('docker.create', run.id);
  const dockerStart = one('docker.start', run.id);
  const wait = one('docker.wait', run.id);
  const finish = one('api.finish', run.id);
  // docker rm and workspace.remove end after the researcher is told: wait for them so the next
  // sample starts clean (and count them as steps: they hold the slot).
  const removedContainer = await timeline.next('docker.remove', run.id);
  const removed = await timeline.next('workspace.remove', run.id);
  const marks = [
    posted,
    claim.end,
    create.start,
    create.end,
    dockerStart.start,
    dockerStart.end,
    wait.end,
    finish.start,
    finish.end,
    done,
  ];
  const phases = {} as Record<Phase, number>;
  PHASES.forEach(([name], i) => (phases[name] = marks[i + 1]! - marks[i]!));
  const steps: TrainSample['steps'] = {};
  for (const [what] of STEPS) {
    const mine = [...spans.filter((s) => s !== removedContainer), removedContainer, removed].filter(
      (s) => s.what === what && (s.runId === run.id || (s.runId === null && what.startsWith('docker.'))),
    );
    steps[what] = { ms: mine.reduce((t, s) => t + s.end - s.start, 0), calls: mine.length };
  }
  return { totalMs: done - posted, phases, containerMs: run.durationMs ?? null, steps };
}

/** The train's phases and steps with this checkout's site client against the baseline's, same run. */
function baselineTable(r: Series, label: string): string {
  const med = (xs: number[]) => summarize(xs).median;
  const rows: (string | number)[][] = [];
  for (const [name] of PHASES) {
    const b = med(r.baseline.map((t) => t.phases[name]));
    const c = med(r.train.map((t) => t.phases[name]));
    rows.push([name, ms(b), ms(c), ms(c - b)]);
  }
  const b = med(r.baseline.map((t) => t.totalMs));
  const c = med(r.train.map((t) => t.totalMs));
  rows.push(['**total**', ms(b), ms(c), ms(c - b)]);
  for (const [what] of STEPS) {
    const bs = med(r.baseline.map((t) => t.steps[what]?.ms ?? 0));
    const cs = med(r.train.map((t) => t.steps[what]?.ms ?? 0));
    rows.push([
      `${what} (×${med(r.baseline.map((t) => t.steps[what]?.calls ?? 0))} → ×${med(r.train.map((t) => t.steps[what]?.calls ?? 0))})`,
      ms(bs),
      ms(cs),
      ms(cs - bs),
    ]);
  }
  return `The same phases with the site client of ${label} (its own site, same registry process, interleaved with this checkout's runs; network mode "${r.mode}", medians in ms; a phase's meaning follows this checkout's code):\n\n${table(['phase or step', label, 'this checkout', 'change'], rows)}`;
}

/**
 * Docker's four steps in the train against the same steps of the engine API runs of the same
 * run: what of the gap is Docker's (e.g. a start that takes longer with the log followed), and
 * what is left for the train's own work (registry, workspace, disk).
 */
function dockerStepsTable(r: Series): string {
  const med = (xs: number[]) => summarize(xs).median;
  const trainSteps = {
    create: med(r.train.map((t) => t.phases.create)),
    start: med(r.train.map((t) => t.phases.start)),
    wait: med(r.train.map((t) => t.phases.wait)),
    remove: med(r.train.map((t) => t.steps['docker.remove']?.ms ?? 0)),
  };
  const rows: (string | number)[][] = [];
  let trainDocker = 0;
  let apiDocker = 0;
  for (const step of ['create', 'start', 'wait', 'remove'] as const) {
    const api = med(r.apiSteps.map((s) => s[step]));
    // The train removes the container after the finish: not on the researcher's path.
    const onPath = step !== 'remove';
    if (onPath) trainDocker += trainSteps[step];
    apiDocker += api;
    rows.push([
      onPath ? `docker ${step}` : `docker ${step} (the train's: after the finish, off the path)`,
      ms(trainSteps[step]),
      ms(api),
      ms(trainSteps[step] - api),
    ]);
  }
  rows.push(['**sum of the medians on the path**', ms(trainDocker), ms(apiDocker), ms(trainDocker - apiDocker)]);
  const total = med(r.train.map((t) => t.totalMs));
  const apiTotal = med(r.api);
  rows.push([
    "**the rest**: the train's own work on the path (total − Docker's steps)",
    ms(total - trainDocker),
    ms(apiTotal - apiDocker),
    '',
  ]);
  return `Docker's steps in the train against the same steps of the engine API runs (network mode "${r.mode}", medians in ms; the engine API's remove is on its path, the train's comes after the finish):\n\n${table(['step', 'train', 'engine API', 'train − engine API'], rows)}`;
}

const ROUND_TRIP = "the registry's request alone; a bare HTTP round trip";

/** The train's single steps next to the floors measured in the same run. */
function floorsTable(r: Series, floors: Floors, alone: ProtocolAlone): string {
  const step = (what: string) => {
    const per = r.train.map((t) => (t.steps[what]?.calls ? t.steps[what].ms / t.steps[what].calls : NaN));
    return summarize(per.filter(Number.isFinite)).median;
  };
  const phase = (name: Phase) => summarize(r.train.map((t) => t.phases[name])).median;
  const http = (s: Summary) => `${ms(s.median)} alone; ${ms(floors.httpRoundTrip.median)} bare`;
  const rows: (string | number)[][] = [
    ['hand-out (researcher POST → long poll answered)', ms(phase('hand-out')), http(alone.handOut), ROUND_TRIP],
    ['POST /start', ms(step('api.start')), http(alone.start), ROUND_TRIP],
    ['POST /log', ms(step('api.log')), http(alone.log), ROUND_TRIP],
    ['PUT of result.json', ms(step('api.uploadFile')), http(alone.upload), ROUND_TRIP],
    ['POST /finish', ms(phase('finish')), http(alone.finish), ROUND_TRIP],
    ['researcher wake-up', ms(phase('researcher wake-up')), http(alone.wakeUp), ROUND_TRIP],
    ['state save (per call)', ms(step('workspace.update')), ms(floors.durableWrite.median), 'write + fsync + rename'],
    [
      'workspace.create (pooled disk renamed in, config, first save)',
      ms(step('workspace.create')),
      ms(floors.durableWrite.median),
      'write + fsync + rename',
    ],
    [
      'workspace.remove (unmount, delete; after the finish)',
      ms(step('workspace.remove')),
      ms(floors.unmount.median),
      'umount alone',
    ],
    ['(made ahead by the pool, off the path)', '', ms(floors.loopMount.median), 'loop mount alone'],
  ];
  return `The train's steps against floors measured in the same run (network mode "${r.mode}", medians in ms; floors: the same request to the same registry process alone, one after the other from this process with no container, disk or state save around it, ${alone.start.n} runs; a POST with a small JSON body from this process to a bare node:http server in another process, undici keep-alive as the client uses, ${floors.httpRoundTrip.n} samples; a 0.6 KB file written, fsync'd and renamed next to the work dir, ${floors.durableWrite.n} samples; a loop mount and an umount of a formatted image through the client's command helper, ${floors.loopMount.n} samples):\n\n${table(['step', 'train', 'floor', 'floor is'], rows)}`;
}

function report(
  results: Series[],
  samples: number,
  warmup: number,
  modes: string[],
  floors: Floors,
  alone: ProtocolAlone,
  baselineLabel: string | null,
  baselineRef: string,
): void {
  const row = (label: string, s: Summary) => [label, s.n, ms(s.median), ms(s.p95), ms(s.mean), ms(s.min), ms(s.max)];
  const totals: (string | number)[][] = [];
  const overhead: (string | number)[][] = [];
  const verdicts: string[] = [];
  const apiRows: (string | number)[][] = [];
  for (const r of results) {
    const raw = summarize(r.raw);
    const train = summarize(r.train.map((t) => t.totalMs));
    const paired = summarize(r.paired);
    const api = summarize(r.api);
    const net = r.mode === 'none' ? '--network none' : 'internal network';
    totals.push(
      row(`raw docker run, ${net}`, raw),
      row(`engine API create/start/wait/rm, ${net}`, api),
      row(`train, network mode "${r.mode}"`, train),
    );
    const base = r.baseline.length > 0 ? summarize(r.baseline.map((t) => t.totalMs)) : null;
    if (base) {
      totals.push(row(`train (${baselineLabel}), network mode "${r.mode}"`, base));
      apiRows.push([
        `${r.mode} (${baselineLabel})`,
        ms(base.median - api.median),
        ms(base.p95 - api.p95),
        (base.median / api.median).toFixed(2),
        base.median - api.median < ENGINE_TARGET_MS ? 'met' : 'not met',
      ]);
    }
    apiRows.push([
      r.mode,
      ms(train.median - api.median),
      ms(train.p95 - api.p95),
      (train.median / api.median).toFixed(2),
      train.median - api.median < ENGINE_TARGET_MS ? 'met' : 'not met',
    ]);
    const added = train.median - raw.median;
    overhead.push([
      r.mode,
      ms(added),
      ms(train.p95 - raw.p95),
      ms(paired.median),
      (train.median / raw.median).toFixed(2),
      (train.p95 / raw.p95).toFixed(2),
      added < TARGET_MS ? 'met' : 'not met',
    ]);
    verdicts.push(
      `${r.mode}: ${added >= 0 ? '+' : ''}${ms(added)} ms at the median (${added < TARGET_MS ? 'met' : 'NOT met'})`,
    );
  }
  const phaseTables = results.map((r) => {
    const rows = PHASES.map(([name, what]) => {
      const s = summarize(r.train.map((t) => t.phases[name]));
      return [name, what, ms(s.median), ms(s.p95), ms(s.mean)];
    });
    const total = summarize(r.train.map((t) => t.totalMs));
    const container = summarize(r.train.map((t) => t.containerMs ?? NaN).filter(Number.isFinite));
    rows.push(['**total**', 'POST sent → waitForTask returned', ms(total.median), ms(total.p95), ms(total.mean)]);
    rows.push(['', '**single steps** (summed per run; inside the phases above, may overlap)', '', '', '']);
    for (const [what, label] of STEPS) {
      const st = summarize(r.train.map((t) => t.steps[what]?.ms ?? 0));
      const calls = summarize(r.train.map((t) => t.steps[what]?.calls ?? 0));
      rows.push([`${what} (×${calls.median})`, label, ms(st.median), ms(st.p95), ms(st.mean)]);
    }
    const phasesTable = `Train phases, network mode "${r.mode}" (ms; the phases add up to the total sample by sample; Docker's own StartedAt→FinishedAt of the container: median ${ms(container.median)} ms):\n\n${table(['phase', 'what', 'median', 'p95', 'mean'], rows)}`;
    const against = r.baseline.length > 0 ? `\n\n${baselineTable(r, baselineLabel ?? 'baseline')}` : '';
    return `${phasesTable}${against}\n\n${dockerStepsTable(r)}\n\n${floorsTable(r, floors, alone)}`;
  });
  const body = `
Target: the train adds < ${TARGET_MS} ms per task at the median. **${verdicts.join('; ')}.**

Same trivial image (FROM the base image: node reads its config, writes one small result.json,
exits) run ${samples} times each way after ${warmup} warm-up runs, the three ways in rotating order. Raw:
\`/usr/bin/docker run --rm\` with the client's flags (\`--cap-drop ALL --security-opt
no-new-privileges --read-only --tmpfs /tmp --memory/--memory-swap --pids-limit --cpus --ipc private
--user 65534:65534\`, json-file log options), the same three mounts (config ro, output and progress
rw), the same environment, and \`--network none\` or an \`--internal\` network made like the client's
gateway network. Engine API: the same container spec (the client's own DockerEngine.create)
through dockerode, create → start → wait → remove, no pull: Docker's floor without the CLI's
process start. Train: a registry process (\`node master\`), the site client in the benchmark's
process with its defaults (pullPolicy always, long poll 30 s) and the network mode named, the SDK's
createTask then waitForTask (long poll).

${table(['series (ms)', 'n', 'median', 'p95', 'mean', 'min', 'max'], totals)}

Train against raw \`docker run\` (the target's comparison):

${table(['network mode', 'added at median (ms)', 'added at p95', 'median of paired differences', 'ratio at median', 'ratio at p95', 'target'], overhead)}

Train against the Engine API floor (the same container spec through dockerode, no CLI process,
no pull, no registry): what the train itself costs beyond Docker's work.

${table(['network mode', 'added at median (ms)', 'added at p95', 'ratio at median', `target (< ${ENGINE_TARGET_MS} ms)`], apiRows)}

${phaseTables.join('\n\n')}
`;
  console.log(body);
  writeSection({
    id: 'overhead',
    title: '1. Overhead per task',
    command: `npm run bench:overhead -- --samples ${samples} --modes ${modes.join(',')}${baselineRef ? ` --baseline ${baselineRef}` : ''}`,
    body,
  });
}

runMain(
  {
    usage:
      'Usage: node dist/bench/overhead.js [--samples N] [--warmup N] [--modes none,gateway] [--baseline GIT_REF]\n  Figure 1: what the train adds to one trivial task; rewrites its section of BENCHMARKS.md.\n  --baseline: also runs the site client of that commit, interleaved, against the same registry.',
    options: { samples: 'value', warmup: 'value', modes: 'value', baseline: 'value' },
  },
  main,
);
