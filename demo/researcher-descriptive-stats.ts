/**
 * A researcher's script: federated descriptive statistics of age and BMI over several hospitals.
 *
 * One task, one run per site. Each site's descriptive-stats container reads the site's patients
 * through SPARQL and sends back only aggregates (count, mean, sum of squared deviations, min,
 * max, category counts); this side pools them exactly (demo/federated.ts). Copy it as a template:
 * the SDK calls are all here.
 *
 * Standalone, against a running registry:
 *   PHT_URL=http://127.0.0.1:PORT PHT_TOKEN=… node dist/demo/researcher-descriptive-stats.js [--sites a,b] [--image REF]
 */
import { runCommandLine, stringOption } from '../shared/command-line.js';
import { PhtClient } from '../sdk/index.js';
import { poolDescriptiveStats, type DescriptiveStatsResult, type PooledDescriptiveStats } from './federated.js';
import { resultsFromEverySite } from './task-results.js';

export const DESCRIPTIVE_STATS_IMAGE = '127.0.0.1:5050/pht/descriptive-stats:1';

export interface DescriptiveStatsOptions {
  /** The algorithm image (default {@link DESCRIPTIVE_STATS_IMAGE}). */
  image?: string;
  /** Give up waiting for the sites after this long (the task keeps running at the registry). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface FederatedDescriptiveStats {
  taskId: number;
  /** Each site's summary as it reported it, and the pooled summary. */
  stats: PooledDescriptiveStats;
}

/** Runs descriptive-stats at every site in `sites` and pools the results. */
export async function federatedDescriptiveStats(
  pht: PhtClient,
  sites: readonly string[],
  options: DescriptiveStatsOptions = {},
): Promise<FederatedDescriptiveStats> {
  const { signal, timeoutMs = 10 * 60_000 } = options;
  const task = await pht.runTask(
    {
      image: options.image ?? DESCRIPTIVE_STATS_IMAGE,
      name: 'descriptive statistics of age and BMI',
      // Sites with fewer patients than this report nothing: small counts identify people.
      config: { minCount: 10 },
      sites: [...sites],
    },
    { timeoutMs, signal },
  );
  const results = await resultsFromEverySite<DescriptiveStatsResult>(pht, task, sites, signal);
  return { taskId: task.id, stats: poolDescriptiveStats(results) };
}

const USAGE = `Usage: node dist/demo/researcher-descriptive-stats.js [--sites A,B,...] [--image IMAGE]
  Runs the federated descriptive statistics over the sites (default: every enabled site); needs PHT_URL and PHT_TOKEN.`;

export function main(argv: string[]): Promise<number> {
  return runCommandLine(argv, { usage: USAGE, options: { sites: 'value', image: 'value' } }, (args) =>
    research({ sites: stringOption(args, 'sites'), image: stringOption(args, 'image') }),
  );
}

async function research(values: { sites: string | undefined; image: string | undefined }): Promise<number> {
  const pht = PhtClient.fromEnv();
  try {
    const sites = values.sites
      ? values.sites.split(',')
      : (await pht.listSites()).filter((s) => s.enabled).map((s) => s.name);
    const { taskId, stats } = await federatedDescriptiveStats(pht, sites, { image: values.image });
    process.stdout.write(JSON.stringify({ taskId, ...stats }, null, 2) + '\n');
    return 0;
  } finally {
    await pht.close();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
