import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ClientConfig } from '../../client/config.js';
import type { DockerEngine } from '../../client/container-engine.js';
import { CONTAINER_ENV, CONTAINER_PATHS } from '../../shared/container-contract.js';
import { BENCH_LABEL } from './site.js';
import { wallMs } from './stats.js';

/** What a container gets, prepared like the client's workspace (untimed), with `config` as its task config. */
export function runFolders(
  config: ClientConfig,
  taskConfig: unknown = {},
): {
  dir: string;
  configFile: string;
  out: string;
  progress: string;
  env: Record<string, string>;
} {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pht-bench-raw-'));
  const [uid, gid] = config.containerUser.split(':').map(Number) as [number, number];
  const configFile = path.join(dir, 'config.json');
  fs.writeFileSync(configFile, JSON.stringify(taskConfig), { mode: 0o644 });
  const out = path.join(dir, 'output');
  const progress = path.join(dir, 'progress');
  for (const d of [out, progress]) {
    fs.mkdirSync(d);
    fs.chownSync(d, uid, gid);
    fs.chmodSync(d, 0o700);
  }
  const env = {
    [CONTAINER_ENV.sparqlEndpoint]: 'http://127.0.0.1:9/sparql',
    [CONTAINER_ENV.taskId]: '1',
    [CONTAINER_ENV.runId]: '1',
    [CONTAINER_ENV.configFile]: CONTAINER_PATHS.configFile,
    [CONTAINER_ENV.outputDir]: CONTAINER_PATHS.outputDir,
    [CONTAINER_ENV.progressFile]: CONTAINER_PATHS.progressFile,
  };
  return { dir, configFile, out, progress, env };
}

let sequence = 0;

/** Docker's steps of one engine run, in ms: the floor each of the train's Docker steps compares to. */
export interface EngineSteps {
  create: number;
  start: number;
  wait: number;
  remove: number;
}

/**
 * The floor without the docker CLI: create → start → wait → remove through the Engine API, with
 * the client's own container spec (its DockerEngine.create), no pull, no registry. Returns the
 * milliseconds from create to removed.
 */
export async function engineRun(
  engine: DockerEngine,
  imageId: string,
  config: ClientConfig,
  network: string,
  taskConfig: unknown = {},
  steps?: (s: EngineSteps) => void,
): Promise<number> {
  const { dir, configFile, out, progress, env } = runFolders(config, taskConfig);
  const { limits } = config;
  const started = wallMs();
  const id = await engine.create({
    name: `pht-bench-engine-${process.pid}-${++sequence}`,
    imageId,
    env,
    labels: { [BENCH_LABEL]: 'engine-run' },
    user: config.containerUser,
    mounts: [
      { host: configFile, container: CONTAINER_PATHS.configFile, readOnly: true },
      { host: out, container: CONTAINER_PATHS.outputDir, readOnly: false },
      { host: progress, container: path.posix.dirname(CONTAINER_PATHS.progressFile), readOnly: false },
    ],
    networkMode: network,
    memoryBytes: limits.memoryBytes,
    nanoCpus: limits.nanoCpus,
    pids: limits.pids,
    tmpfsBytes: limits.tmpfsBytes,
  });
  const created = wallMs();
  await engine.start(id);
  const running = wallMs();
  const code = await engine.wait(id);
  const exited = wallMs();
  await engine.remove(id);
  const elapsed = wallMs() - started;
  steps?.({ create: created - started, start: running - created, wait: exited - running, remove: wallMs() - exited });
  const wrote = fs.existsSync(path.join(out, 'result.json'));
  fs.rmSync(dir, { recursive: true, force: true });
  if (code !== 0 || !wrote) throw new Error(`the engine API run exited with ${code}`);
  return elapsed;
}
