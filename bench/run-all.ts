/**
 * Runs every figure, one process each, in order; each rewrites its own section of BENCHMARKS.md.
 * The machine may be shared: before each figure it waits (up to --quiet-wait seconds, default 300)
 * for the 1-minute load average to drop below the number of cores, and says so when it does not.
 * `--only overhead,scale` runs a subset.
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { cpuPressure } from './lib/report.js';
import { argOf, numberArg } from './lib/world.js';

const FIGURES = ['overhead', 'dispatch', 'scale', 'store-costs', 'throughput', 'large-results'];

async function waitQuiet(maxSeconds: number): Promise<void> {
  const cores = os.cpus().length;
  const deadline = Date.now() + maxSeconds * 1000;
  while (os.loadavg()[0]! >= cores && Date.now() < deadline) {
    console.log(
      `  load average ${os.loadavg()[0]!.toFixed(2)} on ${cores} cores (CPU pressure ${cpuPressure()}): waiting for a quieter machine`,
    );
    await new Promise((r) => setTimeout(r, 15_000));
  }
  if (os.loadavg()[0]! >= cores)
    console.log(`  still busy after ${maxSeconds} s: measuring anyway (the section records the load)`);
}

async function main(): Promise<number> {
  const only = argOf('only', FIGURES.join(',')).split(',');
  const quietWait = numberArg('quiet-wait', 300);
  let failed = 0;
  for (const figure of FIGURES.filter((f) => only.includes(f))) {
    console.log(`\n##### ${figure}`);
    await waitQuiet(quietWait);
    const result = spawnSync(process.execPath, [path.join(__dirname, `${figure}.js`)], { stdio: 'inherit' });
    if (result.status !== 0) {
      failed++;
      console.error(`${figure} failed (exit ${result.status ?? result.signal})`);
    }
  }
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  },
);
