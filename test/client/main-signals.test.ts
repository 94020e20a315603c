import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt } from '../master/helpers.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

const ROOT = path.resolve(__dirname, '../..');

/** A loopback port nothing listens on: the registry is down. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('node client and signals', () => {
  const dirs: string[] = [];
  beforeAll(() => ensureBuilt(), 300_000);
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it('SIGTERM while it waits for an unreachable registry at start-up stops it at once, cleanly (exit 0)', async () => {
    const dir = makeTempDir('pht-client-signal-');
    dirs.push(dir);
    const config = path.join(dir, 'config.json');
    fs.writeFileSync(
      config,
      JSON.stringify({
        registryUrl: `http://127.0.0.1:${await closedPort()}`,
        apiKey: 'pht_site_not-a-real-key',
        sparqlEndpoint: 'http://127.0.0.1:1/sparql',
        allowedImages: [],
        workDir: path.join(dir, 'work'),
        network: { mode: 'none' },
      }),
    );
    const child = spawn(process.execPath, ['client', '--config', config], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', PHT_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    const waiting = new Promise<void>((resolve) =>
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (stderr.includes('registry unavailable; will keep trying')) resolve();
      }),
    );
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await waiting;
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    const lines = stderr
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { level: string; message: string; from?: string; to?: string });
    const states = lines.filter((l) => l.message === 'client state').map((l) => `${l.from}>${l.to}`);
    expect(states).toEqual(['starting>stopping', 'stopping>stopped']);
    expect(lines.filter((l) => l.level === 'error')).toEqual([]);
    expect(stderr).not.toMatch(/aborted/i);
  });
});
