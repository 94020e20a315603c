import { execFile } from 'node:child_process';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt } from '../master/helpers.js';

const ROOT = path.resolve(__dirname, '../..');

/** Every program of the project, as a user starts it. */
const PROGRAMS: [name: string, entry: string, usage: RegExp][] = [
  ['node master', 'master', /^Usage: node master /m],
  ['node client', 'client', /^Usage: node client /m],
  ['pht', 'sdk/pht.js', /Usage: pht /],
  ['demo: run-demo', 'dist/demo/run-demo.js', /^Usage: node dist\/demo\/run-demo\.js/m],
  ['demo: synthetic-data', 'dist/demo/synthetic-data.js', /^Usage: node dist\/demo\/synthetic-data\.js/m],
  ['demo: central', 'dist/demo/central.js', /^Usage: node dist\/demo\/central\.js/m],
  ['demo: sparql-server', 'dist/demo/sparql-server.js', /^Usage: node dist\/demo\/sparql-server\.js/m],
  ['demo: researcher-descriptive-stats', 'dist/demo/researcher-descriptive-stats.js', /^Usage: node dist\/demo\//m],
  ['demo: researcher-logistic-regression', 'dist/demo/researcher-logistic-regression.js', /^Usage: node dist\/demo\//m],
  ['bench: run-all', 'dist/bench/run-all.js', /^Usage: node dist\/bench\/run-all\.js/m],
  ['bench: overhead', 'dist/bench/overhead.js', /^Usage: node dist\/bench\/overhead\.js/m],
  ['bench: dispatch', 'dist/bench/dispatch.js', /^Usage: node dist\/bench\/dispatch\.js/m],
  ['bench: scale', 'dist/bench/scale.js', /^Usage: node dist\/bench\/scale\.js/m],
  ['bench: store-costs', 'dist/bench/store-costs.js', /^Usage: node dist\/bench\/store-costs\.js/m],
  ['bench: throughput', 'dist/bench/throughput.js', /^Usage: node dist\/bench\/throughput\.js/m],
  ['bench: large-results', 'dist/bench/large-results.js', /^Usage: node dist\/bench\/large-results\.js/m],
  ['bench: crypto-stream', 'dist/bench/crypto-stream.js', /^Usage: npm run bench:crypto/m],
  ['bench: celery', 'dist/bench/celery.js', /^Usage: node dist\/bench\/celery\.js/m],
  ['bench: netstart', 'dist/bench/network-start.js', /^Usage: node dist\/bench\/network-start\.js/m],
  ['node fileservice', 'fileservice', /^Usage: node fileservice /m],
];

function run(entry: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // No registry, token or config around: a program that ignored the option would fail otherwise.
    const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' };
    execFile(process.execPath, [entry, ...args], { cwd: ROOT, env, timeout: 60_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });
}

describe('every program refuses an unknown option with its usage line and exit code 2', () => {
  beforeAll(() => ensureBuilt(), 300_000);

  it.each(PROGRAMS)('%s --prot 5001', async (_name, entry, usage) => {
    const r = await run(entry, ['--prot', '5001']);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/unknown option --prot/);
    if (!entry.endsWith('pht.js')) expect(r.stderr).toMatch(usage);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(r.stdout).toBe('');
  });

  it.each(PROGRAMS)('%s --help prints its usage and exits 0', async (_name, entry, usage) => {
    const r = await run(entry, ['--help']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(usage);
    expect(r.stderr).toBe('');
  });

  it('node master refuses an unknown option of an admin command', async () => {
    const r = await run('master', ['create-site', 'x', '--jsn']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown option --jsn/);
  });
});
