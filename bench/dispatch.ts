/**
 * Figure 2: dispatch latency to an idle long-polling site.
 * (a) hand-out: from the researcher's POST to the moment a raw HTTP long poll (in this process)
 *     returns the run;
 * (b) from the POST to the container running (the real site client: pull check, create, start
 *     included), beside the same Docker steps done directly with dockerode.
 */
import type Docker from 'dockerode';
import { CONTAINER_LABELS } from '../shared/container-contract.js';
import { docker } from '../test/helpers/docker.js';
import { HandoutProbe } from './lib/handout.js';
import { workloadImage } from './lib/images.js';
import { ClientTimeline, type Span } from './lib/instrument.js';
import { writeSection } from './lib/report.js';
import {
  BENCH_LABEL,
  createInternalNetwork,
  removeSiteLeftovers,
  siteConfig,
  startSite,
  stopSite,
  uniqueSite,
} from './lib/site.js';
import { ms, summarize, table, wallMs, type Summary } from './lib/stats.js';
import { type BenchArgs, runMain, startWorld, type TrainWorld } from './lib/world.js';

const HANDOUT_TARGET_MS = 5;

async function main(args: BenchArgs): Promise<void> {
  const handoutSamples = args.number('handout-samples', 300);
  const containerSamples = args.number('container-samples', 20);
  const modes = args.string('modes', 'none,gateway').split(',') as ('none' | 'gateway')[];
  await removeSiteLeftovers();
  const image = await workloadImage();
  const pollerSite = uniqueSite('dispatch-poller');
  const clientSites = Object.fromEntries(modes.map((m) => [m, uniqueSite(`dispatch-${m}`)]));
  const world = await startWorld([pollerSite, ...Object.values(clientSites)]);
  try {
    console.log(`== (a) hand-out to a raw long poller, ${handoutSamples} samples`);
    const handout = await measureHandout(world, pollerSite, image, handoutSamples);
    console.log(`   hand-out median ${ms(handout.handout.median)} ms, p99 ${ms(handout.handout.p99)} ms`);
    const containers: ContainerFigures[] = [];
    for (const mode of modes) {
      console.log(`== (b) POST → container running, network mode ${mode}, ${containerSamples} samples each way`);
      containers.push(await measureContainerStart(world, clientSites[mode]!, mode, image, containerSamples));
    }
    report(handout, containers, handoutSamples, containerSamples, modes);
  } finally {
    await world.close();
  }
}

interface HandoutFigures {
  handout: Summary;
  post: Summary;
  before: number;
}

/** The site's long poll is parked at the registry before each POST (bench/lib/handout.ts). */
async function measureHandout(
  world: TrainWorld,
  site: string,
  image: string,
  samples: number,
): Promise<HandoutFigures> {
  const probe = new HandoutProbe(world, site, image);
  const handouts: number[] = [];
  const posts: number[] = [];
  let before = 0;
  try {
    for (let i = 0; i < samples + 5; i++) {
      const s = await probe.sample();
      if (i < 5) continue;
      handouts.push(s.handoutMs);
      posts.push(s.postMs);
      if (s.siteFirst) before++;
    }
  } finally {
    await probe.close();
  }
  return { handout: summarize(handouts), post: summarize(posts), before };
}

interface ContainerFigures {
  mode: string;
  train: Summary;
  trainParts: Record<string, Summary>;
  direct: Summary;
  directParts: Record<string, Summary>;
}

/** The real client, idle and long polling; its docker.start span ends when the container runs. */
async function measureContainerStart(
  world: TrainWorld,
  site: string,
  mode: 'none' | 'gateway',
  image: string,
  samples: number,
): Promise<ContainerFigures> {
  const config = siteConfig(world.registry.url, world.siteKeys.get(site)!, { network: { mode } });
  const timeline = new ClientTimeline().install();
  const client = await startSite(config);
  const network =
    mode === 'gateway' ? await createInternalNetwork('dispatch') : { name: 'none', remove: async () => undefined };
  const train: number[] = [];
  const trainParts: Record<string, number[]> = {
    'hand-out': [],
    'start call': [],
    'pull check + pull': [],
    create: [],
    start: [],
  };
  const direct: number[] = [];
  const directParts: Record<string, number[]> = { 'pull check + pull': [], create: [], start: [] };
  try {
    for (let i = 0; i < samples + 2; i++) {
      const posted = wallMs();
      const task = await world.researcher.createTask({ image, config: {}, sites: [client.site] });
      const final = await world.researcher.waitForTask(task.id, { timeoutMs: 60_000 });
      if (final.status !== 'completed') throw new Error(`task ${task.id} ended ${final.status}`);
      const runId = final.runs[0]!.id;
      const spans = timeline.spans.filter((s) => s.end >= posted);
      const find = (what: string, byRun = true) => spans.find((s) => s.what === what && (!byRun || s.runId === runId))!;
      const claim = find('api.claimNext');
      const start = find('api.start');
      const create = find('docker.create');
      // A client that finds a digest-pinned image present skips the pull: its image check ends the step then.
      const pull = (spans.find((s) => s.what === 'docker.pull') ??
        spans.findLast((s) => s.what === 'docker.inspectImage' && s.end <= create.start)) as Span | undefined;
      const dockerStart = find('docker.start');
      const steps = await directSteps(image, network.name);
      if (i < 2) continue;
      train.push(dockerStart.end - posted);
      trainParts['hand-out']!.push(claim.end - posted);
      trainParts['start call']!.push(start.end - claim.end);
      trainParts['pull check + pull']!.push((pull?.end ?? start.end) - start.end);
      trainParts.create!.push(create.end - (pull?.end ?? start.end));
      trainParts.start!.push(dockerStart.end - create.end);
      direct.push(steps.total);
      for (const k of Object.keys(directParts)) directParts[k]!.push(steps.parts[k]!);
    }
  } finally {
    timeline.uninstall();
    await stopSite(client, config);
    await network.remove();
  }
  const sum = (parts: Record<string, number[]>) =>
    Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, summarize(v)]));
  return {
    mode,
    train: summarize(train),
    trainParts: sum(trainParts),
    direct: summarize(direct),
    directParts: sum(directParts),
  };
}

/**
 * The client's Docker steps done straight with dockerode: inspect image, pull, inspect image,
 * create (the client's HostConfig, copied from client/container-engine.ts), start. The container
 * is then waited for and removed, untimed.
 */
async function directSteps(image: string, network: string): Promise<{ total: number; parts: Record<string, number> }> {
  const d = docker();
  const t0 = wallMs();
  await d.getImage(image).inspect();
  const stream = await d.pull(image);
  await new Promise<void>((resolve, reject) =>
    d.modem.followProgress(stream, (err: unknown) => (err ? reject(err) : resolve())),
  );
  const info = await d.getImage(image).inspect();
  const t1 = wallMs();
  const options: Docker.ContainerCreateOptions = {
    Image: info.Id,
    Env: ['SPARQL_ENDPOINT=http://127.0.0.1:9/sparql'],
    Labels: { [BENCH_LABEL]: 'dispatch', [CONTAINER_LABELS.runId]: '0' },
    User: '65534:65534',
    NetworkDisabled: network === 'none',
    HostConfig: {
      NetworkMode: network,
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
      ReadonlyRootfs: true,
      Tmpfs: { '/tmp': 'rw,noexec,nosuid,size=67108864' },
      Memory: 1024 * 1048576,
      MemorySwap: 1024 * 1048576,
      NanoCpus: 1e9,
      PidsLimit: 256,
      IpcMode: 'private',
      LogConfig: { Type: 'json-file', Config: { 'max-size': '10m', 'max-file': '1' } },
      // The workload writes to /pht/output: give it a tmpfs there instead of a host folder.
      Mounts: [
        { Type: 'tmpfs', Source: '', Target: '/pht/output', TmpfsOptions: { SizeBytes: 1048576, Mode: 0o1777 } },
      ],
    },
  };
  const container = await d.createContainer(options);
  const t2 = wallMs();
  await container.start();
  const t3 = wallMs();
  await container.wait();
  await container.remove({ force: true });
  return { total: t3 - t0, parts: { 'pull check + pull': t1 - t0, create: t2 - t1, start: t3 - t2 } };
}

function report(
  h: HandoutFigures,
  containers: ContainerFigures[],
  handoutSamples: number,
  containerSamples: number,
  modes: string[],
): void {
  const met = h.handout.median < HANDOUT_TARGET_MS;
  const row = (label: string, s: Summary) => [label, s.n, ms(s.median), ms(s.p95), ms(s.p99), ms(s.mean), ms(s.max)];
  const rowsB: (string | number)[][] = [];
  for (const c of containers) {
    rowsB.push(row(`**train, mode "${c.mode}": POST → container running**`, c.train));
    for (const [k, s] of Object.entries(c.trainParts)) rowsB.push(row(`  train: ${k}`, s));
    rowsB.push(
      row(
        `**dockerode directly, ${c.mode === 'none' ? 'network none' : 'internal network'}: pull check → running**`,
        c.direct,
      ),
    );
    for (const [k, s] of Object.entries(c.directParts)) rowsB.push(row(`  dockerode: ${k}`, s));
  }
  const body = `
Target: hand-out median < ${HANDOUT_TARGET_MS} ms. **${met ? 'Met' : 'Not met'}: median ${ms(h.handout.median)} ms, p99 ${ms(h.handout.p99)} ms.**

(a) A registry process (\`node master\`); in this process a raw HTTP long poller (undici, one
keep-alive connection, \`GET /api/v1/site/runs/next?wait=30\`) and the researcher's SDK. Before
each POST the benchmark waits until the registry's /healthz counts the poll as waiting; the clock
starts when createTask is called and stops when the poll's response headers arrive. Each run is
then started and finished like a site would. ${handoutSamples} samples after 5 warm-up ones; in
${h.before} of them the site had its run before the researcher had the POST's answer.

${table(['(a) ms', 'n', 'median', 'p95', 'p99', 'mean', 'max'], [row('POST sent → long poll returns the run', h.handout), row('POST round trip (for scale)', h.post)])}

(b) The site client (in this process, defaults: pullPolicy always) long polling; the clock stops
when its \`docker start\` call returns, i.e. the container runs. Beside it, the same steps straight
through dockerode (inspect image, pull, inspect image, create with the client's HostConfig, start),
run after each train sample. ${containerSamples} samples each after 2 warm-up ones.

${table(['(b) ms', 'n', 'median', 'p95', 'p99', 'mean', 'max'], rowsB)}
`;
  console.log(body);
  writeSection({
    id: 'dispatch',
    title: '2. Dispatch latency to an idle long-polling site',
    command: `npm run bench:dispatch -- --handout-samples ${handoutSamples} --container-samples ${containerSamples} --modes ${modes.join(',')}`,
    body,
  });
}

runMain(
  {
    usage:
      'Usage: node dist/bench/dispatch.js [--handout-samples N] [--container-samples N] [--modes none,gateway]\n  Figure 2: dispatch latency to an idle long-polling site; rewrites its section of BENCHMARKS.md.',
    options: { 'handout-samples': 'value', 'container-samples': 'value', modes: 'value' },
  },
  main,
);
