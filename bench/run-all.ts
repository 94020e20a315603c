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
import { integerOption, runCommandLine, stringOption } from '../shared/command-line.js';
import { sleep } from '../shared/abortable.js';

const FIGURES = ['overhead', 'dispatch', 'scale', 'store-costs', 'throughput', 'large-results', 'network-start'];

async function waitQuiet(maxSeconds: number): Promise<void> {
  const cores = os.cpus().length;
  const deadline = Date.now() + maxSeconds * 1000;
  while (os.loadavg()[0]! >= cores && Date.now() < deadline) {
    console.log(
      `  load average ${os.loadavg()[0]!.toFixed(2)} on ${cores} cores (CPU pressure ${cpuPressure()}): waiting for a quieter machine`,
    );
    await sleep(15_000);
  }
  if (os.loadavg()[0]! >= cores)
    console.log(`  still busy after ${maxSeconds} s: measuring anyway (the section records the load)`);
}

const USAGE = `Usage: node dist/bench/run-all.js [--only ${FIGURES.join(',')}] [--quiet-wait SECONDS]   (npm run bench)
  Runs every figure (or those named), each rewriting its section of BENCHMARKS.md.`;

async function runFigures(only: string[], quietWait: number): Promise<number> {
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

void runCommandLine(
  process.argv.slice(2),
  { usage: USAGE, options: { only: 'value', 'quiet-wait': 'value' } },
  (args) =>
    runFigures(stringOption(args, 'only', FIGURES.join(',')).split(','), integerOption(args, 'quiet-wait', 300)),
).then((code) => {
  process.exitCode = code;
});
