/**
 * Figure 3c (supports figure 3): what one run transition costs the registry's store as the task
 * it belongs to grows. Calls the SQLite store directly (no HTTP), so the numbers are the store's
 * own CPU time: claim, start and finish of every run of a task sent to N sites, and one read of
 * the whole task (what a researcher's long poll on /tasks/:id/wait does at every change).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openStore } from '../master/server.js';
import { writeSection } from './lib/report.js';
import { ms, summarize, table } from './lib/stats.js';
import { type BenchArgs, runMain } from './lib/world.js';

async function main(args: BenchArgs): Promise<void> {
  const sizes = args.string('sizes', '1,10,100,1000').split(',').map(Number);
  const rows: (string | number)[][] = [];
  for (const n of sizes) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pht-bench-store-'));
    const store = await openStore({ dataDir: dir });
    try {
      const sites = [];
      for (let i = 0; i < n; i++)
        sites.push((await store.createPrincipal('site', `bench-store-${i}`, 'site')).principal);
      const owner = (await store.createPrincipal('user', 'bench-store-researcher', 'researcher')).principal;
      // Warm the statements on a throw-away task first.
      const time = async (fn: () => Promise<unknown>) => {
        const t = performance.now();
        await fn();
        return (performance.now() - t) * 1000;
      };
      const claims: number[] = [];
      const starts: number[] = [];
      const finishes: number[] = [];
      const reads: number[] = [];
      const json: number[] = [];
      const empty: number[] = [];
      for (let round = 0; round < 2; round++) {
        const task = await store.createTask(owner, {
          name: null,
          image: '127.0.0.1:5050/pht-bench/workload:1',
          config: Buffer.from('{}'),
          configType: 'application/json',
          sites: null,
        });
        const runOf = new Map(task.runs.map((r) => [r.site, r.id]));
        for (const phase of ['claim', 'start', 'finish'] as const) {
          for (const site of sites) {
            const runId = runOf.get(site.name)!;
            const us = await time(() =>
              phase === 'claim'
                ? store.claimNextRun(site.id, 60_000)
                : phase === 'start'
                  ? store.startRun(site.id, runId)
                  : store.finishRun(site.id, runId, { state: 'completed', exitCode: 0 }),
            );
            if (round === 1) (phase === 'claim' ? claims : phase === 'start' ? starts : finishes).push(us);
          }
        }
        // A poll that finds nothing (every run of the task is final now): what plain polling costs.
        for (const site of sites.slice(0, 200)) {
          const us = await time(() => store.claimNextRun(site.id, 60_000));
          if (round === 1) empty.push(us);
        }
        for (let i = 0; i < 20; i++) {
          let view: unknown;
          const us = await time(async () => (view = await store.getTask(task.id)));
          const jsonUs = await time(async () => JSON.stringify(view));
          if (round === 1) {
            reads.push(us / 1000);
            json.push(jsonUs / 1000);
          }
        }
      }
      const c = summarize(claims).mean;
      const s = summarize(starts).mean;
      const f = summarize(finishes).mean;
      const r = summarize(reads).median + summarize(json).median;
      // Every claim, start and finish notifies the task; a waiting researcher re-reads it each time.
      const broadcastMs = (n * (c + s + f)) / 1000;
      const withWaiterMs = broadcastMs + 3 * n * r;
      rows.push([
        n,
        ms(summarize(empty).median),
        ms(c),
        ms(s),
        ms(f),
        ms(summarize(reads).median),
        ms(summarize(json).median),
        ms(broadcastMs),
        ms(withWaiterMs),
      ]);
      console.log(
        `N=${n}: claim ${ms(c)} µs, start ${ms(s)} µs, finish ${ms(f)} µs, task read ${ms(summarize(reads).median)} ms`,
      );
    } finally {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  const body = `
No target; this explains figure 3. The SQLite store (\`master/store/sqlite-store.ts\`) called
directly in one process (no HTTP, no logging), for one task sent to N sites: the median cost of a
poll that finds no queued run (\`claimNextRun\` on an empty queue), the mean cost of each
run's claim, start and finish (each in its own transaction, as the routes do), and the median cost
of reading the whole task and turning it into JSON (\`GET /tasks/:id\`, and what \`/tasks/:id/wait\`
and \`/tasks/:id/events\` do after every notification). The last two columns estimate the store's
CPU for all N runs of one task: transitions alone, and with one researcher waiting on the task if
every claim, start and finish wakes the wait (the upper bound; wake-ups that arrive while the wait
is busy are merged).

${table(['N sites', 'empty poll (µs)', 'claim (µs/run)', 'start (µs/run)', 'finish (µs/run)', 'read task (ms)', 'JSON of task (ms)', 'all N runs: transitions (ms)', '… + a waiting researcher (ms)'], rows)}
`;
  console.log(body);
  writeSection({
    id: 'store-costs',
    title: '3c. Store cost per run transition as a task grows',
    command: `npm run bench:store -- --sizes ${sizes.join(',')}`,
    body,
  });
}

runMain(
  {
    usage:
      'Usage: node dist/bench/store-costs.js [--sizes 1,10,100,1000]\n  Figure 3c: what one run transition costs the store as its task grows.',
    options: { sizes: 'value' },
  },
  main,
);
