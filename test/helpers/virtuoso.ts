import { spawn, execFile, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { makeTempDir } from './temp-dirs.js';

const execFileAsync = promisify(execFile);

const SETUP_HINT = 'run `bash scripts/infra.sh up` (it installs Debian virtuoso-opensource)';
/** Debian's package keeps the HTTP server's static pages here; the server refuses to start without a root. */
const VSP_ROOT = '/var/lib/virtuoso-opensource-7/vsp';
const READY_TIMEOUT_MS = 90_000;

/** A real Virtuoso 7 server (Debian `virtuoso-opensource`) in its own temp dir. */
export interface RunningVirtuoso {
  /** SPARQL protocol endpoint, e.g. http://127.0.0.1:34567/sparql */
  readonly sparqlUrl: string;
  readonly host: string;
  readonly httpPort: number;
  /** SQL port for isql-vt (login dba/dba). */
  readonly sqlPort: number;
  /** Database, ini and log live here; removed by stop(). */
  readonly dir: string;
  /** Loads a Turtle file into `graph` (an IRI) through isql-vt, then checkpoints. */
  loadTurtle(file: string, graph: string): Promise<void>;
  /** Kills the server and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

export interface StartVirtuosoOptions {
  /**
   * Address both ports bind to. 127.0.0.1 by default; a container on the default bridge reaches a
   * service only on the bridge gateway (e.g. 172.17.0.1), never on loopback.
   */
  host?: string;
}

/**
 * Starts virtuoso-t on two ephemeral ports with a minimal ini and waits until /sparql answers.
 * A fresh database takes 1.5–4 s to create on these machines.
 */
export async function startVirtuoso(options: StartVirtuosoOptions = {}): Promise<RunningVirtuoso> {
  const host = options.host ?? '127.0.0.1';
  requireExecutable('virtuoso-t');
  requireExecutable('isql-vt');
  if (!fs.existsSync(VSP_ROOT)) throw new Error(`Virtuoso's ${VSP_ROOT} is missing: ${SETUP_HINT}`);

  // Free ports are picked before virtuoso-t binds them, so another process may take one in between:
  // try again with new ports when the server dies during start-up.
  let lastError: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const dir = makeTempDir('pht-virtuoso-');
    const [httpPort, sqlPort] = [await freePort(host), await freePort(host)];
    fs.writeFileSync(path.join(dir, 'virtuoso.ini'), iniFor(dir, host, httpPort, sqlPort));
    const logFd = fs.openSync(path.join(dir, 'stdout.log'), 'a');
    // Output goes to a file: a server holding the test runner's pipes would keep CI waiting.
    const child = spawn('virtuoso-t', ['+configfile', 'virtuoso.ini', '+foreground'], {
      cwd: dir,
      stdio: ['ignore', logFd, logFd],
    });
    fs.closeSync(logFd);
    const exited = new Promise<string>((resolve) => {
      child.once('exit', (code, signal) => resolve(`exited with ${signal ?? `code ${code}`}`));
      child.once('error', (err) => resolve(`failed to start: ${err.message}`));
    });
    const sparqlUrl = `http://${host}:${httpPort}/sparql`;
    const server = makeHandle(child, exited, { sparqlUrl, host, httpPort, sqlPort, dir });
    try {
      await waitUntilAnswering(sparqlUrl, exited, dir);
      return server;
    } catch (err) {
      lastError = err;
      await server.stop();
    }
  }
  throw lastError;
}

function makeHandle(
  child: ChildProcess,
  exited: Promise<string>,
  where: { sparqlUrl: string; host: string; httpPort: number; sqlPort: number; dir: string },
): RunningVirtuoso {
  let stopped: Promise<void> | undefined;
  // A test runner that dies without calling stop() must not leave a server behind.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  return {
    ...where,
    async loadTurtle(file, graph) {
      // TTLP_MT reads through the server, which only opens files under DirsAllowed: copy it in.
      const local = path.join(where.dir, `load-${Date.now()}-${path.basename(file)}`);
      fs.copyFileSync(file, local);
      const sql = `DB.DBA.TTLP_MT(file_to_string_output(${sqlString(local)}), '', ${sqlString(graph)}); checkpoint;`;
      const { stdout, stderr } = await execFileAsync(
        'isql-vt',
        [`${where.host}:${where.sqlPort}`, 'dba', 'dba', `exec=${sql}`],
        { timeout: 60_000 },
      );
      // isql-vt reports SQL errors on its output and may still exit 0.
      const output = `${stdout}\n${stderr}`;
      if (/\*\*\* Error/.test(output)) throw new Error(`loading ${file} into <${graph}> failed: ${output.trim()}`);
      fs.rmSync(local, { force: true });
    },
    stop() {
      stopped ??= (async () => {
        process.removeListener('exit', killOnExit);
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          // The database is thrown away, so a shutdown checkpoint is not worth waiting long for.
          const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
          await exited;
          clearTimeout(timer);
        }
        fs.rmSync(where.dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}

function iniFor(dir: string, host: string, httpPort: number, sqlPort: number): string {
  const file = (name: string) => path.join(dir, name);
  return `[Database]
DatabaseFile = ${file('virtuoso.db')}
ErrorLogFile = ${file('virtuoso.log')}
LockFile = ${file('virtuoso.lck')}
TransactionFile = ${file('virtuoso.trx')}
xa_persistent_file = ${file('virtuoso.pxa')}
ErrorLogLevel = 7
FileExtend = 200
Striping = 0
TempStorage = TempDatabase

[TempDatabase]
DatabaseFile = ${file('virtuoso-temp.db')}
TransactionFile = ${file('virtuoso-temp.trx')}
Striping = 0

[Parameters]
ServerPort = ${host}:${sqlPort}
DisableUnixSocket = 1
DirsAllowed = ., ${dir}
MaxClientConnections = 10
CheckpointInterval = 0
NumberOfBuffers = 10000
MaxDirtyBuffers = 6000

[HTTPServer]
ServerPort = ${host}:${httpPort}
ServerRoot = ${VSP_ROOT}
ServerThreads = 4
MaxClientConnections = 4
EnabledDavVSP = 0

[SPARQL]
ResultSetMaxRows = 10000
MaxQueryExecutionTime = 60
`;
}

async function waitUntilAnswering(sparqlUrl: string, exited: Promise<string>, dir: string): Promise<void> {
  let exitReason: string | undefined;
  void exited.then((reason) => {
    exitReason = reason;
  });
  const deadline = Date.now() + READY_TIMEOUT_MS;
  const probe = `${sparqlUrl}?query=${encodeURIComponent('ASK { ?s ?p ?o }')}`;
  while (Date.now() < deadline) {
    if (exitReason !== undefined) {
      throw new Error(`virtuoso-t ${exitReason} during start-up:\n${logTail(dir)}`);
    }
    try {
      const response = await fetch(probe, {
        headers: { accept: 'application/sparql-results+json' },
        signal: AbortSignal.timeout(2_000),
      });
      await response.arrayBuffer();
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`virtuoso-t did not answer on ${sparqlUrl} within ${READY_TIMEOUT_MS / 1000} s:\n${logTail(dir)}`);
}

function logTail(dir: string): string {
  const lines: string[] = [];
  for (const name of ['virtuoso.log', 'stdout.log']) {
    try {
      lines.push(...fs.readFileSync(path.join(dir, name), 'utf8').trimEnd().split('\n').slice(-15));
    } catch {
      // The server may have died before writing it.
    }
  }
  return lines.join('\n');
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function requireExecutable(name: string): void {
  const found = (process.env.PATH ?? '')
    .split(path.delimiter)
    .some((dir) => dir !== '' && fs.existsSync(path.join(dir, name)));
  if (!found) throw new Error(`${name} not found on PATH: ${SETUP_HINT}`);
}

/** A Virtuoso SQL string literal. */
function sqlString(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}
