import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startSparqlServer, type RunningSparqlServer } from '../../demo/sparql-server.js';
import { buildAndPushImage, docker } from '../helpers/docker.js';
import { startTestRegistry, type TestRegistry } from '../helpers/registry-fixture.js';
import { cleanupSite, E2E_REPO, Researcher, uniqueSiteName } from './site-harness.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

const ROOT = path.join(__dirname, '..', '..');
const PROBE = `${E2E_REPO}/probe:1`;
const probeSource = fs.readFileSync(path.join(__dirname, 'images', 'probe', 'main.js'), 'utf8');

/** `node client` as a hospital runs it: a separate process we can SIGKILL. */
class ClientProcess {
  child: ChildProcess | null = null;
  output = '';
  constructor(readonly configFile: string) {}

  start(): void {
    this.child = spawn(process.execPath, ['client', '--config', this.configFile], {
      cwd: ROOT,
      env: { ...process.env, PHT_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout!.on('data', (d: Buffer) => (this.output += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.output += d.toString()));
  }

  /** Resolves once the output written after `offset` contains `text` (rejects if the process ends first). */
  outputAfter(offset: number, text: string): Promise<void> {
    const child = this.child!;
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!this.output.slice(offset).includes(text)) return;
        child.stderr!.off('data', check);
        child.off('exit', onExit);
        resolve();
      };
      const onExit = () => reject(new Error(`client exited before writing "${text}"`));
      child.stderr!.on('data', check);
      child.once('exit', onExit);
      check();
    });
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill(signal);
    });
  }
}

/** Waits until the run's container is running (the client got past pull and create). */
async function containerRunning(site: string, runId: number): Promise<void> {
  const until = Date.now() + 60_000;
  while (Date.now() < until) {
    const [c] = await docker().listContainers({ filters: { label: runLabels(site, runId), status: ['running'] } });
    if (c) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`container of run ${runId} never ran`);
}

/** Run ids repeat across registries (and other test runs share the engine): a run is its site and id. */
function runLabels(site: string, runId: number): string[] {
  return [`org.pht.site=${site}`, `org.pht.run-id=${runId}`];
}

async function containerStarts(site: string, runId: number, since: number): Promise<number> {
  const stream = (await docker().getEvents({
    since: Math.floor(since / 1000) - 1,
    until: Math.floor(Date.now() / 1000) + 1,
    filters: { type: ['container'], event: ['start'], label: runLabels(site, runId) },
  })) as unknown as NodeJS.ReadableStream;
  let text = '';
  for await (const chunk of stream) text += chunk.toString();
  return text.split('\n').filter((l) => l.trim()).length;
}

describe('site client killed and restarted', () => {
  let registry: TestRegistry;
  let sparql: RunningSparqlServer;
  let researcher: Researcher;
  let site: string;
  let client: ClientProcess;
  let workDir: string;

  beforeAll(async () => {
    registry = await startTestRegistry();
    sparql = await startSparqlServer({ host: '127.0.0.1', turtle: '<urn:a> <urn:b> 1 .' });
    researcher = new Researcher(registry, await registry.createUser('rob'));
    site = uniqueSiteName('restart');
    await buildAndPushImage(PROBE, { 'main.js': probeSource }, { cmd: ['/app/main.js'] });
    workDir = makeTempDir('pht-client-restart-');
    const configFile = path.join(workDir, 'config.json');
    fs.writeFileSync(
      configFile,
      JSON.stringify({
        registryUrl: registry.url,
        apiKey: await registry.createSite(site),
        sparqlEndpoint: sparql.url,
        allowedImages: [`${E2E_REPO.replace(/\./g, '\\.')}/.*`],
        workDir: path.join(workDir, 'work'),
        poll: { longPollSeconds: 5, cancelCheck: '500ms', maxBackoff: '1s' },
      }),
    );
    client = new ClientProcess(configFile);
  });

  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail')
      fs.writeFileSync(path.join(os.tmpdir(), `pht-client-restart-${ctx.task.id}.log`), client.output);
  });

  afterAll(async () => {
    await client?.kill('SIGTERM');
    await cleanupSite(site);
    await sparql?.close();
    await registry?.destroy();
    fs.rmSync(workDir, { recursive: true, force: true });
  });

  it('follows the same container after a SIGKILL and ends the run exactly once', async () => {
    const since = Date.now();
    client.start();
    const task = await researcher.post(PROBE, { mode: 'sleep', ms: 4000 }, [site]);
    await containerRunning(site, task.runs[0]!.id);
    await client.kill('SIGKILL');
    client.start();
    const done = await researcher.waitDone(task.id);
    const run = done.runs[0]!;
    expect(run.status).toBe('completed');
    expect(run.attempt).toBe(1);
    expect(await researcher.file(run.id, 'slept.txt')).toBe('4000');
    expect(await containerStarts(site, run.id, since)).toBe(1);
    expect(client.output).toContain('following a container found after a restart');
  });

  it('delivers a result that finished while both the client and the registry were down', async () => {
    const since = Date.now();
    const task = await researcher.post(PROBE, { mode: 'sleep', ms: 1500 }, [site]);
    await containerRunning(site, task.runs[0]!.id);
    await client.kill('SIGKILL');
    // Let the container end while nobody watches, then take the registry away too.
    const [c] = await docker().listContainers({
      all: true,
      filters: { label: runLabels(site, task.runs[0]!.id) },
    });
    if (c) await docker().getContainer(c.Id).wait();
    await registry.close();
    const mark = client.output.length;
    client.start();
    // The client is up and has found the registry gone before the registry comes back.
    await client.outputAfter(mark, 'registry unavailable; will keep trying');
    registry = await registry.restart();
    (researcher as { registry: TestRegistry }).registry = registry;
    const done = await researcher.waitDone(task.id);
    expect(done.runs[0]!.status).toBe('completed');
    expect(await researcher.file(done.runs[0]!.id, 'slept.txt')).toBe('1500');
    expect(await containerStarts(site, done.runs[0]!.id, since)).toBe(1);
  });
});
