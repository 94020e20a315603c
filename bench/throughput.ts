/**
 * Figure 4: runs completed per minute by one site with concurrency 1, 2 and 4, for a container
 * that sleeps 100 ms (then writes a tiny result). The queue is filled up front, so the site is
 * never idle waiting for work.
 */
import { DockerEngine } from '../client/container-engine.js';
import { engineRun } from './lib/engine-run.js';
import { writeSection } from './lib/report.js';
import { workloadImage } from './lib/images.js';
import { createInternalNetwork, removeSiteLeftovers, siteConfig, startSite, stopSite, uniqueSite } from './lib/site.js';
import { ms, summarize, table, wallMs } from './lib/stats.js';
import { type BenchArgs, runMain, startWorld } from './lib/world.js';

async function main(args: BenchArgs): Promise<void> {
  const tasks = args.number('tasks', 40);
  const levels = args.string('concurrency', '1,2,4').split(',').map(Number);
  const mode = args.string('mode', 'gateway') as 'gateway' | 'none';
  await removeSiteLeftovers();
  const image = await workloadImage();
  const sites = levels.map((c) => uniqueSite(`throughput-c${c}`));
  const world = await startWorld(sites);
  const rows: (string | number)[][] = [];
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
        const started = wallMs();
        const ids: number[] = [];
        for (let t = 0; t < tasks; t++)
          ids.push((await world.researcher.createTask({ image, config: { sleepMs: 100 }, sites: [client.site] })).id);
        const finals = [];
        for (const id of ids) finals.push(await world.researcher.waitForTask(id, { timeoutMs: 300_000 }));
        const elapsed = wallMs() - started;
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
      'Usage: node dist/bench/throughput.js [--tasks N] [--concurrency 1,2,4] [--mode gateway|none]\n  Figure 4: runs completed per minute by one site at several concurrency levels.',
    options: { tasks: 'value', concurrency: 'value', mode: 'value' },
  },
  main,
);
