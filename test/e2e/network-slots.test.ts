import { EventEmitter, once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerEngine } from '../../client/container-engine.js';
import { HOLDER_IMAGE, NetworkSlotPool, SLOT_LABELS } from '../../client/network-slots.js';
import { CONTAINER_LABELS } from '../../shared/container-contract.js';
import { silentLogger } from '../../shared/logger.js';
import { captureLog } from '../client/fake-docker-events.js';
import { buildAndPushImage, docker, DOCKER_SOCKET, removeContainersByLabel } from '../helpers/docker.js';
import { startTestRegistry, type TestRegistry } from '../helpers/registry-fixture.js';
import { cleanupSite, clientConfig, E2E_REPO, Researcher, startClient, uniqueSiteName } from './site-harness.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

/*
 * Gateway mode's network slots (client/network-slots.ts) against the real Docker engine: runs join
 * namespaces prepared ahead of time, and each must still reach only the gateway, never another
 * run, and inherit nothing from the slot's previous run.
 */

const PROBE = `${E2E_REPO}/slot-probe:1`;
const TEST_LABEL = 'org.pht.test';
const TEST_RUN = `slots-${process.pid}`;

/** What a probe does comes from its environment (direct runs) or its task config (site runs). */
const PROBE_SOURCE = `
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
let cfg = {};
try { cfg = JSON.parse(fs.readFileSync(process.env.PHT_CONFIG_FILE, 'utf8')); } catch {}
const mode = process.env.MODE || cfg.mode;
const ip = () => Object.values(os.networkInterfaces()).flat().find((a) => a.family === 'IPv4' && !a.internal)?.address ?? null;
const attempt = (options) => new Promise((resolve) => {
  const s = net.connect(options);
  const t = setTimeout(() => { s.destroy(); resolve('timeout'); }, 2000);
  s.on('connect', () => { clearTimeout(t); s.destroy(); resolve('connected'); });
  s.on('error', (e) => { clearTimeout(t); resolve(e.code); });
});
const print = (v) => console.log(JSON.stringify(v));
async function main() {
  if (mode === 'listen') {
    const tcp = net.createServer((c) => c.end('hello')).listen(7000, '0.0.0.0');
    const abstract = net.createServer((c) => c.end('hello')).listen('\\0pht-slot-leak');
    await Promise.all([new Promise((r) => tcp.on('listening', r)), new Promise((r) => abstract.on('listening', r))]);
    print({ listening: ip() });
    setInterval(() => {}, 1 << 30);
    return;
  }
  if (mode === 'connect') {
    print({ tcp: await attempt({ host: process.env.HOST, port: 7000 }), abstract: await attempt({ path: '\\0pht-slot-leak' }) });
    return;
  }
  if (mode === 'inspect') {
    const pids = fs.readdirSync('/proc').filter((n) => /^[0-9]+$/.test(n));
    // Every process this one may signal (kill -1 spares only itself and init), and the holder's host pid.
    const signals = {};
    for (const pid of [-1, Number(process.env.HOLDER_PID)]) {
      try { process.kill(pid, 'SIGKILL'); signals[pid] = 'sent'; } catch (e) { signals[pid] = e.code; }
    }
    const writes = {};
    for (const f of ['/etc/hosts', '/etc/resolv.conf', '/etc/hostname']) {
      try { fs.appendFileSync(f, '1.2.3.4 registry.example\\n'); writes[f] = 'written'; } catch (e) { writes[f] = e.code; }
    }
    print({ ip: ip(), pids, signals, writes, resolv: fs.readFileSync('/etc/resolv.conf', 'utf8') });
    return;
  }
  // Site runs: query SPARQL through the gateway until the endpoint says go, then report.
  let answer = '';
  for (;;) {
    try {
      const res = await fetch(process.env.SPARQL_ENDPOINT, { method: 'POST', headers: { 'content-type': 'application/sparql-query' }, body: 'ASK {}' });
      answer = await res.text();
    } catch (e) {
      // The gateway is away while the site client restarts.
      if (!cfg.hold) throw e;
    }
    if (!cfg.hold || answer.includes('go')) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  fs.writeFileSync(path.join(process.env.PHT_OUTPUT_DIR, 'report.json'), JSON.stringify({ ip: ip(), answer }));
}
main().catch((e) => { console.error(e); process.exit(1); });
`;

/** A SPARQL endpoint answering "wait" until `go` is set; counts the queries it sees. */
function startEndpoint() {
  const state = { go: false, queries: 0, events: new EventEmitter() };
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      state.queries += 1;
      state.events.emit('query');
      res.writeHead(200, { 'content-type': 'application/sparql-results+json' });
      res.end(JSON.stringify({ head: {}, boolean: true, note: state.go ? 'go' : 'wait' }));
    });
  });
  return { server, state };
}

/** Runs the probe directly (no site client) in `networkMode` with the client's hardened spec. */
async function probe(
  engine: DockerEngine,
  networkMode: string,
  env: Record<string, string>,
  labels: Record<string, string> = {},
): Promise<{ id: string; output: Promise<any>; firstLine: Promise<any> }> {
  const id = await engine.create({
    name: `pht-slot-probe-${process.pid}-${Math.random().toString(16).slice(2, 10)}`,
    imageId: PROBE,
    env,
    labels: { [TEST_LABEL]: TEST_RUN, ...labels },
    user: '65534:65534',
    mounts: [],
    networkMode,
    dns: [],
    memoryBytes: 128 * 1024 * 1024,
    nanoCpus: 1_000_000_000,
    pids: 64,
    tmpfsBytes: 1024 * 1024,
  });
  const stream = (await engine.docker
    .getContainer(id)
    .attach({ stream: true, stdout: true, stderr: true })) as unknown as Readable;
  let text = '';
  const lines = new EventEmitter();
  stream.on('data', (d: Buffer) => {
    text += d.toString('latin1');
    const match = /\{.*\}/.exec(text);
    if (match) lines.emit('line', JSON.parse(match[0]));
  });
  const firstLine = once(lines, 'line').then(([v]) => v);
  await engine.start(id);
  const output = engine.wait(id).then(async (code) => {
    stream.destroy();
    if (code !== 0) throw new Error(`probe exited with ${code}: ${text}`);
    return firstLine;
  });
  output.catch(() => undefined);
  return { id, output, firstLine };
}

/** A Unix socket forwarding to `target`; its connections can be cut, and new ones refused. */
async function startSocketProxy(target: string) {
  const dir = makeTempDir('pht-docker-proxy-');
  const file = path.join(dir, 'docker.sock');
  const open = new Set<net.Socket>();
  const state = { refuse: false };
  const server = net.createServer((client) => {
    if (state.refuse) return client.destroy();
    const upstream = net.connect(target);
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      open.add(a);
      a.on('close', () => {
        open.delete(a);
        b.destroy();
      });
      a.on('error', () => b.destroy());
      a.pipe(b);
    }
  });
  await new Promise<void>((resolve) => server.listen(file, resolve));
  return {
    path: file,
    set refuse(value: boolean) {
      state.refuse = value;
    },
    cutAll: () => {
      for (const s of open) s.destroy();
    },
    close: async () => {
      for (const s of open) s.destroy();
      await new Promise((resolve) => server.close(resolve));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe('network slots on the real engine', () => {
  const engine = new DockerEngine(DOCKER_SOCKET);
  const site = uniqueSiteName('slots');
  const networkName = `pht-gw-${site}`;
  let pool: NetworkSlotPool;
  let gatewayIp: string;

  beforeAll(async () => {
    await buildAndPushImage(
      PROBE,
      { 'main.js': PROBE_SOURCE },
      { cmd: ['/app/main.js'], labels: { [TEST_LABEL]: TEST_RUN } },
    );
    await engine.createInternalNetwork({
      name: networkName,
      bridgeInterface: `phts${process.pid.toString(16).slice(-8)}`,
      subnet: null,
      labels: { [CONTAINER_LABELS.site]: site },
    });
    gatewayIp = (await engine.inspectNetwork(networkName))!.gatewayIp!;
    pool = (await NetworkSlotPool.open({
      engine,
      site,
      network: { name: networkName, gatewayIp },
      size: 2,
      logger: silentLogger(),
    }))!;
  });

  afterAll(async () => {
    await pool?.close();
    await removeContainersByLabel(TEST_LABEL, TEST_RUN);
    await cleanupSite(site);
  });

  it('holders are hardened: no capabilities, read-only, unprivileged, tiny, on the gateway network, never restarted', async () => {
    expect(pool.size).toBe(2);
    for (const id of pool.holderIds()) {
      const info = await engine.docker.getContainer(id).inspect();
      expect(info.State.Running).toBe(true);
      expect(info.Config.Image).toBe(HOLDER_IMAGE);
      expect(info.Config.User).toBe('65534:65534');
      expect(info.HostConfig.CapDrop).toEqual(['ALL']);
      expect(info.HostConfig.SecurityOpt).toEqual(['no-new-privileges']);
      expect(info.HostConfig.ReadonlyRootfs).toBe(true);
      expect(info.HostConfig.Privileged).toBe(false);
      expect(info.HostConfig.Memory).toBeLessThanOrEqual(8 * 1024 * 1024);
      expect(info.HostConfig.PidsLimit).toBe(1);
      expect(info.HostConfig.Dns).toEqual([gatewayIp]);
      expect(Object.keys(info.NetworkSettings.Networks)).toEqual([networkName]);
      expect(info.Config.Labels[SLOT_LABELS.network]).toBe(networkName);
    }
  });

  it('two runs in different slots cannot reach each other, while the listener is reachable from its own namespace', async () => {
    const a = await pool.acquire(1);
    const b = await pool.acquire(2);
    expect(a).not.toBe(b);
    const listener = await probe(engine, a, { MODE: 'listen' });
    try {
      const { listening } = await listener.firstLine;
      expect(listening).toMatch(/^[0-9.]+$/);
      const other = await (await probe(engine, b, { MODE: 'connect', HOST: listening })).output;
      expect(other.tcp).not.toBe('connected');
      expect(other.abstract).toBe('ECONNREFUSED');
      // Positive control: the same probe in the listener's namespace gets through.
      const same = await (await probe(engine, a, { MODE: 'connect', HOST: listening })).output;
      expect(same).toEqual({ tcp: 'connected', abstract: 'connected' });
    } finally {
      await engine.remove(listener.id);
      pool.release(1);
      pool.release(2);
    }
  });

  it("a slot's next run inherits no listener (TCP or abstract Unix socket) from its previous run", async () => {
    const slot = await pool.acquire(3);
    const first = await probe(engine, slot, { MODE: 'listen' });
    const { listening } = await first.firstLine;
    await engine.stop(first.id, 0);
    await engine.remove(first.id);
    pool.release(3);
    expect(await pool.acquire(4)).toBe(slot);
    const next = await (await probe(engine, slot, { MODE: 'connect', HOST: listening })).output;
    pool.release(4);
    expect(next).toEqual({ tcp: 'ECONNREFUSED', abstract: 'ECONNREFUSED' });
  });

  it('a run cannot see or signal its holder, nor change the name files it shares; DNS stays pinned to the gateway', async () => {
    const slot = await pool.acquire(5);
    const holderId = slot.slice('container:'.length);
    const before = await engine.docker.getContainer(holderId).inspect();
    const report = await (await probe(engine, slot, { MODE: 'inspect', HOLDER_PID: String(before.State.Pid) })).output;
    pool.release(5);
    expect(Object.keys(report.signals)).toHaveLength(2);
    expect(report.pids).toEqual(['1']);
    for (const outcome of Object.values(report.signals)) expect(outcome).toBe('ESRCH');
    for (const outcome of Object.values(report.writes)) expect(['EROFS', 'EACCES']).toContain(outcome);
    // The engine's embedded resolver, which forwards only to the holder's name server: the gateway IP.
    expect(report.resolv).toMatch(/^nameserver 127\.0\.0\.11$/m);
    expect(report.resolv.match(/^nameserver/gm)).toHaveLength(1);
    const after = await engine.docker.getContainer(holderId).inspect();
    expect(after.State.Running).toBe(true);
    expect(after.State.StartedAt).toBe(before.State.StartedAt);
    expect(report.ip).toBe(Object.values(after.NetworkSettings.Networks)[0]!.IPAddress);
  });

  it('a clean stop keeps only the holders that live run containers use, even for slots still marked taken', async () => {
    const other = uniqueSiteName('slotsclose');
    const second = (await NetworkSlotPool.open({
      engine,
      site: other,
      network: { name: networkName, gatewayIp },
      size: 2,
      logger: silentLogger(),
    }))!;
    try {
      const live = await second.acquire(1);
      // Taken, but its run's container never came (or was removed by recovery): nothing to keep.
      const empty = await second.acquire(2);
      const runLabels = {
        [CONTAINER_LABELS.managedBy]: 'pht-client',
        [CONTAINER_LABELS.site]: other,
        [CONTAINER_LABELS.runId]: '1',
      };
      const listener = await probe(engine, live, { MODE: 'listen' }, runLabels);
      await listener.firstLine;
      await second.close();
      const left = await docker().listContainers({
        all: true,
        filters: {
          label: [`${CONTAINER_LABELS.managedBy}=${SLOT_LABELS.managedBy}`, `${CONTAINER_LABELS.site}=${other}`],
        },
      });
      expect(left.map((c) => `container:${c.Id}`)).toEqual([live]);
      expect(live).not.toBe(empty);
    } finally {
      await cleanupSite(other);
    }
  });

  it('a holder killed while the event stream is cut is found on reconnect: its run is stopped and the slot gets a new holder', async () => {
    // The pool talks to dockerd through a proxy socket that the test can cut and hold shut, so
    // the event stream is lost without touching the shared dockerd.
    const proxy = await startSocketProxy(DOCKER_SOCKET);
    const log = captureLog();
    const other = uniqueSiteName('slotsevents');
    const cut = (await NetworkSlotPool.open({
      engine: new DockerEngine(proxy.path),
      site: other,
      network: { name: networkName, gatewayIp },
      size: 1,
      logger: log.logger,
    }))!;
    try {
      const slot = await cut.acquire(1);
      const holderId = slot.slice('container:'.length);
      const runLabels = {
        [CONTAINER_LABELS.managedBy]: 'pht-client',
        [CONTAINER_LABELS.site]: other,
        [CONTAINER_LABELS.runId]: '1',
      };
      const listener = await probe(engine, slot, { MODE: 'listen' }, runLabels);
      await listener.firstLine;
      proxy.refuse = true;
      proxy.cutAll();
      await log.waitFor(/^lost the Docker event stream/);
      // The holder dies in the gap (its die event goes to no one), before the pool can reconnect.
      await docker().getContainer(holderId).kill();
      await docker().getContainer(holderId).wait();
      proxy.refuse = false;
      expect(await engine.wait(listener.id)).toBe(137);
      await log.waitFor(/^Docker event stream reconnected/);
      expect(log.count(/^lost the Docker event stream/)).toBe(1);
      expect(log.count(/^Docker event stream reconnected/)).toBe(1);
      cut.release(1);
      const next = await cut.acquire(2);
      expect(next).not.toBe(slot);
      expect((await docker().getContainer(next.slice('container:'.length)).inspect()).State.Running).toBe(true);
      cut.release(2);
    } finally {
      await cut.close();
      await proxy.close();
      await cleanupSite(other);
    }
  });

  it('a dead holder is replaced when its slot is next taken, and the run works in the new one', async () => {
    const slot = await pool.acquire(6);
    pool.release(6);
    await engine.docker.getContainer(slot.slice('container:'.length)).kill();
    const replaced = await pool.acquire(7);
    try {
      expect(replaced).not.toBe(slot);
      const report = await (await probe(engine, replaced, { MODE: 'inspect' })).output;
      expect(report.ip).toMatch(/^[0-9.]+$/);
    } finally {
      pool.release(7);
    }
    expect(pool.size).toBe(2);
  });
});

describe('a site client in gateway mode with network slots', () => {
  let registry: TestRegistry;
  let researcher: Researcher;
  let endpoint: ReturnType<typeof startEndpoint>;
  let endpointUrl: string;

  beforeAll(async () => {
    registry = await startTestRegistry();
    researcher = new Researcher(registry, await registry.createUser('slots-researcher'));
    endpoint = startEndpoint();
    await new Promise<void>((resolve) => endpoint.server.listen(0, '127.0.0.1', resolve));
    endpointUrl = `http://127.0.0.1:${(endpoint.server.address() as { port: number }).port}/sparql`;
    await buildAndPushImage(
      PROBE,
      { 'main.js': PROBE_SOURCE },
      { cmd: ['/app/main.js'], labels: { [TEST_LABEL]: TEST_RUN } },
    );
  });

  afterAll(async () => {
    endpoint?.server.close();
    await registry?.destroy();
    await removeContainersByLabel(TEST_LABEL, TEST_RUN);
  });

  async function holders(site: string) {
    return docker().listContainers({
      all: true,
      filters: {
        label: [`${CONTAINER_LABELS.managedBy}=${SLOT_LABELS.managedBy}`, `${CONTAINER_LABELS.site}=${site}`],
      },
    });
  }

  it('runs reach SPARQL through the gateway from a prepared slot, the next run reuses it, and a stop removes the holders', async () => {
    const site = uniqueSiteName('slotrun');
    const config = clientConfig(registry.url, await registry.createSite(site), endpointUrl, { concurrency: 1 });
    try {
      const client = await startClient(config);
      const [holder] = await holders(site);
      expect(holder).toBeDefined();
      const holderIp = Object.values(holder!.NetworkSettings.Networks)[0]!.IPAddress;
      endpoint.state.go = true;
      const ips: string[] = [];
      for (let i = 0; i < 2; i++) {
        const task = await researcher.post(PROBE, {}, [site]);
        const run = (await researcher.waitDone(task.id)).runs[0]!;
        expect(run.status).toBe('completed');
        const report = JSON.parse(await researcher.file(run.id, 'report.json'));
        expect(report.answer).toContain('"boolean":true');
        ips.push(report.ip);
      }
      expect(ips).toEqual([holderIp, holderIp]);
      expect((await holders(site)).map((h) => h.Id)).toEqual([holder!.Id]);
      await client.close();
      expect(await holders(site)).toEqual([]);
      expect(await new DockerEngine(DOCKER_SOCKET).inspectNetwork(`pht-gw-${site}`)).toBeNull();
    } finally {
      await cleanupSite(site);
    }
  });

  it('a holder that dies during a run stops that run (it fails), and the slot gets a new holder for the next run', async () => {
    const site = uniqueSiteName('slotdeath');
    const config = clientConfig(registry.url, await registry.createSite(site), endpointUrl, { concurrency: 1 });
    endpoint.state.go = false;
    try {
      const client = await startClient(config);
      const [holder] = await holders(site);
      const seen = endpoint.state.queries;
      const task = await researcher.post(PROBE, { hold: true }, [site]);
      while (endpoint.state.queries === seen) await once(endpoint.state.events, 'query');
      await docker().getContainer(holder!.Id).kill();
      const run = (await researcher.waitDone(task.id)).runs[0]!;
      expect(run.status).toBe('failed');
      expect(run.reason).toMatch(/exit code 137/);
      endpoint.state.go = true;
      const next = (await researcher.waitDone((await researcher.post(PROBE, {}, [site])).id)).runs[0]!;
      expect(next.status).toBe('completed');
      const now = await holders(site);
      expect(now.filter((h) => h.State === 'running')).toHaveLength(1);
      expect(now.map((h) => h.Id)).not.toContain(holder!.Id);
      await client.close();
    } finally {
      endpoint.state.go = true;
      await cleanupSite(site);
    }
  });

  it('a holder still used by a run survives a client restart, is found again and kept for that run; the rest are recreated', async () => {
    const site = uniqueSiteName('slotrestart');
    const config = clientConfig(registry.url, await registry.createSite(site), endpointUrl, { concurrency: 2 });
    endpoint.state.go = false;
    try {
      let client = await startClient(config);
      expect(await holders(site)).toHaveLength(2);
      const seen = endpoint.state.queries;
      const task = await researcher.post(PROBE, { hold: true }, [site]);
      while (endpoint.state.queries === seen) await once(endpoint.state.events, 'query');
      await client.close();
      // The run's container still runs in its slot: that holder (and the network) stay, the free one goes.
      const kept = await holders(site);
      expect(kept).toHaveLength(1);
      client = await startClient(config);
      const after = await holders(site);
      expect(after).toHaveLength(2);
      expect(after.map((h) => h.Id)).toContain(kept[0]!.Id);
      endpoint.state.go = true;
      const run = (await researcher.waitDone(task.id)).runs[0]!;
      expect(run.status).toBe('completed');
      const report = JSON.parse(await researcher.file(run.id, 'report.json'));
      expect(report.ip).toBe(Object.values(kept[0]!.NetworkSettings.Networks)[0]!.IPAddress);
      // The adopted slot was freed when the run ended: two more runs at once both get a slot.
      const [t1, t2] = [await researcher.post(PROBE, {}, [site]), await researcher.post(PROBE, {}, [site])];
      const runs = [(await researcher.waitDone(t1.id)).runs[0]!, (await researcher.waitDone(t2.id)).runs[0]!];
      expect(runs.map((r) => r.status)).toEqual(['completed', 'completed']);
      expect(await holders(site)).toHaveLength(2);
      await client.close();
      expect(await holders(site)).toEqual([]);
    } finally {
      endpoint.state.go = true;
      await cleanupSite(site);
    }
  });
});
