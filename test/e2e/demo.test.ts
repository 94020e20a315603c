import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CONTAINER_LABELS } from '../../shared/container-contract.js';
import { docker } from '../helpers/docker.js';

// `npm start` as a user runs it: the compiled demo as a child process (global setup has built
// dist/). A unique site prefix keeps its sites, containers and networks apart from anything else
// on the machine, so "nothing left behind" can be checked exactly.

const ROOT = path.join(__dirname, '..', '..');

interface DemoRun {
  code: number | null;
  output: string;
}

let running: ChildProcess | null = null;

/**
 * Runs the compiled demo. `interruptWhen`: send SIGINT (what Ctrl-C does) once the output
 * matches it.
 */
function runDemo(args: string[], interruptWhen?: RegExp): Promise<DemoRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'demo', 'run-demo.js'), ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running = child;
    let output = '';
    let interrupted = false;
    const collect = (d: Buffer): void => {
      output += d.toString();
      if (interruptWhen && !interrupted && interruptWhen.test(output)) {
        interrupted = true;
        child.kill('SIGINT');
      }
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    child.once('error', reject);
    child.once('close', (code) => {
      running = null;
      resolve({ code, output });
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** PIDs of live processes whose command line mentions `text` (the demo's temp dir is in every child's arguments). */
function processesMentioning(text: string): number[] {
  const found: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) found.push(Number(entry));
    } catch {
      // Ended while we looked.
    }
  }
  return found;
}

function maxDifference(output: string, what: string): number {
  const match = new RegExp(
    `max \\|federated - central\\| over ${what}: (\\S+) \\(tolerance [^)]*\\): (AGREE|DISAGREE)`,
  ).exec(output);
  if (!match) throw new Error(`no comparison over ${what} in the demo's output:\n${output}`);
  return Number(match[1]);
}

/** Every process the demo listed has ended, none uses its temp dir, which is gone, and Docker holds nothing of its sites. */
async function expectNothingLeftBehind(output: string, sites: string[]): Promise<void> {
  const context = `demo output:\n${output}`;
  const workDir = /^working directory: (\S+)$/m.exec(output)?.[1];
  expect(workDir, context).toMatch(/pht-demo-/);
  const listed = [...output.matchAll(/^\s+(.+?)\s+pid (\d+)\s+(\S+\.log)$/gm)].map((m) => ({
    name: m[1]!,
    pid: Number(m[2]),
  }));
  expect(listed.length, context).toBeGreaterThan(0);
  expect(listed.filter((p) => alive(p.pid))).toEqual([]);
  expect(processesMentioning(workDir!)).toEqual([]);
  expect(fs.existsSync(workDir!)).toBe(false);
  for (const site of sites) {
    const label = [`${CONTAINER_LABELS.site}=${site}`];
    expect(await docker().listContainers({ all: true, filters: { label } })).toEqual([]);
    expect(await docker().listNetworks({ filters: { label } })).toEqual([]);
  }
  expect(output).toContain('nothing left behind');
}

function uniqueSites(): { prefix: string; sites: string[] } {
  const prefix = `demo${crypto.randomBytes(3).toString('hex')}-`;
  return { prefix, sites: ['site-a', 'site-b', 'site-c'].map((s) => prefix + s) };
}

describe('the demo (npm start)', () => {
  afterAll(async () => {
    // A test that timed out must not leave the demo running: one SIGINT makes it clean up.
    const child = running;
    if (child && child.exitCode === null) {
      await new Promise<void>((resolve) => {
        child.once('close', () => resolve());
        child.kill('SIGINT');
      });
    }
  });

  it(
    'runs the three analyses (the third at a TTP), agrees with the central computation and leaves nothing behind',
    { timeout: 900_000 },
    async () => {
      const { prefix, sites } = uniqueSites();
      const { code, output } = await runDemo(['--site-prefix', prefix]);
      const context = `demo output:\n${output}`;
      expect(code, context).toBe(0);

      // The printed results: both comparisons within their tolerances, every site in the table.
      expect(maxDifference(output, 'n, mean and sd'), context).toBeLessThanOrEqual(1e-6);
      expect(maxDifference(output, 'the coefficients'), context).toBeLessThanOrEqual(1e-3);
      expect(output).not.toContain('DISAGREE');
      expect(output).toContain('RESULT: all three analyses agree with the central computation.');
      // The TTP's quartiles, next to the central ones: the same numbers on both rows.
      const ttpRow = /^\s+at the TTP\s+(1950\s+\S+\s+\S+\s+\S+)$/m.exec(output)?.[1];
      const centralRow = /^\s+central\s+(1950\s+\S+\s+\S+\s+\S+)$/m.exec(output)?.[1];
      expect(ttpRow, context).toBeDefined();
      expect(ttpRow).toBe(centralRow);
      expect(output).toContain('neither the registry nor the researcher saw a patient value');
      for (const site of sites) expect(output).toMatch(new RegExp(`^\\s+${site}\\s+bmi\\s+\\d+`, 'm'));
      expect(output).toMatch(/^\s+pooled\s+age\s+1950\s/m);
      expect(output).toMatch(/converged after \d+ rounds on 1912 complete cases/);
      expect(output).toMatch(/logistic regression: \d+ rounds, [\d.]+ s per round on average/);
      const listed = [...output.matchAll(/^\s+(.+?)\s+pid \d+\s+\S+\.log$/gm)].map((m) => m[1]);
      expect(listed).toEqual(
        expect.arrayContaining(['registry (node master)', ...sites.flatMap((s) => [`client ${s}`, `sparql ${s}`])]),
      );

      await expectNothingLeftBehind(output, [...sites, `${prefix}ttp`]);
    },
  );

  it(
    'shuts everything down when interrupted in the middle of the logistic regression (Ctrl-C)',
    { timeout: 900_000 },
    async () => {
      const { prefix, sites } = uniqueSites();
      // Right after round 1 the demo posts round 2: its containers are starting or running.
      const { code, output } = await runDemo(['--site-prefix', prefix], /^\s+round 1 \(task \d+/m);
      expect(code, `demo output:\n${output}`).toBe(130);
      expect(output).toContain('demo interrupted by SIGINT');
      expect(output).not.toContain('RESULT:');
      await expectNothingLeftBehind(output, sites);
    },
  );
});
