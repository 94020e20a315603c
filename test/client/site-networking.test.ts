import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SiteClient } from '../../client/site-client.js';
import { silentLogger } from '../../shared/logger.js';
import { clientConfig } from '../e2e/site-harness.js';
import { startTestRegistry, type TestRegistry } from '../helpers/registry-fixture.js';
import { FakeEngine } from './fake-engine.js';

describe('site client networking (fake engine, real gateway and iptables)', () => {
  let registry: TestRegistry;

  beforeAll(async () => {
    registry = await startTestRegistry();
  });

  afterAll(async () => {
    await registry.destroy();
  });

  it('undoes its networking when start fails after preparing it: no gateway left listening, no rules, no network', async () => {
    const site = `netfail-${process.pid}`;
    const config = clientConfig(registry.url, await registry.createSite(site), 'http://127.0.0.1:1/sparql', {
      network: { mode: 'gateway' },
    });
    const engine = new FakeEngine();
    engine.listManaged = async () => {
      throw new Error('the engine failed while listing containers');
    };
    const client = new SiteClient({ config, logger: silentLogger(), engine });
    await expect(client.start()).rejects.toThrow('the engine failed while listing containers');

    const port = Number(fs.readFileSync(path.join(config.workDir, 'gateway-port'), 'utf8'));
    expect(port).toBeGreaterThan(0);
    const socket = net.connect(port, '127.0.0.1');
    const outcome = await new Promise<string>((resolve) => {
      socket.once('connect', () => resolve('connected'));
      socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    socket.destroy();
    expect(outcome).toBe('ECONNREFUSED');
    const rules = execFileSync('iptables', ['-w', '-S', 'INPUT'])
      .toString()
      .split('\n')
      .filter((l) => l.includes(`--comment pht-pht-gw-${site}`));
    expect(rules).toEqual([]);
    expect(engine.networks.size).toBe(0);
  });
});
