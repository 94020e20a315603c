import fs from 'node:fs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DockerUnavailableError, PermanentRunError } from '../../client/errors.js';
import { SiteRegistryApi } from '../../client/registry-api.js';
import { MAX_FAILED_ATTEMPTS, registryLabel, RunExecutor } from '../../client/run-executor.js';
import { RunWorkspace } from '../../client/run-workspace.js';
import { silentLogger } from '../../shared/logger.js';
import type { RunAssignment, Task } from '../../shared/types.js';
import { clientConfig } from '../e2e/site-harness.js';
import { startTestRegistry, type TestRegistry } from '../helpers/registry-fixture.js';
import { FakeEngine } from './fake-engine.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

const IMAGE = '127.0.0.1:5050/pht-e2e/fake:1';

/** A test registry with one researcher (its token) and one site (its key, and the site's API client). */
async function registryWithSite(
  user: string,
  site: string,
): Promise<{ registry: TestRegistry; token: string; siteKey: string; api: SiteRegistryApi }> {
  const registry = await startTestRegistry();
  const token = await registry.createUser(user);
  const siteKey = await registry.createSite(site);
  return { registry, token, siteKey, api: new SiteRegistryApi(registry.url, siteKey) };
}

async function closeRegistryWithSite(registry: TestRegistry, api: SiteRegistryApi): Promise<void> {
  await api.close();
  await registry.destroy();
}

/** A container made for the run of `ws` as its site client would label it (by an earlier process). */
function createRunContainer(
  engine: FakeEngine,
  ws: RunWorkspace,
  registryUrl: string,
  imageId: string,
): Promise<string> {
  return engine.create({
    name: ws.record.containerName,
    imageId,
    env: {},
    labels: {
      'org.pht.run-id': String(ws.record.runId),
      'org.pht.task-id': String(ws.record.taskId),
      'org.pht.registry': registryLabel(registryUrl),
    },
    user: '65534:65534',
    mounts: [{ host: ws.outputDir, container: '/pht/output', readOnly: false }],
    networkMode: 'none',
    memoryBytes: 1,
    nanoCpus: 1,
    pids: 1,
    tmpfsBytes: 1,
  });
}

/** Posts a one-site task as the researcher `token` and claims its run as the site behind `api`. */
async function postAndClaimAt(
  registryUrl: string,
  token: string,
  api: SiteRegistryApi,
  site: string,
): Promise<{ task: Task; run: RunAssignment }> {
  const res = await fetch(`${registryUrl}/api/v1/tasks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ image: IMAGE, config: {}, sites: [site] }),
  });
  const task = (await res.json()) as Task;
  const run = await api.claimNext(0);
  if (!run) throw new Error('nothing to claim');
  return { task, run };
}

describe('run executor at the Docker boundary (fake engine, real registry)', () => {
  let registry: TestRegistry;
  let token: string;
  let api: SiteRegistryApi;
  let engine: FakeEngine;
  let executor: RunExecutor;
  let workDir: string;

  beforeAll(async () => {
    ({ registry, token, api } = await registryWithSite('rae', 'fake-site'));
  });

  afterAll(() => closeRegistryWithSite(registry, api));

  beforeEach(() => {
    engine = new FakeEngine();
    const config = clientConfig(registry.url, 'pht_site_unused', 'http://127.0.0.1:1/sparql', {
      network: { mode: 'none' },
    });
    workDir = config.workDir;
    executor = new RunExecutor({
      api,
      engine,
      config,
      site: 'fake-site',
      networking: {
        networkMode: 'none',
        sparqlFor: () => ({ url: 'http://127.0.0.1:1/sparql', token: null, release: () => undefined }),
      },
      logger: silentLogger(),
      audit: silentLogger(),
      shutdown: new AbortController().signal,
    });
  });

  async function post(image = IMAGE): Promise<Task> {
    const res = await fetch(`${registry.url}/api/v1/tasks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ image, config: { a: 1 }, sites: ['fake-site'] }),
    });
    return (await res.json()) as Task;
  }

  async function claim(): Promise<RunAssignment> {
    const run = await api.claimNext(0);
    if (!run) throw new Error('nothing to claim');
    return run;
  }

  async function runOf(taskId: number) {
    const res = await fetch(`${registry.url}/api/v1/tasks/${taskId}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    return ((await res.json()) as Task).runs[0]!;
  }

  it("writes the run's state only where recovery needs it: claimed, the container's id, the outcome, reported", async () => {
    await post();
    const phases: string[] = [];
    const ws = RunWorkspace.create(workDir, 'fake-site', await claim(), 65534, 65534);
    const update = ws.update.bind(ws);
    ws.update = async (change) => {
      const saved = update(change);
      phases.push(ws.record.containerId ? `${ws.record.phase}+id` : ws.record.phase);
      await saved;
    };
    await executor.execute(ws);
    // After the first save (claimed, by create): three writes, each an fsync'd file.
    expect(phases).toEqual(['claimed+id', 'ended+id', 'reported+id']);
  });

  it('runs a claimed run to completion and removes its workspace', async () => {
    const task = await post();
    const ws = RunWorkspace.create(workDir, 'fake-site', await claim(), 65534, 65534);
    await executor.execute(ws);
    const run = await runOf(task.id);
    expect(run.status).toBe('completed');
    expect(run.digest).toBe(`127.0.0.1:5050/pht-e2e/fake@sha256:${'2'.repeat(64)}`);
    expect(engine.starts).toBe(1);
    expect(engine.containers.size).toBe(0);
    // Its output sat on a loop-mounted image, unmounted and deleted with the folder.
    expect(ws.record.disk).toBe('loop-image');
    expect(fs.existsSync(ws.dir)).toBe(false);
    expect(fs.readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(ws.dir);
  });

  it('runs with plain folders when the site opts out of the kernel-enforced disk limit', async () => {
    const config = clientConfig(registry.url, 'pht_site_unused', 'http://127.0.0.1:1/sparql', {
      network: { mode: 'none' },
      limits: { disk: 'unenforced' },
    });
    const plain = new RunExecutor({
      api,
      engine,
      config,
      site: 'fake-site',
      networking: { networkMode: 'none', sparqlFor: () => ({ url: 'http://x', token: null, release: () => {} }) },
      logger: silentLogger(),
      audit: silentLogger(),
      shutdown: new AbortController().signal,
    });
    const task = await post();
    const ws = RunWorkspace.create(config.workDir, 'fake-site', await claim(), 65534, 65534);
    await plain.execute(ws);
    expect((await runOf(task.id)).status).toBe('completed');
    expect(fs.existsSync(ws.dir)).toBe(false);
  });

  it('starts, exactly once, a container created just before a crash but never started', async () => {
    const task = await post();
    const assignment = await claim();
    await api.start(assignment.id);
    const ws = RunWorkspace.create(workDir, 'fake-site', assignment, 65534, 65534);
    await engine.pull(IMAGE);
    await ws.update({ phase: 'started', imageId: (await engine.inspectImage(IMAGE))!.id });
    await createRunContainer(engine, ws, registry.url, ws.record.imageId!);
    await executor.execute(ws);
    expect(engine.starts).toBe(1);
    expect((await runOf(task.id)).status).toBe('completed');
  });

  it('never adopts a container of another registry that happens to hold the same name', async () => {
    const task = await post();
    const assignment = await claim();
    await api.start(assignment.id);
    const ws = RunWorkspace.create(workDir, 'fake-site', assignment, 65534, 65534);
    await ws.update({ phase: 'started' });
    engine.behaviour = { ...engine.behaviour, durationMs: null };
    const staleId = await engine.create({
      name: ws.record.containerName,
      imageId: 'sha256:old',
      env: {},
      labels: {
        'org.pht.run-id': String(assignment.id),
        'org.pht.task-id': String(task.id),
        'org.pht.registry': registryLabel('http://old-registry:5000'),
      },
      user: '65534:65534',
      mounts: [{ host: ws.outputDir, container: '/pht/output', readOnly: false }],
      networkMode: 'none',
      memoryBytes: 1,
      nanoCpus: 1,
      pids: 1,
      tmpfsBytes: 1,
    });
    await engine.start(staleId);
    engine.behaviour = { ...engine.behaviour, durationMs: 10 };
    await executor.execute(ws);
    expect(engine.containers.has(staleId)).toBe(false);
    expect(engine.starts).toBe(2);
    expect((await runOf(task.id)).status).toBe('completed');
  });

  it('makes again a container created just before a crash whose id (and SPARQL token) the workspace never got, instead of starting it', async () => {
    const task = await post();
    const assignment = await claim();
    await api.start(assignment.id);
    const ws = RunWorkspace.create(workDir, 'fake-site', assignment, 65534, 65534);
    await ws.update({ phase: 'started' });
    // What the crashed client had made: this run's container, created, never started; the
    // workspace has no container id, so the token in its SPARQL URL is known to nobody.
    const orphanId = await engine.create({
      name: ws.record.containerName,
      imageId: 'sha256:x',
      env: { PHT_SPARQL_ENDPOINT: 'http://gateway/sparql/lost-token' },
      labels: {
        'org.pht.run-id': String(assignment.id),
        'org.pht.task-id': String(task.id),
        'org.pht.registry': registryLabel(registry.url),
      },
      user: '65534:65534',
      mounts: [],
      networkMode: 'none',
      memoryBytes: 1,
      nanoCpus: 1,
      pids: 1,
      tmpfsBytes: 1,
    });
    const started = engine.nextStart();
    await executor.execute(ws);
    expect(await started).not.toBe(orphanId);
    expect(engine.containers.has(orphanId)).toBe(false);
    expect(engine.starts).toBe(1);
    expect((await runOf(task.id)).status).toBe('completed');
  });

  it('continues a run the registry already counts as started when the crash came before the workspace knew', async () => {
    const task = await post();
    const assignment = await claim();
    const ws = RunWorkspace.create(workDir, 'fake-site', assignment, 65534, 65534);
    await api.start(assignment.id);
    await executor.execute(ws);
    expect(engine.starts).toBe(1);
    expect((await runOf(task.id)).status).toBe('completed');
  });

  it('retries while Docker is unavailable and then runs', async () => {
    const task = await post();
    engine.pullFailures = [new DockerUnavailableError('daemon restarting')];
    await executor.execute(RunWorkspace.create(workDir, 'fake-site', await claim(), 65534, 65534));
    expect(engine.pulls).toHaveLength(2);
    expect((await runOf(task.id)).status).toBe('completed');
  });

  it('fails the run with the reason when the image cannot be pulled', async () => {
    const task = await post();
    engine.pullFailures = [new PermanentRunError('pull of x failed: manifest unknown')];
    await executor.execute(RunWorkspace.create(workDir, 'fake-site', await claim(), 65534, 65534));
    const run = await runOf(task.id);
    expect(run.status).toBe('failed');
    expect(run.reason).toContain('manifest unknown');
    expect(engine.starts).toBe(0);
  });

  it('does not pull again a digest-pinned image that is present, even with pullPolicy "always"', async () => {
    const pinned = `127.0.0.1:5050/pht-e2e/fake@sha256:${'2'.repeat(64)}`;
    engine.images.set(pinned, {
      id: `sha256:${'1'.repeat(64)}`,
      repoDigests: [`127.0.0.1:5050/pht-e2e/fake@sha256:${'2'.repeat(64)}`],
    });
    const task = await post(pinned);
    await executor.execute(RunWorkspace.create(workDir, 'fake-site', await claim(), 65534, 65534));
    expect((await runOf(task.id)).status).toBe('completed');
    expect(engine.pulls).toEqual([]);
    // A tag can move: it is pulled every time.
    const tagged = await post();
    await executor.execute(RunWorkspace.create(workDir, 'fake-site', await claim(), 65534, 65534));
    expect((await runOf(tagged.id)).status).toBe('completed');
    expect(engine.pulls).toEqual([IMAGE]);
  });

  it('inspects a digest-pinned image once, and looks (and pulls) again when it has gone from the site', async () => {
    const pinned = `127.0.0.1:5050/pht-e2e/fake@sha256:${'2'.repeat(64)}`;
    engine.images.set(pinned, {
      id: `sha256:${'1'.repeat(64)}`,
      repoDigests: [`127.0.0.1:5050/pht-e2e/fake@sha256:${'2'.repeat(64)}`],
    });
    let inspects = 0;
    const inspectImage = engine.inspectImage.bind(engine);
    engine.inspectImage = (image) => {
      inspects++;
      return inspectImage(image);
    };
    // Like Docker: a container of an image that is not there cannot be created.
    const create = engine.create.bind(engine);
    engine.create = async (spec) => {
      if (![...engine.images.values()].some((i) => i.id === spec.imageId))
        throw new PermanentRunError(`cannot create the container: No such image: ${spec.imageId}`);
      return create(spec);
    };
    for (let i = 0; i < 2; i++) {
      const task = await post(pinned);
      await executor.execute(RunWorkspace.create(workDir, 'fake-site', await claim(), 65534, 65534));
      expect((await runOf(task.id)).status).toBe('completed');
    }
    expect(inspects).toBe(1);
    expect(engine.pulls).toEqual([]);
    engine.images.delete(pinned); // e.g. `docker rmi` by the site's operator
    const task = await post(pinned);
    await executor.execute(RunWorkspace.create(workDir, 'fake-site', await claim(), 65534, 65534));
    expect((await runOf(task.id)).status).toBe('completed');
    expect(engine.pulls).toEqual([pinned]);
  });

  it('rejects an image outside the allowlist without pulling it', async () => {
    const task = await post('127.0.0.1:5050/elsewhere/fake:1');
    await executor.execute(RunWorkspace.create(workDir, 'fake-site', await claim(), 65534, 65534));
    const run = await runOf(task.id);
    expect(run.status).toBe('rejected');
    expect(run.reason).toContain('refused by site fake-site');
    expect(engine.pulls).toEqual([]);
  });

  it('stops the container of a run cancelled at the registry', async () => {
    engine.behaviour = { ...engine.behaviour, durationMs: null };
    const task = await post();
    const started = engine.nextStart();
    const execution = executor.execute(RunWorkspace.create(workDir, 'fake-site', await claim(), 65534, 65534));
    await started; // the registry has the run as running before the container starts
    expect((await runOf(task.id)).status).toBe('running');
    await fetch(`${registry.url}/api/v1/tasks/${task.id}/cancel`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    });
    await execution;
    const run = await runOf(task.id);
    expect(run.status).toBe('cancelled');
    expect(run.exitCode).toBe(137);
  });

  it('reports a run whose output exceeds the site limit as failed and sends nothing', async () => {
    engine.behaviour = { ...engine.behaviour, files: { 'a.txt': 'x', 'b.txt': 'y' } };
    const config = clientConfig(registry.url, 'pht_site_unused', 'http://127.0.0.1:1/sparql', {
      network: { mode: 'none' },
      limits: { outputFiles: 1 },
    });
    const strict = new RunExecutor({
      api,
      engine,
      config,
      site: 'fake-site',
      networking: {
        networkMode: 'none',
        sparqlFor: () => ({ url: 'http://x', token: null, release: () => undefined }),
      },
      logger: silentLogger(),
      audit: silentLogger(),
      shutdown: new AbortController().signal,
    });
    const task = await post();
    await strict.execute(RunWorkspace.create(config.workDir, 'fake-site', await claim(), 65534, 65534));
    const run = await runOf(task.id);
    expect(run.status).toBe('failed');
    expect(run.reason).toContain('output exceeds');
    const files = await fetch(`${registry.url}/api/v1/runs/${run.id}/files`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(await files.json()).toEqual([]);
  });
});

describe('run executor: no run holds a slot forever', () => {
  let registry: TestRegistry;
  let token: string;
  let api: SiteRegistryApi;

  beforeAll(async () => {
    ({ registry, token, api } = await registryWithSite('rex', 'slot-site'));
  });

  afterAll(() => closeRegistryWithSite(registry, api));

  /** Gateway tokens handed out and not yet released. */
  const liveTokens = new Set<string>();
  let tokenCounter = 0;

  function executorWith(engine: FakeEngine) {
    const config = clientConfig(registry.url, 'pht_site_unused', 'http://127.0.0.1:1/sparql', {
      network: { mode: 'none' },
    });
    const executor = new RunExecutor({
      api,
      engine,
      config,
      site: 'slot-site',
      networking: {
        networkMode: 'none',
        sparqlFor: () => {
          const token = `token-${++tokenCounter}`;
          liveTokens.add(token);
          return { url: 'http://x', token, release: () => liveTokens.delete(token) };
        },
      },
      logger: silentLogger(),
      audit: silentLogger(),
      shutdown: new AbortController().signal,
    });
    return { executor, workDir: config.workDir };
  }

  const postAndClaim = () => postAndClaimAt(registry.url, token, api, 'slot-site');

  async function runOf(taskId: number) {
    const res = await fetch(`${registry.url}/api/v1/tasks/${taskId}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    return ((await res.json()) as Task).runs[0]!;
  }

  it('releases the SPARQL gateway token and removes the container when a created container fails to start', async () => {
    const engine = new FakeEngine();
    engine.startFailures = [new PermanentRunError('cannot start the container: OCI runtime create failed')];
    const { executor, workDir } = executorWith(engine);
    const { task, run } = await postAndClaim();
    await executor.execute(RunWorkspace.create(workDir, 'slot-site', run, 65534, 65534));
    const view = await runOf(task.id);
    expect(view.status).toBe('failed');
    expect(view.reason).toContain('OCI runtime create failed');
    expect(tokenCounter).toBeGreaterThan(0);
    expect(liveTokens.size).toBe(0);
    expect(engine.containers.size).toBe(0);
  });

  it('fails a run whose output cannot be collected, with the reason, and removes its workspace instead of throwing', async () => {
    const engine = new FakeEngine();
    // Stands for an output folder the client can never read (an I/O error, a hostile layout).
    engine.behaviour = {
      ...engine.behaviour,
      onExit: (output) => {
        fs.rmSync(output, { recursive: true });
        fs.writeFileSync(output, 'not a folder');
      },
    };
    const { executor, workDir } = executorWith(engine);
    const { task, run } = await postAndClaim();
    const ws = RunWorkspace.create(workDir, 'slot-site', run, 65534, 65534);
    await expect(executor.execute(ws)).resolves.toBeUndefined();
    const view = await runOf(task.id);
    expect(view.status).toBe('failed');
    // Where it is caught first (re-preparing the folders, or the walk) decides the code.
    expect(view.reason).toMatch(/could not deliver this run: .*(ENOTDIR|EEXIST)/);
    expect(fs.existsSync(ws.dir)).toBe(false);
  });

  it('frees the slot of a run retrying a transient error as soon as the researcher cancels it', async () => {
    const engine = new FakeEngine();
    engine.logsFailure = new DockerUnavailableError('cannot read the container log: the engine keeps failing');
    const { executor, workDir } = executorWith(engine);
    const { task, run } = await postAndClaim();
    const ws = RunWorkspace.create(workDir, 'slot-site', run, 65534, 65534);
    await expect(executor.execute(ws)).rejects.toThrow('the engine keeps failing');
    const cancel = await fetch(`${registry.url}/api/v1/tasks/${task.id}/cancel`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(cancel.status).toBe(200);
    await expect(executor.execute(ws)).resolves.toBeUndefined();
    expect((await runOf(task.id)).status).toBe('cancelled');
    expect(fs.existsSync(ws.dir)).toBe(false);
    expect(engine.containers.size).toBe(0);
  });

  it('fails a run whose steps keep failing with a transient error, counted across restarts, and removes its workspace', async () => {
    const engine = new FakeEngine();
    engine.logsFailure = new DockerUnavailableError('cannot read the container log: the engine keeps failing');
    const { executor, workDir } = executorWith(engine);
    const { task, run } = await postAndClaim();
    RunWorkspace.create(workDir, 'slot-site', run, 65534, 65534);
    let rejections = 0;
    for (let i = 0; i < MAX_FAILED_ATTEMPTS + 2; i++) {
      // Each attempt as a restarted client would make it: from the workspace on disk.
      const ws = RunWorkspace.loadAll(workDir).workspaces.find((w) => w.record.runId === run.id);
      if (!ws) break;
      try {
        await executor.execute(ws);
      } catch {
        rejections++;
      }
    }
    expect(rejections).toBe(MAX_FAILED_ATTEMPTS - 1);
    const view = await runOf(task.id);
    expect(view.status).toBe('failed');
    expect(view.reason).toContain('the engine keeps failing');
    expect(RunWorkspace.loadAll(workDir).workspaces).toEqual([]);
    expect(engine.containers.size).toBe(0);
  });
});

describe('run workspace', () => {
  it('writes a string config byte for byte and anything else as JSON', () => {
    const workDir = makeTempDir('pht-ws-');
    const base = { taskId: 1, image: IMAGE, attempt: 1 };
    const asString = RunWorkspace.create(workDir, 's', { ...base, id: 1, config: 'opaque-ciphertext==' }, 65534, 65534);
    expect(fs.readFileSync(asString.configFile, 'utf8')).toBe('opaque-ciphertext==');
    const asJson = RunWorkspace.create(workDir, 's', { ...base, id: 2, config: { k: [1, 2] } }, 65534, 65534);
    expect(JSON.parse(fs.readFileSync(asJson.configFile, 'utf8'))).toEqual({ k: [1, 2] });
    expect(RunWorkspace.loadAll(workDir).workspaces.map((w) => w.record.runId)).toEqual([1, 2]);
  });
});

describe("run executor: what stands on the researcher's path", () => {
  let registry: TestRegistry;
  let token: string;
  let api: SiteRegistryApi;
  let siteKey: string;

  beforeAll(async () => {
    ({ registry, token, siteKey, api } = await registryWithSite('rpa', 'path-site'));
  });

  afterAll(() => closeRegistryWithSite(registry, api));

  function executorWith(engine: FakeEngine, siteApi: SiteRegistryApi = api, onReported?: (runId: number) => void) {
    const config = clientConfig(registry.url, 'pht_site_unused', 'http://127.0.0.1:1/sparql', {
      network: { mode: 'none' },
    });
    const executor = new RunExecutor({
      api: siteApi,
      engine,
      config,
      site: 'path-site',
      networking: { networkMode: 'none', sparqlFor: () => ({ url: 'http://x', token: null, release: () => {} }) },
      logger: silentLogger(),
      audit: silentLogger(),
      shutdown: new AbortController().signal,
      ...(onReported ? { onReported } : {}),
    });
    return { executor, workDir: config.workDir };
  }

  async function researcher(method: string, url: string): Promise<Response> {
    return fetch(`${registry.url}/api/v1${url}`, { method, headers: { authorization: `Bearer ${token}` } });
  }

  const postAndClaim = () => postAndClaimAt(registry.url, token, api, 'path-site');

  async function statusOf(taskId: number): Promise<string> {
    return ((await (await researcher('GET', `/tasks/${taskId}`)).json()) as Task).runs[0]!.status;
  }

  /** A container of `run` made in the fake engine as a crashed client would have left it. */
  async function containerOf(engine: FakeEngine, ws: RunWorkspace): Promise<string> {
    await engine.pull(IMAGE);
    return createRunContainer(engine, ws, registry.url, (await engine.inspectImage(IMAGE))!.id);
  }

  it('reports the run before removing its container, and gives the slot back only once the container is gone', async () => {
    const engine = new FakeEngine();
    const events: string[] = [];
    let taskId = 0;
    const remove = engine.remove.bind(engine);
    engine.remove = async (id) => {
      events.push(`removed while ${await statusOf(taskId)}`);
      await remove(id);
    };
    const { executor, workDir } = executorWith(engine, api, () => events.push('slot given back'));
    const { task, run } = await postAndClaim();
    taskId = task.id;
    await executor.execute(RunWorkspace.create(workDir, 'path-site', run, 65534, 65534));
    expect(events).toEqual(['removed while completed', 'slot given back']);
    expect(engine.containers.size).toBe(0);
  });

  it('has the whole log at the registry, the end marker included, when it sends the finish', async () => {
    const engine = new FakeEngine();
    const seen: string[] = [];
    const siteApi = new SiteRegistryApi(registry.url, siteKey);
    const finish = siteApi.finish.bind(siteApi);
    siteApi.finish = async (runId, report, signal) => {
      seen.push(await (await researcher('GET', `/runs/${runId}/log`)).text());
      return finish(runId, report, signal);
    };
    const { executor, workDir } = executorWith(engine, siteApi);
    const { run } = await postAndClaim();
    await executor.execute(RunWorkspace.create(workDir, 'path-site', run, 65534, 65534));
    await siteApi.close();
    expect(seen).toHaveLength(1);
    expect(seen[0]).toContain('hello from the fake');
    expect(seen[0]).toContain('run ended: completed');
  });

  it('makes the container while the registry records the start, and starts it only once the registry has the start', async () => {
    const engine = new FakeEngine();
    const order: string[] = [];
    let created!: () => void;
    const createdSeen = new Promise<void>((resolve) => (created = resolve));
    const create = engine.create.bind(engine);
    engine.create = async (spec) => {
      order.push('create');
      const id = await create(spec);
      created();
      return id;
    };
    let taskId = 0;
    const start = engine.start.bind(engine);
    engine.start = async (id) => {
      order.push(`container start while ${await statusOf(taskId)}`);
      return start(id);
    };
    const siteApi = new SiteRegistryApi(registry.url, siteKey);
    const startRun = siteApi.start.bind(siteApi);
    siteApi.start = async (runId, signal) => {
      order.push('POST /start sent');
      const view = await startRun(runId, signal);
      // The answer is held until the container exists: a client that made the container only
      // after the answer would wait here for ever (and the test time out).
      await createdSeen;
      order.push('POST /start answered');
      return view;
    };
    const { executor, workDir } = executorWith(engine, siteApi);
    const { task, run } = await postAndClaim();
    taskId = task.id;
    await executor.execute(RunWorkspace.create(workDir, 'path-site', run, 65534, 65534));
    await siteApi.close();
    expect(order).toEqual(['POST /start sent', 'create', 'POST /start answered', 'container start while running']);
    expect(await statusOf(task.id)).toBe('completed');
  });

  it('removes, never starts, the container it made when the registry refuses the start', async () => {
    const engine = new FakeEngine();
    let creates = 0;
    const create = engine.create.bind(engine);
    engine.create = async (spec) => {
      creates++;
      return create(spec);
    };
    const { executor, workDir } = executorWith(engine);
    const { task, run } = await postAndClaim();
    expect((await researcher('POST', `/tasks/${task.id}/cancel`)).status).toBe(200);
    const ws = RunWorkspace.create(workDir, 'path-site', run, 65534, 65534);
    await executor.execute(ws);
    expect(creates).toBe(1);
    expect(engine.starts).toBe(0);
    expect(engine.containers.size).toBe(0);
    expect(fs.existsSync(ws.dir)).toBe(false);
  });

  it('removes on its next start the container of a run reported just before the client died', async () => {
    const engine = new FakeEngine();
    const { executor, workDir } = executorWith(engine);
    const { run } = await postAndClaim();
    const ws = RunWorkspace.create(workDir, 'path-site', run, 65534, 65534);
    const id = await containerOf(engine, ws);
    await api.start(run.id);
    await api.finish(run.id, { state: 'completed', exitCode: 0 });
    await ws.update({ phase: 'reported', containerId: id });
    const reloaded = RunWorkspace.loadAll(workDir).workspaces.find((w) => w.record.runId === run.id)!;
    await executor.execute(reloaded);
    expect(engine.containers.size).toBe(0);
    expect(fs.existsSync(ws.dir)).toBe(false);
  });

  it('follows, and never runs again, a container whose run the registry had finished before the client died in its ended save', async () => {
    const engine = new FakeEngine();
    const { executor, workDir } = executorWith(engine);
    const { task, run } = await postAndClaim();
    const ws = RunWorkspace.create(workDir, 'path-site', run, 65534, 65534);
    await ws.prepareDisk({ mode: 'unenforced', bytes: 1 << 20, inodes: 100, uid: 65534, gid: 65534 });
    const id = await containerOf(engine, ws);
    await api.start(run.id);
    await engine.start(id);
    await engine.wait(id);
    await api.finish(run.id, { state: 'completed', exitCode: 0 });
    // On disk: 'started' with the container's id; the 'ended' save never happened.
    await ws.update({ phase: 'started', containerId: id, startedAtMs: Date.now() });
    const reloaded = RunWorkspace.loadAll(workDir).workspaces.find((w) => w.record.runId === run.id)!;
    await executor.execute(reloaded);
    expect(engine.starts).toBe(1);
    expect(await statusOf(task.id)).toBe('completed');
    expect(engine.containers.size).toBe(0);
    expect(fs.existsSync(ws.dir)).toBe(false);
  });

  for (const registryHasStart of [false, true])
    it(`starts exactly once a container whose id was saved while the start was in flight (the registry ${registryHasStart ? 'had' : 'never got'} the start)`, async () => {
      const engine = new FakeEngine();
      const { executor, workDir } = executorWith(engine);
      const { task, run } = await postAndClaim();
      const ws = RunWorkspace.create(workDir, 'path-site', run, 65534, 65534);
      const id = await containerOf(engine, ws);
      if (registryHasStart) await api.start(run.id);
      // On disk: 'claimed' with the container's id, as decideAndStart saves it before the answer.
      await ws.update({ containerId: id, imageId: (await engine.inspectImage(IMAGE))!.id });
      const reloaded = RunWorkspace.loadAll(workDir).workspaces.find((w) => w.record.runId === run.id)!;
      const started = engine.nextStart();
      await executor.execute(reloaded);
      expect(await started).toBe(id);
      expect(engine.starts).toBe(1);
      expect(await statusOf(task.id)).toBe('completed');
      expect(engine.containers.size).toBe(0);
    });

  for (const check of ['refuses', 'fails'] as const)
    it(`starts no container, and keeps none, when the network check ${check} (it runs while the container is made)`, async () => {
      const engine = new FakeEngine();
      let creates = 0;
      const create = engine.create.bind(engine);
      engine.create = async (spec) => {
        creates++;
        return create(spec);
      };
      const config = clientConfig(registry.url, 'pht_site_unused', 'http://127.0.0.1:1/sparql', {
        network: { mode: 'none' },
      });
      const executor = new RunExecutor({
        api,
        engine,
        config,
        site: 'path-site',
        networking: {
          networkMode: 'none',
          sparqlFor: () => ({ url: 'http://x', token: null, release: () => {} }),
          check: async () => {
            // Answers only once the container exists: the check overlaps its making.
            while (creates === 0) await new Promise((resolve) => setImmediate(resolve));
            if (check === 'fails') throw new PermanentRunError('iptables: cannot list the rules');
            return 'firewall rules for the gateway network are not in place';
          },
        },
        logger: silentLogger(),
        audit: silentLogger(),
        shutdown: new AbortController().signal,
      });
      const { task, run } = await postAndClaim();
      await executor.execute(RunWorkspace.create(config.workDir, 'path-site', run, 65534, 65534));
      const view = ((await (await researcher('GET', `/tasks/${task.id}`)).json()) as Task).runs[0]!;
      expect(view.status).toBe('failed');
      expect(view.reason).toMatch(check === 'fails' ? /cannot list the rules/ : /not in place/);
      expect(creates).toBe(1);
      expect(engine.starts).toBe(0);
      expect(engine.containers.size).toBe(0);
    });

  it('removes a container saved while the start was in flight when the run was cancelled meanwhile', async () => {
    const engine = new FakeEngine();
    const { executor, workDir } = executorWith(engine);
    const { task, run } = await postAndClaim();
    const ws = RunWorkspace.create(workDir, 'path-site', run, 65534, 65534);
    const id = await containerOf(engine, ws);
    await ws.update({ containerId: id });
    expect((await researcher('POST', `/tasks/${task.id}/cancel`)).status).toBe(200);
    await executor.execute(RunWorkspace.loadAll(workDir).workspaces.find((w) => w.record.runId === run.id)!);
    expect(engine.starts).toBe(0);
    expect(engine.containers.size).toBe(0);
    expect(fs.existsSync(ws.dir)).toBe(false);
  });
});
