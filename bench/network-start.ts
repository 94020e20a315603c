/**
 * Figure 6: what the gateway network costs a container start. The same hardened container spec
 * (the client's own DockerEngine.create) is created and started with network "none", with its own
 * endpoint on an internal network like the gateway network (the way every run joined it before
 * network slots), and in a prepared network slot (`container:<holder>`, client/network-slots.ts),
 * interleaved round by round so that all three see the same machine load.
 */
import { Readable } from 'node:stream';
import Docker from 'dockerode';
import { DockerEngine, type ContainerSpec } from '../client/container-engine.js';
import { NetworkSlotPool } from '../client/network-slots.js';
import { CONTAINER_LABELS } from '../shared/container-contract.js';
import { silentLogger } from '../shared/logger.js';
import { buildAndPushImage, requireInfrastructure } from '../test/helpers/docker.js';
import { writeSection } from './lib/report.js';
import { BENCH_LABEL, removeSiteLeftovers, siteConfig, startSite, stopSite, uniqueSite } from './lib/site.js';
import { ms, percentile, table } from './lib/stats.js';
import { type BenchArgs, runMain, startWorld } from './lib/world.js';

const TARGET_MS = 30;
const MODES = ['none', 'internal network', 'network slot'] as const;
type Mode = (typeof MODES)[number];

interface Sample {
  create: number;
  start: number;
  firstOutput: number;
  remove: number;
}

async function main(args: BenchArgs): Promise<void> {
  const samples = args.number('samples', 60);
  const warmup = args.number('warmup', 3);
  const siteRuns = args.number('site-runs', 20);
  await requireInfrastructure();
  await removeSiteLeftovers();
  const image = await buildAndPushImage(
    'pht-bench/netstart:1',
    { 'main.js': "process.stdout.write('ready\\n');\n" },
    { cmd: ['/app/main.js'], labels: { [BENCH_LABEL]: 'netstart' } },
  );
  const engine = new DockerEngine('/var/run/docker.sock');
  const docker = engine.docker;
  const site = uniqueSite('netstart');
  const networkName = `pht-gw-${site}`;
  await engine.createInternalNetwork({
    name: networkName,
    bridgeInterface: `phtb${process.pid.toString(16).slice(-8)}`,
    subnet: null,
    labels: { [BENCH_LABEL]: 'netstart', [CONTAINER_LABELS.site]: site },
  });
  const info = await engine.inspectNetwork(networkName);
  if (!info?.gatewayIp) throw new Error(`network ${networkName} has no gateway address`);
  const pool = await NetworkSlotPool.open({
    engine,
    site,
    network: { name: networkName, gatewayIp: info.gatewayIp },
    size: 1,
    logger: silentLogger(),
  });
  if (!pool) throw new Error('network slots are not supported on this machine');
  const results = new Map<Mode, Sample[]>(MODES.map((m) => [m, []]));
  const started = Date.now();
  try {
    for (let round = 0; round < warmup + samples; round++) {
      // Rotate the order so that no mode always runs right after another.
      for (let k = 0; k < MODES.length; k++) {
        const mode = MODES[(round + k) % MODES.length]!;
        const sample = await once(docker, engine, pool, image, mode, networkName, info.gatewayIp, round);
        if (round >= warmup) results.get(mode)!.push(sample);
      }
      if ((round + 1) % 10 === 0) console.log(`round ${round + 1}/${warmup + samples}`);
    }
  } finally {
    await pool.close();
    await removeSiteLeftovers(site);
    await engine.removeNetwork(networkName);
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(0);
  const sites = siteRuns > 0 ? await siteComparison(image, siteRuns) : null;
  const stat = (xs: number[]) => {
    const sorted = [...xs].sort((a, b) => a - b);
    return { median: percentile(sorted, 0.5), p90: percentile(sorted, 0.9) };
  };
  const rows: (string | number)[][] = [];
  const medians = new Map<Mode, number>();
  for (const mode of MODES) {
    const list = results.get(mode)!;
    const cs = stat(list.map((s) => s.create + s.start));
    medians.set(mode, cs.median);
    const c = stat(list.map((s) => s.create));
    const st = stat(list.map((s) => s.start));
    const fo = stat(list.map((s) => s.create + s.firstOutput));
    const rm = stat(list.map((s) => s.remove));
    rows.push([
      mode,
      list.length,
      `${ms(c.median)} / ${ms(c.p90)}`,
      `${ms(st.median)} / ${ms(st.p90)}`,
      `**${ms(cs.median)}** / ${ms(cs.p90)}`,
      `${ms(fo.median)} / ${ms(fo.p90)}`,
      `${ms(rm.median)} / ${ms(rm.p90)}`,
    ]);
  }
  const none = medians.get('none')!;
  const diff = (m: Mode) => medians.get(m)! - none;
  const body = [
    `Target: gateway mode's container start within ${TARGET_MS} ms of network "none" (issue 13, target 6).`,
    '',
    `${samples} samples per way after ${warmup} warm-up rounds, interleaved, ${seconds} s in all. Each sample: the`,
    "client's own hardened create (DockerEngine.create: cap-drop ALL, read-only, no-new-privileges, limits)",
    `of a node image that prints one line, attach, start, wait, remove. Milliseconds, median / p90.`,
    '',
    table(
      ['network', 'n', 'create', 'start', 'create + start', 'create → first output', 'remove (not on the run path)'],
      rows,
    ),
    '',
    `Create + start against "none" (medians): internal network ${diff('internal network') >= 0 ? '+' : ''}${ms(diff('internal network'))} ms,`,
    `network slot ${diff('network slot') >= 0 ? '+' : ''}${ms(diff('network slot'))} ms: target ${diff('network slot') <= TARGET_MS ? 'met' : 'missed'}.`,
    '',
    '- "internal network": the container gets its own endpoint on an internal network made like the',
    "  site's gateway network (ICC off, no masquerade), as every gateway-mode run did before network",
    '  slots: dockerd creates a veth pair, allocates an address, programs iptables and moves the veth',
    '  into the new namespace at start.',
    '- "network slot": the container joins the namespace of a holder started ahead of time on that',
    '  network (client/network-slots.ts); the start does no network work, like "none". The holder is',
    '  checked (one inspect) when a slot is taken; that check is inside "create" here as in the client.',
    '',
    ...(sites ?? []),
    'The site client\'s whole gateway-mode run against "none", phase by phase: `npm run bench:overhead -- --modes none,gateway`',
    '(section 1).',
  ].join('\n');
  console.log(body);
  writeSection({
    id: 'netstart',
    title: '6. Container start in gateway mode: network slots',
    command: `npm run bench:netstart -- --samples ${samples} --warmup ${warmup} --site-runs ${siteRuns}`,
    body,
  });
}

/**
 * The same comparison through two site clients (one in gateway mode, with its network slots, one
 * with network "none") on one registry, a trivial task to each in turn.
 */
async function siteComparison(image: string, runs: number): Promise<string[]> {
  const modes = ['gateway', 'none'] as const;
  const names = modes.map((m) => uniqueSite(`netstart-${m}`));
  const world = await startWorld(names);
  const walls = new Map<string, number[]>(modes.map((m) => [m, []]));
  const atSite = new Map<string, number[]>(modes.map((m) => [m, []]));
  const clients: { config: ReturnType<typeof siteConfig>; client: Awaited<ReturnType<typeof startSite>> }[] = [];
  try {
    for (const [i, mode] of modes.entries()) {
      const config = siteConfig(world.registry.url, world.siteKeys.get(names[i]!)!, { network: { mode } });
      clients.push({ config, client: await startSite(config) });
    }
    for (let round = 0; round < runs + 2; round++) {
      for (const [i, mode] of modes.entries()) {
        const t0 = performance.now();
        const task = await world.researcher.createTask({ image, config: {}, sites: [names[i]!] });
        const done = await world.researcher.waitForTask(task.id, { timeoutMs: 120_000 });
        const wall = performance.now() - t0;
        const run = done.runs[0]!;
        if (run.status !== 'completed') throw new Error(`${mode}: run ${run.id} ${run.status}: ${run.reason ?? ''}`);
        if (round < 2) continue; // warm-up: the first pull and start
        walls.get(mode)!.push(wall);
        atSite.get(mode)!.push(Date.parse(run.finishedAt!) - Date.parse(run.startedAt!));
      }
    }
  } finally {
    for (const { client, config } of clients) await stopSite(client, config);
    await world.close();
  }
  const med = (xs: number[]) =>
    percentile(
      [...xs].sort((a, b) => a - b),
      0.5,
    );
  const p90 = (xs: number[]) =>
    percentile(
      [...xs].sort((a, b) => a - b),
      0.9,
    );
  const rows = modes.map((m) => [
    m,
    walls.get(m)!.length,
    `${ms(med(walls.get(m)!))} / ${ms(p90(walls.get(m)!))}`,
    `${ms(med(atSite.get(m)!))} / ${ms(p90(atSite.get(m)!))}`,
  ]);
  const gap = med(atSite.get('gateway')!) - med(atSite.get('none')!);
  return [
    `Through the site client (${runs} trivial tasks per mode after 2 warm-up, alternating between a site in`,
    'gateway mode and one with network "none" on one registry). Milliseconds, median / p90:',
    '',
    table(
      ['site network', 'n', 'task POST → researcher wait returns', 'run at the site (registry start → finish)'],
      rows,
    ),
    '',
    `Run at the site, gateway against none (medians): ${gap >= 0 ? '+' : ''}${ms(gap)} ms.`,
    '',
  ];
}

async function once(
  docker: Docker,
  engine: DockerEngine,
  pool: NetworkSlotPool,
  image: string,
  mode: Mode,
  networkName: string,
  gatewayIp: string,
  round: number,
): Promise<Sample> {
  const runId = 1_000_000 + round;
  const t0 = performance.now();
  let networkMode = 'none';
  let dns: string[] = [];
  if (mode === 'internal network') {
    networkMode = networkName;
    dns = [gatewayIp];
  } else if (mode === 'network slot') {
    networkMode = await pool.acquire(runId);
  }
  const spec: ContainerSpec = {
    name: `pht-bench-netstart-${process.pid}-${round}-${mode.replace(/ /g, '-')}`,
    imageId: image,
    env: {},
    labels: { [BENCH_LABEL]: 'netstart' },
    user: '65534:65534',
    mounts: [],
    networkMode,
    dns,
    memoryBytes: 256 * 1024 * 1024,
    nanoCpus: 1_000_000_000,
    pids: 64,
    tmpfsBytes: 16 * 1024 * 1024,
  };
  const id = await engine.create(spec);
  const t1 = performance.now();
  const container = docker.getContainer(id);
  const stream = (await container.attach({ stream: true, stdout: true, stderr: true })) as unknown as Readable;
  const firstOutput = new Promise<number>((resolve, reject) => {
    stream.once('data', () => resolve(performance.now()));
    stream.once('error', reject);
    stream.once('end', () => reject(new Error(`${mode}: the container ended without output`)));
  });
  const t2 = performance.now();
  await engine.start(id);
  const t3 = performance.now();
  const t4 = await firstOutput;
  const code = await engine.wait(id);
  stream.destroy();
  if (code !== 0) throw new Error(`${mode}: the container exited with ${code}`);
  const t5 = performance.now();
  await engine.remove(id);
  const t6 = performance.now();
  if (mode === 'network slot') pool.release(runId);
  return { create: t1 - t0, start: t3 - t2, firstOutput: t4 - t2, remove: t6 - t5 };
}

runMain(
  {
    usage:
      'Usage: node dist/bench/network-start.js [--samples N] [--warmup N] [--site-runs N]\n  Figure 6: container create + start with network none, an internal network, and a network slot; then N runs through a gateway-mode and a "none" site client.',
    options: { samples: 'value', warmup: 'value', 'site-runs': 'value' },
  },
  main,
);
