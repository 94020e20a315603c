import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ClientConfig } from '../../client/config.js';
import { ShutdownDeadlineError } from '../../client/errors.js';
import type { PollerState } from '../../client/poller-state.js';
import { SiteRegistryApi } from '../../client/registry-api.js';
import { SiteClient } from '../../client/site-client.js';
import { silentLogger } from '../../shared/logger.js';
import { clientConfig, Researcher } from '../e2e/site-harness.js';
import { startTestRegistry, type TestRegistry } from '../helpers/registry-fixture.js';
import { FakeEngine } from './fake-engine.js';

const IMAGE = '127.0.0.1:5050/pht-e2e/fake:1';

/** The site client's loop against a real registry, with Docker faked at the engine boundary. */
describe('site client loop (fake engine, real registry)', () => {
  let registry: TestRegistry;
  let researcher: Researcher;
  let siteKey: string;
  let engine: FakeEngine;
  let config: ClientConfig;
  const clients: SiteClient[] = [];

  beforeAll(async () => {
    registry = await startTestRegistry();
    researcher = new Researcher(registry, await registry.createUser('rae'));
    siteKey = await registry.createSite('loop-site');
  });

  afterAll(async () => {
    await registry.destroy();
  });

  beforeEach(() => {
    engine = new FakeEngine();
    config = clientConfig(registry.url, siteKey, 'http://127.0.0.1:1/sparql', {
      network: { mode: 'none' },
      poll: { longPollSeconds: 1, cancelCheck: '500ms', maxBackoff: '1s' },
    });
  });

  afterEach(async () => {
    // Every client a test started is stopped; a close that fails here is a leak of the test.
    await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
  });

  function newClient(shutdownDeadlineMs?: number): SiteClient {
    const client = new SiteClient({ config, logger: silentLogger(), engine, shutdownDeadlineMs });
    clients.push(client);
    return client;
  }

  function runsDir(): string[] {
    const dir = path.join(config.workDir, 'runs');
    return fs.existsSync(dir) ? fs.readdirSync(dir) : [];
  }

  it('moves starting → polling → … → stopping → stopped, and close() is idempotent', async () => {
    const client = newClient();
    const seen: string[] = [];
    client.states.on('change', (from: PollerState, to: PollerState) => seen.push(`${from}>${to}`));
    await client.start();
    await client.states.reached('polling');
    const first = client.close();
    expect(client.close()).toBe(first);
    await first;
    await client.close();
    expect(client.state).toBe('stopped');
    expect(seen[0]).toBe('starting>polling');
    expect(seen.slice(-2)).toEqual(['polling>stopping', 'stopping>stopped']);
  });

  it('ends a run failed with the reason when a step fails for a non-transient reason, and frees its slot', async () => {
    engine.pullGate = async () => {
      throw new TypeError('cannot read properties of undefined (a bug, not an outage)');
    };
    const client = newClient();
    await client.start();
    const broken = await researcher.post(IMAGE, {}, ['loop-site']);
    const done = await researcher.waitDone(broken.id, 60);
    expect(done.runs[0]!.status).toBe('failed');
    expect(done.runs[0]!.reason).toContain('a bug, not an outage');
    expect(engine.pulls).toHaveLength(1); // not retried
    // The slot (concurrency 1) is free again: the next run runs.
    engine.pullGate = null;
    const next = await researcher.post(IMAGE, {}, ['loop-site']);
    expect((await researcher.waitDone(next.id, 60)).runs[0]!.status).toBe('completed');
    await client.states.reached('polling');
    // A reported run gives its slot back before its folder is deleted: the deletion follows.
    await vi.waitFor(() => expect(runsDir()).toEqual([]), { timeout: 10_000 });
  });

  it('claims and starts the next run while the last run’s report is on its way, its container gone', async () => {
    expect(config.concurrency).toBe(1);
    // The first report is held at the client until the second run has been claimed and started.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let reportSent!: () => void;
    const sent = new Promise<void>((resolve) => (reportSent = resolve));
    const proto = SiteRegistryApi.prototype as unknown as { call(...args: unknown[]): Promise<unknown> };
    const call = proto.call;
    let holding = true;
    vi.spyOn(proto, 'call').mockImplementation(async function (this: unknown, ...args: unknown[]) {
      if (holding && args[0] === 'POST' && String(args[1]).endsWith('/finish')) {
        holding = false;
        reportSent();
        await held;
      }
      return call.apply(this, args);
    });
    let secondPull!: () => void;
    const pulledAgain = new Promise<void>((resolve) => (secondPull = resolve));
    engine.pullGate = async () => {
      if (engine.pulls.length === 2) secondPull();
    };
    const client = newClient();
    await client.start();
    const first = await researcher.post(IMAGE, {}, ['loop-site']);
    const second = await researcher.post(IMAGE, {}, ['loop-site']);
    await sent;
    // Pulled only after POST /start of the second run was answered: it holds the freed slot.
    await pulledAgain;
    expect(engine.containers.size).toBeLessThanOrEqual(1);
    release();
    expect((await researcher.waitDone(first.id, 60)).runs[0]!.status).toBe('completed');
    expect((await researcher.waitDone(second.id, 60)).runs[0]!.status).toBe('completed');
  });

  it('a shutdown during a pull ends the pull at once and leaves the run for the next start', async () => {
    let pullStarted!: () => void;
    const started = new Promise<void>((resolve) => (pullStarted = resolve));
    engine.pullGate = (signal) =>
      new Promise<void>((_resolve, reject) => {
        pullStarted();
        // A pull that only ends when told to (a large image on a slow link).
        signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
    const client = newClient();
    await client.start();
    const task = await researcher.post(IMAGE, {}, ['loop-site']);
    await started;
    await client.close();
    expect(client.state).toBe('stopped');
    expect(runsDir()).toHaveLength(1);
    // The pull runs while the registry records the start: the shutdown may have cut either.
    const view = await researcher.call('GET', `/tasks/${task.id}`);
    expect(['assigned', 'running']).toContain(view.json.runs[0].status);

    // The next start picks the run up where it was and completes it.
    engine.pullGate = null;
    const again = newClient();
    await again.start();
    expect((await researcher.waitDone(task.id, 60)).runs[0]!.status).toBe('completed');
  });

  it('close() gives up on a step that ignores the shutdown after its deadline, and still stops', async () => {
    let pullStarted!: () => void;
    const started = new Promise<void>((resolve) => (pullStarted = resolve));
    engine.pullGate = () => {
      pullStarted();
      return new Promise<void>(() => undefined); // never ends, whatever the signal says
    };
    const client = newClient(200);
    await client.start();
    const task = await researcher.post(IMAGE, {}, ['loop-site']);
    await started;
    const error = await client.close().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ShutdownDeadlineError);
    expect((error as ShutdownDeadlineError).runIds).toHaveLength(1);
    expect(client.state).toBe('stopped');
    // Leave the registry clean for the next test: the stuck run is cancelled.
    await researcher.call('POST', `/tasks/${task.id}/cancel`);
  });
});
