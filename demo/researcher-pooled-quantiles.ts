/**
 * The researcher's side of the third analysis: two sealed tasks. First each hospital sends its
 * ages, sealed for the TTP, to the TTP's file service (the registry never sees them); then one run
 * at the TTP pools them and returns the median and quartiles, sealed for the researcher.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { PhtClient, ResearcherKeys } from '../sdk/index.js';

export interface PooledQuantiles {
  sendTaskId: number;
  poolTaskId: number;
  n: number;
  q1: number;
  median: number;
  q3: number;
}

export async function pooledQuantiles(
  pht: PhtClient,
  keys: ResearcherKeys,
  sites: string[],
  ttp: { name: string; site: string },
  options: { image: string; signal?: AbortSignal },
): Promise<PooledQuantiles> {
  const { image, signal } = options;
  const send = await keys.createSealedTask(pht, { image, config: { mode: 'send' }, sites, ttp: ttp.name }, { signal });
  const sent = await pht.waitForTask(send.id, { signal });
  if (sent.status !== 'completed')
    throw new Error(
      `task ${send.id} (sites → TTP) ended ${sent.status}: ${sent.runs.map((r) => `${r.site} ${r.status} ${r.reason ?? ''}`).join('; ')}`,
    );
  const pool = await keys.createSealedTask(
    pht,
    { image, config: { mode: 'pool', ttpInbox: { taskId: send.id } }, sites: [ttp.site] },
    { signal },
  );
  const pooled = await pht.waitForTask(pool.id, { signal });
  const run = pooled.runs[0]!;
  if (run.status !== 'completed')
    throw new Error(`task ${pool.id} at the TTP ended ${run.status}: ${run.reason ?? ''}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pht-quantiles-'));
  try {
    const files = await keys.openFiles(await pht.saveRunFiles(run.id, dir, { signal }));
    const result = JSON.parse(fs.readFileSync(files.find((f) => f.name === 'result.json')!.path, 'utf8')) as {
      n: number;
      q1: number;
      median: number;
      q3: number;
    };
    return {
      sendTaskId: send.id,
      poolTaskId: pool.id,
      n: result.n,
      q1: result.q1,
      median: result.median,
      q3: result.q3,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
