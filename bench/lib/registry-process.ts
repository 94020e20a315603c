import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openStore } from '../../master/server.js';
import { REPO_ROOT } from './report.js';
import { sleep } from '../../shared/abortable.js';

export interface RegistryProcess {
  url: string;
  port: number;
  pid: number;
  dataDir: string;
  logFile: string;
  /** SIGTERM, wait for the exit (SIGKILL after 15 s), remove the data dir unless `keepData`. */
  stop(options?: { keepData?: boolean }): Promise<void>;
}

export interface RegistryProcessOptions {
  dataDir?: string;
  logLevel?: 'error' | 'warn' | 'info' | 'debug';
  /** Extra node flags, e.g. ['--cpu-prof', '--cpu-prof-dir=/tmp/x']. */
  nodeArgs?: string[];
  /** Another checkout's root, to run its build instead of this one (a baseline commit). */
  root?: string;
  /** A config file for settings the command line does not take (limits, lease). */
  config?: Record<string, unknown>;
  /** A postgres:// URL: the registry keeps its records there (several processes may share it). */
  database?: string;
  /** Log file name in the data dir (several processes sharing one data dir need one each). */
  logName?: string;
}

/** A fresh data dir for a registry, with principals created before the server opens it. */
export function makeDataDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'pht-bench-registry-'));
}

/**
 * Creates sites and researchers directly in the registry's SQLite file (what `node master
 * create-site` does, without a process start per principal: 1,000 sites would take minutes).
 */
export async function seedPrincipals(
  dataDir: string,
  sites: string[],
  users: string[],
  database: string | null = null,
): Promise<{ siteKeys: Map<string, string>; userTokens: Map<string, string> }> {
  const store = await openStore({ dataDir, database });
  const siteKeys = new Map<string, string>();
  const userTokens = new Map<string, string>();
  try {
    for (const name of sites) siteKeys.set(name, (await store.createPrincipal('site', name, 'site')).secret);
    for (const name of users) userTokens.set(name, (await store.createPrincipal('user', name, 'researcher')).secret);
  } finally {
    await store.close();
  }
  return { siteKeys, userTokens };
}

/** `node master` as its own process (so its CPU and RSS can be read from /proc), on an ephemeral port. */
export async function startRegistryProcess(options: RegistryProcessOptions = {}): Promise<RegistryProcess> {
  const dataDir = options.dataDir ?? makeDataDir();
  const logFile = path.join(dataDir, options.logName ?? 'registry.log');
  const args = [
    ...(options.nodeArgs ?? []),
    path.join(options.root ?? REPO_ROOT, 'master/index.js'),
    'serve',
    '--port',
    '0',
    '--host',
    '127.0.0.1',
    '--data-dir',
    dataDir,
    ...(options.database ? ['--database', options.database] : []),
  ];
  if (options.config) {
    const configFile = path.join(dataDir, 'registry-config.json');
    fs.writeFileSync(configFile, JSON.stringify(options.config));
    args.push('--config', configFile);
  }
  const out = fs.openSync(logFile, 'a');
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', out, out],
    env: { ...process.env, PHT_LOG_FORMAT: 'json', PHT_LOG_LEVEL: options.logLevel ?? 'info' },
  });
  fs.closeSync(out);
  const port = await waitForListening(child, logFile);
  let stopping: Promise<void> | null = null;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    dataDir,
    logFile,
    stop(stopOptions = {}) {
      stopping ??= (async () => {
        await stopChild(child, 15_000);
        if (!stopOptions.keepData) fs.rmSync(dataDir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}

/** Reads the registry's log until its "registry listening" line gives the port. */
async function waitForListening(child: ChildProcess, logFile: string): Promise<number> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new Error(`registry exited with ${child.exitCode}: ${fs.readFileSync(logFile, 'utf8').slice(-2000)}`);
    for (const line of fs.readFileSync(logFile, 'utf8').split('\n')) {
      if (!line.includes('registry listening')) continue;
      try {
        const port = (JSON.parse(line) as { port?: number }).port;
        if (port) return port;
      } catch {
        /* a partial line: read again */
      }
    }
    await sleep(20);
  }
  child.kill('SIGKILL');
  throw new Error(`registry did not report listening within 20 s; log: ${logFile}`);
}

/** Stops a child process started here: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}
