import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import pg from 'pg';
import { freePort, startNginx, type RunningNginx } from '../../test/helpers/nginx.js';
import { withDatabase } from '../../test/helpers/postgres.js';
import { parentPid } from './proc-stats.js';
import { seedPrincipals, startRegistryProcess, type RegistryProcess } from './registry-process.js';

/**
 * What the scale benchmark measures: one `node master` on SQLite (the default), one on
 * PostgreSQL, or several on one PostgreSQL database behind nginx (deploy/nginx/pht-registry.conf).
 */
export interface Deployment {
  /** Where sites and researchers connect: the registry, or nginx in front of several. */
  url: string;
  processes: RegistryProcess[];
  dataDir: string;
  /** A short name for reports: "sqlite", "postgres", "postgres ×3 behind nginx". */
  label: string;
  /** The PostgreSQL server's process when it runs on this machine (its backends are its children). */
  postgresPid: number | null;
  /** nginx's master process (its workers are its children). */
  nginxPid: number | null;
  stop(options?: { keepData?: boolean }): Promise<void>;
}

export interface DeploymentOptions {
  dataDir: string;
  /** Superuser URL of a PostgreSQL server: a fresh database is made there and dropped afterwards. */
  postgresAdminUrl: string | null;
  registries: number;
  sites: string[];
  users: string[];
  nodeArgs?: string[];
  /** Another checkout's root, to run its build instead of this one (a baseline commit). */
  root?: string;
}

/**
 * Open files each benchmark process may hold: a registry (or nginx, or a load generator) holds
 * one socket per parked site, 10,000 at full scale, plus its database and log files.
 */
export const BENCH_NOFILE = 65536;

/** A process's soft limit on open files, from /proc (null when unreadable). */
function openFilesLimit(pid: number): number | null {
  try {
    const line = fs
      .readFileSync(`/proc/${pid}/limits`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    return soft === 'unlimited' ? Infinity : soft ? Number(soft) : null;
  } catch {
    return null;
  }
}

/**
 * Makes sure a running process may hold `needed` open files (one socket per parked site, 10,000
 * at full scale, plus its database and log files): raised with util-linux prlimit when lower.
 * Answers whether the limit is enough; the caller says so in its output when it is not (raise
 * `ulimit -n` in the shell that runs the benchmark: a container may refuse prlimit).
 */
export function ensureFdLimit(pid: number, needed: number): boolean {
  const current = openFilesLimit(pid);
  if (current !== null && current >= needed) return true;
  try {
    execFileSync('prlimit', ['--pid', String(pid), `--nofile=${BENCH_NOFILE}:${BENCH_NOFILE}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Registry limits for the benchmark: every simulated site connects from 127.0.0.1 (and behind
 * nginx, every connection comes from it), so the per-address connection cap (2,048 by default,
 * a defence against one hostile address) must allow them all.
 */
export function benchRegistryLimits(sites: number): Record<string, number> {
  const connections = Math.max(4096, sites * 2 + 1024);
  return { connectionsPerAddress: connections, maxConnections: connections };
}

function readCommand(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

/** The nginx master process started with `dir` as its prefix (its workers' command lines do not name it). */
function findNginxMaster(dir: string): number | null {
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const cmd = readCommand(Number(entry));
    if (cmd.startsWith('nginx: master') && cmd.includes(dir)) return Number(entry);
  }
  return null;
}

export async function startDeployment(
  o: DeploymentOptions,
): Promise<{ deployment: Deployment; siteKeys: Map<string, string>; userTokens: Map<string, string> }> {
  if (o.registries > 1 && !o.postgresAdminUrl) throw new Error('several registries need --database (PostgreSQL)');
  let database: string | null = null;
  const dbName = `pht_bench_${crypto.randomBytes(4).toString('hex')}`;
  const admin = async (sql: string) => {
    const client = new pg.Client({ connectionString: o.postgresAdminUrl! });
    await client.connect();
    try {
      return (await client.query(sql)).rows as unknown[];
    } finally {
      await client.end();
    }
  };
  let postgresPid: number | null = null;
  if (o.postgresAdminUrl) {
    await admin(`CREATE DATABASE ${dbName}`);
    database = withDatabase(o.postgresAdminUrl, dbName);
    // A backend's parent is the server; on another machine the pid means nothing here. Read
    // while the backend lives: once its client has disconnected it may be gone (the figure was
    // then missing, "–", in some runs).
    const client = new pg.Client({ connectionString: o.postgresAdminUrl });
    await client.connect();
    try {
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      const server = rows[0] ? parentPid(rows[0].pid) : null;
      postgresPid = server !== null && /postgres/.test(readCommand(server)) ? server : null;
    } finally {
      await client.end();
    }
  }
  const { siteKeys, userTokens } = await seedPrincipals(o.dataDir, o.sites, o.users, database);
  const processes: RegistryProcess[] = [];
  let nginx: RunningNginx | null = null;
  for (let i = 0; i < o.registries; i++)
    processes.push(
      await startRegistryProcess({
        ...(o.root ? { root: o.root } : {}),
        dataDir: o.dataDir,
        nodeArgs: o.nodeArgs ?? [],
        logName: `registry-${i}.log`,
        // Enough connections for a process's share of thousands of sites, within max_connections.
        config: {
          ...(database ? { databasePoolSize: 20 } : {}),
          limits: benchRegistryLimits(o.sites.length),
        },
        ...(database ? { database } : {}),
      }),
    );
  const perProcess = Math.ceil(o.sites.length / o.registries) + 256;
  for (const p of processes)
    if (!ensureFdLimit(p.pid, perProcess))
      console.warn(`registry ${p.pid} may open fewer than ${perProcess} files and prlimit could not raise it`);
  if (o.registries > 1)
    nginx = await startNginx(
      await freePort(),
      processes.map((p) => p.port),
    );
  const deployment: Deployment = {
    url: nginx?.url ?? processes[0]!.url,
    processes,
    dataDir: o.dataDir,
    label: !database ? 'sqlite' : o.registries > 1 ? `postgres ×${o.registries} behind nginx` : 'postgres',
    postgresPid,
    nginxPid: nginx ? findNginxMaster(nginx.dir) : null,
    async stop(options = {}) {
      await nginx?.stop();
      // The first process's stop removes the shared data dir: stop it last.
      for (const p of processes.slice(1)) await p.stop({ keepData: true });
      await processes[0]!.stop(options);
      if (database) await admin(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    },
  };
  return { deployment, siteKeys, userTokens };
}
