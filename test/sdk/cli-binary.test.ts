import { spawn } from 'node:child_process';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { closedPort, IMAGE, startWorld, type RegistryWorld } from './registry-world.js';
import { ensureSdkBuilt, ROOT } from './sdk-build.js';

let world: RegistryWorld;

beforeAll(() => ensureSdkBuilt(), 120_000);

beforeEach(async () => {
  world = await startWorld();
});

afterEach(async () => {
  await world.close();
});

/** Runs a node process from the repository root and collects its output and exit code. */
function node(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: ROOT,
      env: { PATH: process.env.PATH, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

const pht = (args: string[], env?: NodeJS.ProcessEnv) =>
  node(['sdk/pht.js', ...args], env ?? { PHT_URL: world.registry.url, PHT_TOKEN: world.token });

describe('the pht binary', () => {
  it('prints its usage with the exit codes', async () => {
    const { code, out } = await pht(['--help'], {});
    expect(code).toBe(0);
    expect(out).toContain('Exit codes:');
  });

  it('creates a task, waits for it and exits 0 when it completed', async () => {
    const running = pht(['task', 'create', '--image', IMAGE, '--sites', 'site-a', '--wait', '--json']);
    await world.siteA.play({ files: { 'result.json': { n: 5 } } });
    const { code, out, err } = await running;
    expect(err).toBe('');
    expect(code).toBe(0);
    expect(JSON.parse(out)).toMatchObject({ id: 1, status: 'completed' });
  });

  it('exits 1 when the task fails', async () => {
    const running = pht(['task', 'create', '--image', IMAGE, '--sites', 'site-a', '--wait']);
    await world.siteA.play({ finish: { state: 'failed', exitCode: 1 } });
    const { code, out } = await running;
    expect(code).toBe(1);
    expect(out).toContain('task 1 failed');
  });

  it('exits 2 on a usage error and 3 when the registry is unreachable', async () => {
    expect((await pht(['task', 'show'])).code).toBe(2);
    const port = await closedPort();
    const unreachable = await pht(['sites'], { PHT_URL: `http://127.0.0.1:${port}`, PHT_TOKEN: 'some-token' });
    expect(unreachable.code).toBe(3);
    expect(unreachable.err).toContain('ECONNREFUSED');
  });
});

describe('the SDK from plain JavaScript', () => {
  it('loads as the package main and talks to the registry', async () => {
    const script = `
      const { PhtClient, PhtApiError } = require(${JSON.stringify(ROOT)});
      const client = PhtClient.fromEnv();
      (async () => {
        const sites = await client.listSites();
        const error = await client.getTask(7).catch((e) => e);
        console.log(JSON.stringify({ sites: sites.map((s) => s.name), notFound: error instanceof PhtApiError && error.code }));
        await client.close();
      })();
    `;
    const { code, out, err } = await node(['-e', script], { PHT_URL: world.registry.url, PHT_TOKEN: world.token });
    expect(err).toBe('');
    expect(code).toBe(0);
    expect(JSON.parse(out)).toEqual({ sites: ['site-a', 'site-b'], notFound: 'not_found' });
  });
});
