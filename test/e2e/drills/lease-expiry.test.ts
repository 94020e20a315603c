import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Task } from '../../../shared/types.js';
import {
  buildDrillImage,
  cleanupSites,
  ContainerStartRecorder,
  createDrillSite,
  drillDir,
  DrillResearcher,
  expectedSha256,
  freePort,
  leftoverContainers,
  leftoverWorkspaces,
  MasterProcess,
  sleep,
  uniqueName,
  type DrillConfig,
  type DrillSite,
} from './drill-harness.js';

/**
 * Fault drill 5: the network between a site and the registry holds the site's "start" of a run
 * for longer than the run's lease (a partition, a stuck proxy). The registry puts the run back in
 * the queue and hands it out again, to the same site, while that site still works on it. The run
 * must still be executed once and its result delivered intact.
 */

const UNUSED_SPARQL = 'http://127.0.0.1:9/sparql';
const LEASE_MS = 3000;

/**
 * A pass-through proxy between the site client and the registry that can hold back requests
 * matching a rule for a while before forwarding them.
 */
class StallingProxy {
  private readonly server: http.Server;
  /** Requests matching `match` wait until `release` resolves. */
  hold: { match: (method: string, url: string) => boolean; release: Promise<void> } | null = null;
  held: string[] = [];

  constructor(private readonly target: number) {
    this.server = http.createServer((req, res) => void this.forward(req, res));
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as { port: number }).port;
  }

  private async forward(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const rule = this.hold;
    if (rule && rule.match(req.method ?? '', req.url ?? '')) {
      this.held.push(`${req.method} ${req.url}`);
      await rule.release;
    }
    const upstream = http.request(
      { host: '127.0.0.1', port: this.target, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

describe('fault drill: a run whose start is held up longer than its lease', () => {
  let dir: string;
  let master: MasterProcess;
  let proxy: StallingProxy;
  let site: DrillSite;
  let researcher: DrillResearcher;
  let image: string;
  let starts: ContainerStartRecorder | undefined;
  let passed = false;

  beforeAll(async () => {
    dir = drillDir('lease-expiry');
    const configFile = path.join(dir, 'master.json');
    fs.writeFileSync(configFile, JSON.stringify({ lease: `${LEASE_MS}ms`, sweepInterval: '200ms' }));
    master = new MasterProcess(await freePort(), path.join(dir, 'data'), path.join(dir, 'master.log'), configFile);
    await master.startReady();
    proxy = new StallingProxy(master.port);
    const proxyPort = await proxy.listen();
    image = await buildDrillImage();
    researcher = new DrillResearcher(master.url, await master.createUser('driller'));
    // The client talks to the registry through the proxy.
    site = await createDrillSite(dir, master, uniqueName('lease'), UNUSED_SPARQL, 2, {
      registryUrl: `http://127.0.0.1:${proxyPort}`,
    });
    starts = await ContainerStartRecorder.listen();
    site.client.start();
  });

  afterAll(async () => {
    await starts?.close();
    await site?.client.close();
    await proxy?.close();
    await master?.close();
    if (site) await cleanupSites([site]);
    if (passed) fs.rmSync(dir, { recursive: true, force: true });
    else if (dir) console.log(`lease-expiry drill: logs and state kept in ${dir}`);
  });

  // Found by this drill (fixed in cb4bcff): the client accepted the second hand-out of a run it was
  // still starting and executed it twice in one workspace; the execution that only followed the
  // container had no imageId in its record, skipped the upload and reported "completed" with no
  // files. The result was lost.
  it('runs the container once and delivers its files although the run was handed out twice', async () => {
    // Hold the first start until a second after the run, requeued by the sweep, was handed out again.
    let release!: () => void;
    let startsSeen = 0;
    const isStart = (method: string, url: string) => method === 'POST' && /\/runs\/[0-9]+\/start$/.test(url);
    proxy.hold = {
      match: (method, url) => isStart(method, url) && ++startsSeen === 1,
      release: new Promise<void>((r) => (release = r)),
    };
    master.onLog((line) => {
      if (line.message === 'run assigned' && Number(line.attempt) === 2) setTimeout(release, 1000);
    });
    let reports = 0;
    site.client.onLog((line) => {
      if (line.message === 'run reported') reports++;
    });
    const config: DrillConfig = {
      seed: `lease-${Date.now()}`,
      sleepMs: 1500,
      files: [{ name: 'result.bin', bytes: 256 * 1024 }],
    };
    const task = (await researcher.call('POST', '/tasks', { image, config, sites: [site.name] })).json as Task;
    const runId = task.runs[0]!.id;
    const until = Date.now() + 30_000;
    while (proxy.held.length === 0 && Date.now() < until) await sleep(100);
    expect(proxy.held.length).toBeGreaterThan(0);

    const done = await researcher.waitDone(task.id, 120);
    await starts!.close();
    const run = done.runs[0]!;
    console.log(
      `lease-expiry drill: run ${runId} ${run.status} attempt ${run.attempt}; held ${JSON.stringify(proxy.held)}; container starts ${starts!.count(site.name, runId)}`,
    );
    expect.soft(run.status).toBe('completed');
    expect.soft(starts!.count(site.name, runId), 'container starts').toBe(1);
    expect
      .soft((await researcher.call('GET', `/runs/${runId}/files`)).json)
      .toEqual([
        { name: 'result.bin', size: 256 * 1024, sha256: expectedSha256(config.seed, runId, config.files[0]!) },
      ]);
    // Wait for the client to settle before looking at what it left.
    await sleep(3000);
    expect.soft(reports, 'times the site reported the run').toBe(1);
    expect.soft(await leftoverContainers(site.name)).toEqual([]);
    expect.soft(await leftoverWorkspaces(site.workDir)).toEqual([]);
    passed = true;
  }, 180_000);
});
