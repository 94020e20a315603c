/**
 * The push-queue baseline of bench:celery: Debian's RabbitMQ and Celery, installed with apt when
 * missing, run on loopback from a scratch folder with ports of their own (so they never meet a
 * broker someone else runs), and stopped afterwards. Only Debian packages: no pip.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { sleep } from '../../shared/abortable.js';
import { stopChild } from '../lib/registry-process.js';
import { cpuNs } from '../lib/handout.js';
import { REPO_ROOT } from '../lib/report.js';

/** Debian's interpreter: python3-celery installs for it (a python3 earlier on PATH may lack it). */
const PYTHON = '/usr/bin/python3';
/** The server script itself, not /usr/sbin/rabbitmq-server (which su's to the rabbitmq user). */
const RABBITMQ_SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server';
const EPMD = '/usr/bin/epmd';
const PACKAGES = ['rabbitmq-server', 'python3-celery'];
/** The Python side (tasks.py, driver.py) is read from the source tree: tsc does not copy it. */
const PYTHON_DIR = path.join(REPO_ROOT, 'bench/celery');

export type Pool = 'prefork' | 'solo';
export const POOLS: readonly Pool[] = ['prefork', 'solo'];

/** Installs rabbitmq-server and python3-celery with apt-get when one is missing (says so). */
export function ensurePackages(): void {
  const missing = PACKAGES.filter((p) => !installed(p));
  if (missing.length === 0) {
    console.log(`set-up: ${PACKAGES.join(' and ')} already installed (Debian packages)`);
    return;
  }
  if (process.getuid?.() !== 0)
    throw new Error(`${missing.join(', ')} missing: run as root, or apt-get install -y ${missing.join(' ')}`);
  console.log(`set-up: installing ${missing.join(' ')} with apt-get (non-interactive, Debian packages only)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () =>
    spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...missing], { env, stdio: 'inherit' });
  if (install().status !== 0) {
    // A machine whose package lists are old or absent: refresh them once and try again.
    console.log('set-up: apt-get install failed; running apt-get update and trying again');
    spawnSync('apt-get', ['update'], { env, stdio: 'inherit' });
    const again = install();
    if (again.status !== 0) throw new Error(`apt-get install ${missing.join(' ')} failed (exit ${again.status})`);
  }
}

function installed(pkg: string): boolean {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.includes('install ok installed');
}

/** A TCP port nobody listens on at the moment (the kernel's choice for an ephemeral listener). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function waitForPort(port: number, child: ChildProcess, logFile: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`exited before listening on ${port}: ${fs.readFileSync(logFile, 'utf8').slice(-2000)}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await sleep(50);
  }
  throw new Error(`nothing listened on 127.0.0.1:${port} within ${timeoutMs} ms; log: ${logFile}`);
}

/** A child whose output goes to a file (never to this process's pipes: see INFRA.md). */
function spawnLogged(command: string, args: string[], logFile: string, env: NodeJS.ProcessEnv, cwd?: string) {
  const out = fs.openSync(logFile, 'a');
  const child = spawn(command, args, { stdio: ['ignore', out, out], env, cwd });
  fs.closeSync(out);
  return child;
}

export interface PushSample {
  /** `.delay()` → the task's body starts (both readings in the Python processes' wall clock). */
  startMs: number;
  /** `.delay()` → `.get()` has the result. */
  roundTripMs: number;
  /** CPU time over the sample (measured around it from here): RabbitMQ's processes, and the worker's. */
  brokerCpuMs: number;
  workerCpuMs: number;
}

export interface PushQueue {
  /** One `.delay()` on the given pool's worker, timed by the caller's Python process. */
  sample(pool: Pool): Promise<PushSample>;
  /** Stops the caller, the workers, RabbitMQ and its epmd, and removes the scratch folder. */
  close(): Promise<void>;
}

/**
 * Starts epmd, RabbitMQ, one Celery worker per pool and the Python caller (bench/celery/driver.py),
 * and waits until each worker has run a task.
 */
export async function startPushQueue(): Promise<PushQueue> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pht-bench-celery-'));
  const children: ChildProcess[] = [];
  const stopAll = async () => {
    // In reverse order of start: caller and workers before the broker, the broker before epmd.
    for (const child of children.reverse()) await stopChild(child, 15_000);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const [amqpPort, distPort, epmdPort] = [await freePort(), await freePort(), await freePort()];
    for (const sub of ['home', 'mnesia', 'log']) fs.mkdirSync(path.join(dir, sub));
    fs.writeFileSync(path.join(dir, 'enabled_plugins'), '[].\n');
    fs.writeFileSync(path.join(dir, 'rabbitmq.conf'), `listeners.tcp.default = 127.0.0.1:${amqpPort}\n`);
    const erlArgs = '-kernel inet_dist_use_interface {127,0,0,1}';
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      HOME: path.join(dir, 'home'), // the Erlang cookie goes there
      ERL_EPMD_PORT: String(epmdPort),
      ERL_EPMD_ADDRESS: '127.0.0.1',
      RABBITMQ_NODENAME: 'rabbit@localhost',
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(amqpPort),
      RABBITMQ_DIST_PORT: String(distPort),
      RABBITMQ_MNESIA_BASE: path.join(dir, 'mnesia'),
      RABBITMQ_LOG_BASE: path.join(dir, 'log'),
      RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, 'enabled_plugins'),
      RABBITMQ_CONFIG_FILE: path.join(dir, 'rabbitmq.conf'),
      // Not the machine's /etc/rabbitmq/rabbitmq-env.conf: nothing but this folder configures it.
      RABBITMQ_CONF_ENV_FILE: path.join(dir, 'no-env.conf'),
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: erlArgs,
      RABBITMQ_CTL_ERL_ARGS: erlArgs,
    };
    // Our own epmd on its own port, so that it is ours to stop (and no other Erlang node meets it).
    const epmdLog = path.join(dir, 'epmd.log');
    const epmd = spawnLogged(EPMD, ['-port', String(epmdPort), '-address', '127.0.0.1'], epmdLog, env);
    children.push(epmd);
    await waitForPort(epmdPort, epmd, epmdLog, 10_000);
    const t0 = Date.now();
    const serverLog = path.join(dir, 'server.log');
    const server = spawnLogged(RABBITMQ_SERVER, [], serverLog, env);
    children.push(server);
    await waitForPort(amqpPort, server, serverLog, 90_000);
    console.log(`set-up: RabbitMQ ${rabbitVersion()} listening on 127.0.0.1:${amqpPort} after ${Date.now() - t0} ms`);

    const pyEnv: NodeJS.ProcessEnv = {
      ...env,
      PHT_BENCH_BROKER: `amqp://guest:guest@127.0.0.1:${amqpPort}//`,
      PYTHONPATH: PYTHON_DIR,
      PYTHONDONTWRITEBYTECODE: '1', // no __pycache__ in the source tree
    };
    const workerPids: Partial<Record<Pool, number>> = {};
    for (const pool of POOLS) {
      const args = ['-m', 'celery', '-A', 'tasks', 'worker', `--pool=${pool}`, '-Q', `pht-bench-${pool}`];
      if (pool === 'prefork') args.push('--concurrency=1');
      // Gossip and mingle talk to other workers; they are off so that the two workers stay apart.
      args.push('-n', `${pool}@pht-bench`, '--without-gossip', '--without-mingle', '--loglevel=WARNING');
      const worker = spawnLogged(PYTHON, args, path.join(dir, `worker-${pool}.log`), pyEnv, PYTHON_DIR);
      children.push(worker);
      workerPids[pool] = worker.pid!;
    }
    const driver = spawn(PYTHON, [path.join(PYTHON_DIR, 'driver.py')], {
      stdio: ['pipe', 'pipe', fs.openSync(path.join(dir, 'driver.log'), 'a')],
      env: pyEnv,
      cwd: PYTHON_DIR,
    });
    children.push(driver);
    const lines = readline.createInterface({ input: driver.stdout! })[Symbol.asyncIterator]();
    const ask = async (command: string): Promise<Record<string, unknown>> => {
      driver.stdin!.write(`${command}\n`);
      const next = await lines.next();
      if (next.done)
        throw new Error(
          `the Celery caller exited: ${fs.readFileSync(path.join(dir, 'driver.log'), 'utf8').slice(-2000)}`,
        );
      const answer = JSON.parse(next.value) as Record<string, unknown>;
      if (typeof answer.error === 'string') throw new Error(`the Celery caller: ${answer.error}`);
      return answer;
    };
    await ask('ready');
    console.log(
      `set-up: Celery ${celeryVersion()} workers ready (prefork concurrency 1, solo) after ${Date.now() - t0} ms`,
    );
    return {
      async sample(pool) {
        // The processes are listed afresh each time: a prefork worker may replace its child.
        const broker = processTree(server.pid!);
        const worker = processTree(workerPids[pool]!);
        const before = [treeCpuNs(broker), treeCpuNs(worker)];
        const a = await ask(pool);
        const after = [treeCpuNs(broker), treeCpuNs(worker)];
        if (typeof a.startNs !== 'number' || typeof a.roundTripNs !== 'number')
          throw new Error(`the Celery caller answered ${JSON.stringify(a)}`);
        return {
          startMs: a.startNs / 1e6,
          roundTripMs: a.roundTripNs / 1e6,
          brokerCpuMs: (after[0]! - before[0]!) / 1e6,
          workerCpuMs: (after[1]! - before[1]!) / 1e6,
        };
      },
      async close() {
        driver.stdin!.end(); // the caller's loop ends with its input
        await stopAll();
      },
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
}

function rabbitVersion(): string {
  return packageVersion('rabbitmq-server');
}

function celeryVersion(): string {
  return packageVersion('python3-celery');
}

function packageVersion(pkg: string): string {
  try {
    return execFileSync('dpkg-query', ['-W', '-f=${Version}', pkg], { encoding: 'utf8' }).trim();
  } catch {
    return '(version unknown)';
  }
}

/** A process and its descendants (Linux /proc/PID/task/TID/children). */
function processTree(pid: number): number[] {
  const all = [pid];
  for (let i = 0; i < all.length; i++) {
    const p = all[i]!;
    try {
      for (const tid of fs.readdirSync(`/proc/${p}/task`)) {
        const children = fs.readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8').trim();
        if (children) all.push(...children.split(' ').map(Number));
      }
    } catch {
      /* ended meanwhile */
    }
  }
  return all;
}

function treeCpuNs(pids: number[]): number {
  let total = 0;
  for (const pid of pids) {
    try {
      total += cpuNs(pid);
    } catch {
      /* ended meanwhile */
    }
  }
  return total;
}
