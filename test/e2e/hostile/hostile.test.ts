import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import { EventEmitter, once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerEngine } from '../../../client/container-engine.js';
import { prepareContainerNetworking } from '../../../client/container-network.js';
import { SiteRegistryApi } from '../../../client/registry-api.js';
import { RunExecutor } from '../../../client/run-executor.js';
import { RunWorkspace } from '../../../client/run-workspace.js';
import type { SiteClient } from '../../../client/site-client.js';
import { silentLogger } from '../../../shared/logger.js';
import { BASE_IMAGE, buildAndPushImage, docker, DOCKER_SOCKET, removeContainersByLabel } from '../../helpers/docker.js';
import { startTestRegistry, type TestRegistry } from '../../helpers/registry-fixture.js';
import { cleanupSite, clientConfig, E2E_REPO, Researcher, startClient, uniqueSiteName } from '../site-harness.js';

/*
 * The hostile suite (issue 14): algorithm images that attack the site running them, against the
 * real Docker engine, a real registry and a real site client in gateway mode. Each test names the
 * attack and checks the site held. DRILLS.md ("Hostile containers") lists them with their outcomes.
 */

const source = fs.readFileSync(path.join(__dirname, 'image', 'main.js'), 'utf8');
const HOSTILE = `${E2E_REPO}/hostile:1`;
const TEST_LABEL = 'org.pht.test';
const TEST_RUN = `hostile-${process.pid}`;

/**
 * The site's SPARQL endpoint for this suite: CONSTRUCT answers stream without end (so a container
 * can hang up in the middle), everything else gets a small result. Emits 'closed' whenever a
 * streamed answer's connection goes away.
 */
function startEndpoint() {
  const events = new EventEmitter();
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      if (/CONSTRUCT/i.test(decodeURIComponent(body))) {
        res.writeHead(200, { 'content-type': 'application/n-triples' });
        const timer = setInterval(() => res.write(`<urn:s> <urn:p> "${'x'.repeat(4000)}" .\n`), 2);
        res.on('close', () => {
          clearInterval(timer);
          events.emit('closed');
        });
        return;
      }
      res.writeHead(200, { 'content-type': 'application/sparql-results+json' });
      res.end('{"head":{"vars":[]},"results":{"bindings":[]}}');
    });
  });
  return { server, events };
}

function auditLines(file: string): any[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

/** Waits for audit lines (written asynchronously by the client's logger) by watching the file. */
async function waitForAudit(file: string, match: (lines: any[]) => boolean, seconds = 20): Promise<any[]> {
  const until = Date.now() + seconds * 1000;
  const watcher = fs.watch(path.dirname(file));
  try {
    for (;;) {
      const lines = auditLines(file);
      if (match(lines)) return lines;
      if (Date.now() > until)
        throw new Error(`audit log never matched; last lines: ${JSON.stringify(lines.slice(-5))}`);
      await Promise.race([once(watcher, 'change'), new Promise((r) => setTimeout(r, 500))]);
    }
  } finally {
    watcher.close();
  }
}

/** Resolves once `dir` is empty (the client removes a workspace just after reporting its run). */
async function untilEmpty(dir: string, seconds = 20): Promise<void> {
  const until = Date.now() + seconds * 1000;
  const watcher = fs.watch(dir);
  try {
    while (fs.readdirSync(dir).length > 0) {
      if (Date.now() > until) throw new Error(`${dir} still holds ${fs.readdirSync(dir).join(', ')}`);
      await Promise.race([once(watcher, 'change'), new Promise((r) => setTimeout(r, 500))]);
    }
  } finally {
    watcher.close();
  }
}

function openDescriptors(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

describe('hostile containers against a site in gateway mode', () => {
  let registry: TestRegistry;
  let researcher: Researcher;
  let site: string;
  let client: SiteClient;
  let workDir: string;
  let auditFile: string;
  let endpoint: ReturnType<typeof startEndpoint>;

  beforeAll(async () => {
    registry = await startTestRegistry();
    researcher = new Researcher(registry, await registry.createUser('mallory-watcher'));
    endpoint = startEndpoint();
    await new Promise<void>((resolve) => endpoint.server.listen(0, '127.0.0.1', resolve));
    const endpointUrl = `http://127.0.0.1:${(endpoint.server.address() as { port: number }).port}/sparql`;
    await buildAndPushImage(
      HOSTILE,
      { 'main.js': source },
      { cmd: ['/app/main.js'], labels: { [TEST_LABEL]: TEST_RUN } },
    );
    site = uniqueSiteName('hostile');
    const config = clientConfig(registry.url, await registry.createSite(site), endpointUrl, {
      limits: { timeout: '90s', memoryMb: 256, outputBytes: 10 * 1024 * 1024, outputFiles: 1000 },
      gateway: { maxConnectionsPerRun: 16, maxConnections: 64 },
    });
    workDir = config.workDir;
    auditFile = config.auditLog;
    client = await startClient(config);
  });

  afterAll(async () => {
    await client?.close();
    await cleanupSite(site);
    endpoint?.server.closeAllConnections();
    endpoint?.server.close();
    await registry?.destroy();
  });

  async function runHostile(config: Record<string, unknown>, maxSeconds = 90) {
    const task = await researcher.post(HOSTILE, config, [site]);
    const done = await researcher.waitDone(task.id, maxSeconds);
    return { task: done, run: done.runs[0]! };
  }

  it('a path longer than PATH_MAX (16 nested 255-character folders) is skipped with a reason; the run ends and frees its slot', async () => {
    const { run } = await runHostile({ mode: 'deep-path' }, 60);
    expect(run.status).toBe('completed');
    expect((await researcher.files(run.id)).map((f) => f.name)).toEqual(['result.json']);
    const lines = await waitForAudit(auditFile, (l) =>
      l.some((x) => x.event === 'output_skipped' && x.runId === run.id),
    );
    expect(lines.find((x) => x.event === 'output_skipped' && x.runId === run.id).examples[0]).toMatch(
      /path longer than 1024 characters/,
    );
    // The site's only slot (concurrency 1) is free: the next run goes through.
    expect((await runHostile({ mode: 'exec-output' })).run.status).toBe('completed');
    await untilEmpty(path.join(workDir, 'runs'));
  });

  it('500 MB written to the progress folder stop at the kernel-enforced disk limit and fail the run', async () => {
    const { run } = await runHostile({ mode: 'fill-progress' });
    expect(run.status).toBe('failed');
    expect(run.reason).toMatch(/disk limit/);
    const stopped = /stopped after ([0-9]+) bytes: ENOSPC/.exec(await researcher.log(run.id));
    expect(stopped).not.toBeNull();
    expect(Number(stopped![1])).toBeLessThan(40 * 1024 * 1024);
  });

  it('300,000 empty files stop at the disk image’s inode limit and fail the run', async () => {
    const { run } = await runHostile({ mode: 'many-files', files: 300_000 });
    expect(run.status).toBe('failed');
    expect(run.reason).toMatch(/disk limit/);
    const outcome = JSON.parse(/\{"created".*\}/.exec(await researcher.log(run.id))![0]);
    expect(outcome.error).toBe('ENOSPC');
    expect(outcome.created).toBeLessThan(2 * 1000 + 64);
  });

  it('a file planted in /pht/output cannot be executed (noexec)', async () => {
    const { run } = await runHostile({ mode: 'exec-output' });
    expect(run.status).toBe('completed');
    expect(JSON.parse(await researcher.file(run.id, 'report.json'))).toEqual({ exec: 'EACCES' });
  });

  it('thousands of connections to the gateway are capped per container; the client’s descriptors stay bounded', async () => {
    const before = openDescriptors();
    const task = await researcher.post(HOSTILE, { mode: 'connections', connections: 3000, holdMs: 3000 }, [site]);
    // While the container holds every connection it could open:
    for (;;) {
      const view = await researcher.call('GET', `/tasks/${task.id}`);
      const progress = view.json.runs[0].progress;
      if (progress?.message === 'holding') break;
      if (['completed', 'failed'].includes(view.json.runs[0].status)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(openDescriptors() - before).toBeLessThan(16 + 40);
    const done = await researcher.waitDone(task.id);
    expect(done.runs[0]!.status).toBe('completed');
    const report = JSON.parse(await researcher.file(done.runs[0]!.id, 'report.json'));
    expect(report.stillOpen).toBeLessThanOrEqual(16);
  });

  it('queries are audited on arrival; hanging up aborts the upstream query; SERVICE is refused', async () => {
    let closed = 0;
    const allClosed = new Promise<void>((resolve) =>
      endpoint.events.on('closed', () => {
        if (++closed === 3) resolve();
      }),
    );
    const { run } = await runHostile({ mode: 'sparql-hangup', queries: 3 });
    expect(run.status).toBe('completed');
    expect(JSON.parse(await researcher.file(run.id, 'report.json')).service).toBe(403);
    // The endpoint saw each of the three streamed answers' connections close: no CLOSE-WAIT.
    await allClosed;
    const lines = await waitForAudit(
      auditFile,
      (l) => l.filter((x) => x.event === 'sparql_query' && x.runId === run.id).length >= 4,
    );
    const mine = lines.filter((x) => x.runId === run.id);
    expect(mine.filter((x) => x.event === 'sparql_query_received')).toHaveLength(4);
    expect(
      mine
        .filter((x) => x.event === 'sparql_query')
        .map((x) => x.outcome)
        .sort(),
    ).toEqual(['aborted', 'aborted', 'aborted', 'refused']);
  });

  it('no name lookup leaves the machine: a resolver on the gateway address sees nothing (with a positive control)', async () => {
    const network = await new DockerEngine(DOCKER_SOCKET).inspectNetwork(`pht-gw-${site}`);
    const gatewayIp = network!.gatewayIp!;
    const seen: string[] = [];
    const resolver = dgram.createSocket('udp4');
    resolver.on('message', (m) => seen.push(m.toString('latin1')));
    await new Promise<void>((resolve) => resolver.bind(53, gatewayIp, resolve));
    // Positive control: an internal network like the site's, without the site's firewall, whose
    // containers' resolver is this kind of listener: the engine forwards the name, and we see it.
    const controlNet = `pht-dnsctl-${process.pid}`;
    await docker().createNetwork({ Name: controlNet, Internal: true, Labels: { [TEST_LABEL]: TEST_RUN } });
    const control = dgram.createSocket('udp4');
    const controlSeen: string[] = [];
    control.on('message', (m) => controlSeen.push(m.toString('latin1')));
    try {
      const controlGw = ((await docker().getNetwork(controlNet).inspect()) as any).IPAM.Config[0].Gateway as string;
      await new Promise<void>((resolve) => control.bind(53, controlGw, resolve));
      const name = `leak${Date.now()}.example.com`;
      const container = await docker().createContainer({
        Image: BASE_IMAGE,
        Cmd: ['-e', `require('dns').promises.lookup('control.${name}').catch(() => {}).finally(() => process.exit(0))`],
        Labels: { [TEST_LABEL]: TEST_RUN },
        HostConfig: { NetworkMode: controlNet, Dns: [controlGw] },
      });
      await container.start();
      await container.wait();
      expect(controlSeen.some((q) => q.includes('leak'))).toBe(true);

      const { run } = await runHostile({ mode: 'dns', name, gatewayIp });
      expect(run.status).toBe('completed');
      const report = JSON.parse(await researcher.file(run.id, 'report.json'));
      expect(report.system).not.toMatch(/^[0-9.]+$/);
      expect(report.embedded).not.toBe('answered');
      expect(report.direct).toBe('no answer');
      expect(seen).toEqual([]);
      expect(controlSeen.filter((q) => /system|embedded|direct/.test(q))).toEqual([]);
    } finally {
      resolver.close();
      control.close();
      await removeContainersByLabel(TEST_LABEL, TEST_RUN);
      await docker()
        .getNetwork(controlNet)
        .remove()
        .catch(() => undefined);
    }
  });
});

describe('site networking is put in place at start, removed at stop, and fails closed', () => {
  let registry: TestRegistry;

  beforeAll(async () => {
    registry = await startTestRegistry();
    await buildAndPushImage(
      HOSTILE,
      { 'main.js': source },
      { cmd: ['/app/main.js'], labels: { [TEST_LABEL]: TEST_RUN } },
    );
  });

  afterAll(async () => {
    await registry?.destroy();
  });

  function firewallRules(networkName: string): string[] {
    return execFileSync('iptables', ['-w', '-S', 'INPUT'])
      .toString()
      .split('\n')
      .filter((l) => l.includes(`--comment pht-${networkName}`));
  }

  it('a cleanly stopped client leaves no gateway network and no firewall rules; a new start recreates them', async () => {
    const site = uniqueSiteName('lifecycle');
    const config = clientConfig(registry.url, await registry.createSite(site), 'http://127.0.0.1:1/sparql');
    const engine = new DockerEngine(DOCKER_SOCKET);
    try {
      for (let round = 0; round < 2; round++) {
        const client = await startClient(config);
        expect(await engine.inspectNetwork(`pht-gw-${site}`)).not.toBeNull();
        expect(firewallRules(`pht-gw-${site}`)).toHaveLength(2);
        await client.close();
        expect(await engine.inspectNetwork(`pht-gw-${site}`)).toBeNull();
        expect(firewallRules(`pht-gw-${site}`)).toEqual([]);
      }
    } finally {
      await cleanupSite(site);
    }
  });

  it('without its firewall rules, gateway mode runs no container and says why; fallbackToNone runs with no network, loudly', async () => {
    const site = uniqueSiteName('nofw');
    const key = await registry.createSite(site);
    const researcher = new Researcher(registry, await registry.createUser(`r-${site}`));
    const engine = new DockerEngine(DOCKER_SOCKET);
    const auditEntries: any[] = [];
    const audit = silentLogger();
    const capture = (level: string) => (message: string, meta: object) => {
      auditEntries.push({ level, message, ...meta });
      return audit;
    };
    Object.assign(audit, { error: capture('error'), warn: capture('warn'), info: capture('info') });
    const api = new SiteRegistryApi(registry.url, key);
    try {
      for (const fallbackToNone of [false, true]) {
        const config = clientConfig(registry.url, key, 'http://127.0.0.1:1/sparql', {
          network: { mode: 'gateway', fallbackToNone },
        });
        const networking = await prepareContainerNetworking({
          engine,
          config,
          site,
          audit,
          logger: silentLogger(),
          iptables: '/nonexistent/iptables',
        });
        try {
          const executor = new RunExecutor({
            api,
            engine,
            config,
            site,
            networking,
            logger: silentLogger(),
            audit,
            shutdown: new AbortController().signal,
          });
          const task = await researcher.post(HOSTILE, { mode: 'exec-output' }, [site]);
          const claimed = (await api.claimNext(5))!;
          await executor.execute(RunWorkspace.create(config.workDir, site, claimed));
          const run = (await researcher.waitDone(task.id)).runs[0]!;
          if (!fallbackToNone) {
            expect(run.status).toBe('failed');
            expect(run.reason).toMatch(/firewall rules .* are not in place/);
            expect(auditEntries.some((e) => e.event === 'firewall_missing')).toBe(true);
          } else {
            expect(networking.networkMode).toBe('none');
            expect(run.status).toBe('completed');
            expect(auditEntries.some((e) => e.event === 'firewall_fallback_none' && e.level === 'error')).toBe(true);
          }
        } finally {
          await networking.close();
        }
      }
      expect(await engine.inspectNetwork(`pht-gw-${site}`)).toBeNull();
    } finally {
      await api.close();
      await cleanupSite(site);
    }
  });
});
