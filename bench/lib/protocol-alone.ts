import { Readable } from 'node:stream';
import { SiteRegistryApi } from '../../client/registry-api.js';
import type { PhtClient } from '../../sdk/index.js';
import { summarize, wallMs, type Summary } from './stats.js';

/** The registry's requests of one run, each timed alone (medians over the samples). */
export interface ProtocolAlone {
  /** Researcher POST /tasks → the site's waiting long poll answered. */
  handOut: Summary;
  start: Summary;
  log: Summary;
  upload: Summary;
  finish: Summary;
  /** POST /finish answered → the researcher's waitForTask resolved. */
  wakeUp: Summary;
}

/**
 * The registry's side of a run with nothing else around it: the same requests the site client
 * makes (long poll, start, log, result upload, finish) and the researcher's task wait, sent one
 * after the other from this process to the benchmark's registry process, with no container, disk
 * or state save in between. Set against the train's figures, it separates what the registry
 * costs from what the client's own work done meanwhile adds (the image lookup and the run's disk
 * run while POST /start is in flight, so their callbacks delay its answer in the client).
 */
export async function measureProtocolAlone(
  registryUrl: string,
  siteKey: string,
  site: string,
  researcher: PhtClient,
  samples = 60,
  warmup = 5,
): Promise<ProtocolAlone> {
  const api = new SiteRegistryApi(registryUrl, siteKey);
  const t = { handOut: [] as number[], start: [] as number[], log: [] as number[], upload: [] as number[] };
  const more = { finish: [] as number[], wakeUp: [] as number[] };
  const result = Buffer.from('{"answer":42}\n');
  try {
    for (let i = 0; i < warmup + samples; i++) {
      const keep = i >= warmup;
      // The poll waits at the registry first, as the client's does between runs.
      const claimed = api.claimNext(10);
      await new Promise((resolve) => setImmediate(resolve));
      let started = wallMs();
      const task = await researcher.createTask({ image: 'bench/protocol-alone:1', config: {}, sites: [site] });
      const run = await claimed;
      if (!run) throw new Error('the long poll ended without the run');
      if (keep) t.handOut.push(wallMs() - started);
      const waited = researcher.waitForTask(task.id, { timeoutMs: 60_000 });
      started = wallMs();
      await api.start(run.id);
      if (keep) t.start.push(wallMs() - started);
      started = wallMs();
      await api.log(run.id, 'one line of log\n');
      if (keep) t.log.push(wallMs() - started);
      started = wallMs();
      await api.uploadFile(run.id, 'result.json', Readable.from([result]), result.length);
      if (keep) t.upload.push(wallMs() - started);
      started = wallMs();
      await api.finish(run.id, { state: 'completed', exitCode: 0 });
      const finished = wallMs();
      if (keep) more.finish.push(finished - started);
      const final = await waited;
      if (keep) more.wakeUp.push(wallMs() - finished);
      if (final.status !== 'completed') throw new Error(`task ${task.id} ended ${final.status}`);
    }
  } finally {
    await api.close();
  }
  return {
    handOut: summarize(t.handOut),
    start: summarize(t.start),
    log: summarize(t.log),
    upload: summarize(t.upload),
    finish: summarize(more.finish),
    wakeUp: summarize(more.wakeUp),
  };
}
