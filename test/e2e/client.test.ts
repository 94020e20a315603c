import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SiteClient } from '../../client/site-client.js';
import { startSparqlServer, type RunningSparqlServer } from '../../demo/sparql-server.js';
import { buildAndPushImage, containersLeft, containersMade, deleteLocalImage, docker } from '../helpers/docker.js';
import { startTestRegistry, type TestRegistry } from '../helpers/registry-fixture.js';
import { cleanupSite, clientConfig, E2E_REPO, Researcher, startClient, uniqueSiteName } from './site-harness.js';

const probeSource = fs.readFileSync(path.join(__dirname, 'images', 'probe', 'main.js'), 'utf8');
const PROBE = `${E2E_REPO}/probe:1`;

describe('site client against the real Docker engine', () => {
  let registry: TestRegistry;
  let sparql: RunningSparqlServer;
  let researcher: Researcher;
  let site: string;
  let strictSite: string;
  let client: SiteClient;
  let strictClient: SiteClient;
  let hostService: http.Server;
  let hostServicePort: number;
  let clientWorkDir: string;

  beforeAll(async () => {
    registry = await startTestRegistry();
    sparql = await startSparqlServer({
      host: '127.0.0.1',
      allowUpdate: true,
      turtle: '<urn:p1> <urn:age> 40 . <urn:p2> <urn:age> 50 .',
    });
    researcher = new Researcher(registry, await registry.createUser('rita'));
    site = uniqueSiteName();
    strictSite = uniqueSiteName('strict');
    await buildAndPushImage(PROBE, { 'main.js': probeSource }, { cmd: ['/app/main.js'] });
    const config = clientConfig(registry.url, await registry.createSite(site), sparql.url);
    clientWorkDir = config.workDir;
    client = await startClient(config);
    strictClient = await startClient(
      clientConfig(registry.url, await registry.createSite(strictSite), sparql.url, {
        limits: { timeout: '3s', outputBytes: 3 * 1024 * 1024, memoryMb: 128 },
        network: { mode: 'none' },
      }),
    );
    // A service on all host addresses: what a container must not reach through the gateway IP.
    hostService = http.createServer((_req, res) => res.end('host secret\n'));
    await new Promise<void>((resolve) => hostService.listen(0, '0.0.0.0', resolve));
    hostServicePort = (hostService.address() as { port: number }).port;
  });

  afterAll(async () => {
    await client?.close();
    await strictClient?.close();
    await cleanupSite(site);
    await cleanupSite(strictSite);
    hostService?.close();
    await sparql?.close();
    await registry?.destroy();
  });

  it('runs an allowed image and sends back its output files, logs, progress and digest', async () => {
    // A config crafted to look like shell, flags and environment is only ever data.
    const hostile = {
      answer: 42,
      shell: '$(touch /tmp/pht-pwned); `id` && rm -rf /',
      flags: '--volume=/:/host --privileged',
      env: 'X=1\nSPARQL_ENDPOINT=http://evil',
    };
    const task = await researcher.post(PROBE, { mode: 'ok', echo: hostile }, [site]);
    const done = await researcher.waitDone(task.id);
    const run = done.runs[0]!;
    expect(done.status).toBe('completed');
    expect(run.exitCode).toBe(0);
    expect(run.digest).toMatch(new RegExp(`^${E2E_REPO.replace(/\./g, '\\.')}/probe@sha256:[a-f0-9]{64}$`));
    expect(run.progress).toEqual({ current: 2, total: 2, message: 'done' });
    const files = await researcher.files(run.id);
    // The symlink the container planted towards /etc/passwd is not sent.
    expect(files.map((f) => f.name)).toEqual(['nested/data.csv', 'result.json']);
    const result = JSON.parse(await researcher.file(run.id, 'result.json'));
    expect(result.echo).toEqual(hostile);
    expect(fs.existsSync('/tmp/pht-pwned')).toBe(false);
    expect(result.env).toEqual({
      taskId: String(task.id),
      runId: String(run.id),
      configFile: '/pht/input/config.json',
      outputDir: '/pht/output',
      progressFile: '/pht/progress/progress.jsonl',
      uid: 65534,
      gid: 65534,
    });
    expect(await researcher.file(run.id, 'nested/data.csv')).toBe('a,b\n1,2\n');
    const log = await researcher.log(run.id);
    expect(log).toContain('stdout line');
    expect(log).toContain('stderr line');
    expect(log).toContain('run ended: completed');
    // The site's audit log has the whole story of the run.
    const audit = fs
      .readFileSync(path.join(clientWorkDir, 'audit.log'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .filter((e) => e.runId === run.id);
    expect(audit.map((e) => e.event)).toEqual([
      'run_received',
      'image_decision',
      'run_started',
      'run_ended',
      // The symlink to /etc/passwd the probe planted.
      'output_skipped',
      'file_sent',
      'file_sent',
      'result_reported',
    ]);
    expect(audit.find((e) => e.event === 'run_started').digest).toBe(run.digest);
    expect(audit.find((e) => e.event === 'result_reported').bytesSent).toBe(files.reduce((n, f) => n + f.size, 0));
    // The container is removed after the run (just after it is reported).
    expect(await containersLeft([`org.pht.site=${site}`, `org.pht.run-id=${run.id}`])).toEqual([]);
  });

  it('refuses at the registry an image reference crafted to smuggle Docker flags', async () => {
    for (const image of [`${PROBE} -v /:/host`, `${PROBE}\n--privileged`, '--privileged', `${PROBE};id`]) {
      const res = await researcher.call('POST', '/tasks', { image, config: {}, sites: [site] });
      expect(res.status).toBe(400);
      expect(res.json.code).toBe('validation_failed');
    }
  });

  it('rejects an image outside the allowlist without pulling it', async () => {
    const foreign = `${E2E_REPO.replace('pht-e2e', 'not-allowed')}/probe:1`;
    await deleteLocalImage(foreign).catch(() => undefined);
    const task = await researcher.post(foreign, { mode: 'ok' }, [site]);
    const done = await researcher.waitDone(task.id);
    expect(done.runs[0]!.status).toBe('rejected');
    expect(done.runs[0]!.reason).toContain('matches no entry');
    expect(done.runs[0]!.reason).toContain(site);
    await expect(docker().getImage(foreign).inspect()).rejects.toMatchObject({ statusCode: 404 });
  });

  it('pulls a moved tag again and runs the new image', async () => {
    const tag = `${E2E_REPO}/moving:1`;
    const first = await buildAndPushImage(
      tag,
      { 'main.js': probeSource, 'version.txt': 'one' },
      { cmd: ['/app/main.js'] },
    );
    const runOne = (await researcher.waitDone((await researcher.post(tag, { mode: 'version' }, [site])).id)).runs[0]!;
    expect(await researcher.file(runOne.id, 'version.txt')).toBe('one');
    const second = await buildAndPushImage(
      tag,
      { 'main.js': probeSource, 'version.txt': 'two' },
      { cmd: ['/app/main.js'] },
    );
    expect(second).not.toBe(first);
    const runTwo = (await researcher.waitDone((await researcher.post(tag, { mode: 'version' }, [site])).id)).runs[0]!;
    expect(await researcher.file(runTwo.id, 'version.txt')).toBe('two');
    expect(runOne.digest).toBe(first);
    expect(runTwo.digest).toBe(second);
  });

  it('runs an image pinned by digest exactly', async () => {
    const pinned = await buildAndPushImage(
      `${E2E_REPO}/pinned:1`,
      { 'main.js': probeSource, 'version.txt': 'pinned' },
      { cmd: ['/app/main.js'] },
    );
    const run = (await researcher.waitDone((await researcher.post(pinned, { mode: 'version' }, [site])).id)).runs[0]!;
    expect(run.status).toBe('completed');
    expect(run.digest).toBe(pinned);
    // The client inspects a pinned image once; removed from the site since, it is pulled again.
    const { Id } = await docker().getImage(pinned).inspect();
    await docker().getImage(Id).remove({ force: true });
    const again = (await researcher.waitDone((await researcher.post(pinned, { mode: 'version' }, [site])).id)).runs[0]!;
    expect(again.status).toBe('completed');
    expect(again.digest).toBe(pinned);
  });

  it('reports a container that exits non-zero as failed, with its log', async () => {
    const run = (await researcher.waitDone((await researcher.post(PROBE, { mode: 'fail' }, [site])).id)).runs[0]!;
    expect(run.status).toBe('failed');
    expect(run.exitCode).toBe(3);
    expect(run.reason).toBe('exit code 3');
    expect(await researcher.log(run.id)).toContain('something went wrong on purpose');
  });

  it('fails a run whose image does not exist, with the reason', async () => {
    const run = (await researcher.waitDone((await researcher.post(`${E2E_REPO}/does-not-exist:1`, {}, [site])).id))
      .runs[0]!;
    expect(run.status).toBe('failed');
    expect(run.reason).toMatch(/pull of .*does-not-exist:1 failed|not found|manifest unknown/);
  });

  it('kills a container that runs past the site timeout and reports timed_out', async () => {
    const run = (
      await researcher.waitDone((await researcher.post(PROBE, { mode: 'sleep', ms: 60_000 }, [strictSite])).id)
    ).runs[0]!;
    expect(run.status).toBe('timed_out');
    expect(run.reason).toContain('3 s');
    expect(await researcher.log(run.id)).toContain('going to sleep');
  });

  it('stops a container that writes more than the output limit and sends none of it', async () => {
    const run = (
      await researcher.waitDone(
        (await researcher.post(PROBE, { mode: 'big-output', megabytes: 8, lingerMs: 10_000 }, [strictSite])).id,
      )
    ).runs[0]!;
    expect(run.status).toBe('failed');
    expect(run.reason).toMatch(/output limit|output exceeds/);
    expect(await researcher.files(run.id)).toEqual([]);
  });

  it('keeps a container inside its two mounts', async () => {
    const hostPath = path.join(registry.dataDir, 'escape-target.txt');
    const run = (await researcher.waitDone((await researcher.post(PROBE, { mode: 'escape', hostPath }, [site])).id))
      .runs[0]!;
    expect(run.status).toBe('failed');
    expect(run.exitCode).toBe(2);
    const attempts = JSON.parse(await researcher.file(run.id, 'attempts.json'));
    expect(attempts['/escape.txt']).toBe('EROFS');
    expect(attempts['/etc/escape.txt']).toBe('EROFS');
    expect(attempts['/app/escape.txt']).toBe('EROFS');
    expect(attempts['/pht/input/config.json']).toBe('EROFS');
    expect(['EROFS', 'ENOENT']).toContain(attempts[hostPath]);
    expect(attempts['/tmp/scratch.txt']).toBe('written');
    expect(fs.existsSync(hostPath)).toBe(false);
    expect(await researcher.log(run.id)).toContain('EROFS');
  });

  it('stops a cancelled run within seconds and reports it cancelled', async () => {
    const task = await researcher.post(PROBE, { mode: 'sleep', ms: 120_000 }, [site]);
    await researcher.waitForRunStatus(task.id, 'running');
    // Let the container get going, so the cancel hits a live container.
    const until = Date.now() + 30_000;
    while (!(await researcher.log(task.runs[0]!.id)).includes('going to sleep') && Date.now() < until)
      await new Promise((r) => setTimeout(r, 200));
    expect((await researcher.call('POST', `/tasks/${task.id}/cancel`)).status).toBe(200);
    const done = await researcher.waitDone(task.id, 60);
    expect(done.status).toBe('cancelled');
    expect(done.runs[0]!.status).toBe('cancelled');
    expect(done.runs[0]!.reason).toContain('cancelled');
    expect(await researcher.log(done.runs[0]!.id)).toContain('going to sleep');
  });

  it('lets a container query SPARQL through the gateway, refuses updates and blocks every other address', async () => {
    const info = await docker().getNetwork(`pht-gw-${site}`).inspect();
    const gatewayIp = String(info.IPAM?.Config?.[0]?.Gateway).split('/')[0]!;
    const targets = [
      { host: gatewayIp, port: hostServicePort },
      { host: '172.17.0.1', port: hostServicePort },
      { host: '127.0.0.1', port: registry.port },
      { host: '10.255.255.1', port: 80 },
    ];
    const run = (await researcher.waitDone((await researcher.post(PROBE, { mode: 'network', targets }, [site])).id))
      .runs[0]!;
    expect(run.status).toBe('completed');
    const report = JSON.parse(await researcher.file(run.id, 'network.json'));
    expect(report.select.status).toBe(200);
    expect(JSON.parse(report.select.body).results.bindings[0].n.value).toBe('2');
    expect(report.update.status).toBe(403);
    const audit = fs.readFileSync(path.join(clientWorkDir, 'audit.log'), 'utf8');
    expect(audit).toMatch(
      new RegExp(`"event":"sparql_query".*"runId":${run.id}|"runId":${run.id}.*"event":"sparql_query"`),
    );
    const refused = audit
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .filter((e) => e.runId === run.id && e.event === 'sparql_query' && e.outcome === 'refused');
    expect(refused.map((e) => e.reason)).toContain('SPARQL updates are not allowed at this site');
    expect(report.updateAsQuery.status).toBe(403);
    // Every target was tried and refused or unanswered (a missing key or a crashed probe fails here).
    const blocked = ['timeout', 'ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH'];
    expect(Object.keys(report.connections).sort()).toEqual(targets.map((t) => `${t.host}:${t.port}`).sort());
    for (const target of targets) expect(blocked).toContain(report.connections[`${target.host}:${target.port}`]);
    // The endpoint itself was never changed.
    const count = await fetch(
      `${sparql.url}?query=${encodeURIComponent('SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }')}`,
      {
        headers: { accept: 'application/sparql-results+json' },
      },
    );
    expect(((await count.json()) as any).results.bindings[0].n.value).toBe('2');
  });

  it('loses nothing when the registry stops during a run and comes back', async () => {
    const task = await researcher.post(PROBE, { mode: 'sleep', ms: 3000 }, [site]);
    await researcher.waitForRunStatus(task.id, 'running');
    await registry.close();
    // The container finishes while the registry is away; the client keeps the result.
    const [container] = await containersMade([`org.pht.site=${site}`, `org.pht.run-id=${task.runs[0]!.id}`]);
    expect(container).toBeDefined();
    await docker().getContainer(container!.Id).wait();
    registry = await registry.restart();
    (researcher as { registry: TestRegistry }).registry = registry;
    const done = await researcher.waitDone(task.id);
    expect(done.runs[0]!.status).toBe('completed');
    expect(await researcher.file(done.runs[0]!.id, 'slept.txt')).toBe('3000');
  });
});
