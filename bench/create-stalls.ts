/**
 * Issue 13, target 4 (tail latency of task creation): is it the store? Times each of N task
 * creations through the SQLite store alone (no HTTP), with SQLite's automatic WAL checkpoint at
 * its default (every 1,000 pages, run synchronously by the committing call) and switched off, in
 * alternating rounds. If checkpoints caused the tail, it would disappear with them switched off.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type Database from 'better-sqlite3';
import { SqliteRegistryStore } from '../master/store/sqlite-store.js';
import { writeSection } from './lib/report.js';
import { ms, summarize, table } from './lib/stats.js';
import { type BenchArgs, runMain } from './lib/world.js';

async function round(autocheckpoint: boolean, creations: number): Promise<number[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pht-bench-stalls-'));
  const store = new SqliteRegistryStore(path.join(dir, 'registry.sqlite'));
  try {
    // The store keeps its connection private; the benchmark needs it for one pragma.
    const db = (store as unknown as { db: Database.Database }).db;
    if (!autocheckpoint) db.pragma('wal_autocheckpoint = 0');
    for (let i = 0; i < 100; i++) await store.createPrincipal('site', `s${i}`, 'site');
    const owner = (await store.createPrincipal('user', 'u', 'researcher')).principal;
    const durations: number[] = [];
    for (let i = 0; i < creations; i++) {
      const t = performance.now();
      await store.createTask(owner, {
        name: null,
        image: '127.0.0.1:5050/pht-bench/workload:1',
        config: Buffer.from('{}'),
        configType: 'application/json',
        sites: [`s${i % 100}`],
      });
      durations.push(performance.now() - t);
    }
    return durations;
  } finally {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(args: BenchArgs): Promise<void> {
  const creations = args.number('creations', 8000);
  const rounds = args.number('rounds', 2);
  const rows: string[][] = [];
  for (let r = 1; r <= rounds; r++) {
    for (const autocheckpoint of [true, false]) {
      const s = summarize(await round(autocheckpoint, creations));
      const load = os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(' / ');
      const label = autocheckpoint ? 'default (1,000 pages)' : 'off';
      console.log(
        `round ${r}, autocheckpoint ${label}: p50 ${ms(s.median)} p99 ${ms(s.p99)} max ${ms(s.max)} ms, load ${load}`,
      );
      rows.push([String(r), label, ms(s.median), ms(s.p95), ms(s.p99), ms(s.max), load]);
    }
  }
  writeSection({
    id: 'create-stalls',
    title: '3h. Task creation in the store alone, with and without WAL checkpoints',
    command: `npm run bench:stalls -- --creations ${creations} --rounds ${rounds}`,
    body: `Issue 13, target 4: ${creations} single-site task creations per round through the SQLite store, timed one by one
(ms), no HTTP; rounds alternate SQLite's automatic WAL checkpoint at its default and off. Load = load average at
the end of the round.

${table(['round', 'WAL autocheckpoint', 'p50', 'p95', 'p99', 'max', 'load'], rows)}`,
  });
}

runMain(
  {
    usage: 'usage: npm run bench:stalls -- [--creations 8000] [--rounds 2]',
    options: { creations: 'value', rounds: 'value' },
  },
  main,
);
