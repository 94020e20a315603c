/**
 * Brings up the whole train on real parts, as separate processes the way they would run at a
 * hospital and at the registry's host: one SPARQL endpoint per site (`dist/demo/sparql-server.js`),
 * the registry (`node master`), the sites and a researcher created with the registry's admin CLI,
 * and one site client per hospital (`node client --config FILE`).
 *
 * Each site's endpoint listens on 127.0.0.1 only: the clients run their containers on an internal
 * Docker network (network mode "gateway", the default) where the only reachable address is the
 * client's own SPARQL gateway, which forwards to the endpoint.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { DEMO_SITES, writeDemoTurtle } from './synthetic-data.js';
import type { ManagedProcess, ProcessGroup } from './processes.js';

const execFileAsync = promisify(execFile);

export interface TrainOptions {
  /** The repository root (where `master/` and `client/` are). */
  root: string;
  /** Everything the train writes goes under here: data, registry database, client work dirs, logs. */
  dir: string;
  /** Registry site names are `${sitePrefix}${profile}` (site-a, …); a prefix keeps parallel demos apart. */
  sitePrefix: string;
  /** Seed of the synthetic patients. */
  seed: number;
  /** Image references the clients accept: regular expressions matching the whole reference. */
  allowedImages: string[];
  /** Environment of the child processes (without PHT_* overrides that would replace their configs). */
  env: NodeJS.ProcessEnv;
  /** How long each process may take to become ready. */
  readyTimeoutMs: number;
}

export interface TrainSite {
  /** The site's name at the registry (what tasks and results are labelled with). */
  name: string;
  /** The synthetic hospital whose patients it serves (demo/synthetic-data.ts DEMO_SITES). */
  profile: string;
  turtleFile: string;
  sparqlUrl: string;
}

export interface Train {
  registryUrl: string;
  researcher: { name: string; token: string };
  sites: TrainSite[];
  /** The trusted third party: its name at the registry and the name of its own site client. */
  ttp: { name: string; site: string };
}

/**
 * The train's processes by role, filled in as they start, so that a start-up that fails half-way
 * can still be stopped in the right order: clients first (they stop polling and release their
 * gateways), then the registry, then the endpoints.
 */
export interface TrainProcesses {
  sparql: ManagedProcess[];
  master: ManagedProcess | null;
  clients: ManagedProcess[];
  fileservice: ManagedProcess | null;
}

export function emptyTrainProcesses(): TrainProcesses {
  return { sparql: [], master: null, clients: [], fileservice: null };
}

/** The registry site name of the demo's trusted third party (it runs a site client too). */
export function demoTtpSiteName(sitePrefix: string): string {
  return `${sitePrefix}ttp`;
}

/** The registry site name of each demo hospital. */
export function demoSiteNames(sitePrefix: string): Array<{ name: string; profile: string }> {
  return DEMO_SITES.map((profile) => ({ name: `${sitePrefix}${profile.name}`, profile: profile.name }));
}

export const LOG_DIR = 'logs';

/** Where a demo writes a site's client config, relative to its temp dir. */
export function clientConfigPath(dir: string, site: string): string {
  return path.join(dir, 'clients', site, 'config.json');
}

/** The part of a demo client's command line that names its site, whatever the demo's temp dir. */
export function clientCommandLineMarker(site: string): string {
  return `${path.sep}clients${path.sep}${site}${path.sep}config.json`;
}

/** Starts everything; the processes are recorded in `processes` as soon as they are spawned. */
export async function startTrain(
  group: ProcessGroup,
  processes: TrainProcesses,
  options: TrainOptions,
  signal?: AbortSignal,
): Promise<Train> {
  const { root, dir } = options;
  const logDir = path.join(dir, LOG_DIR);
  fs.mkdirSync(logDir, { recursive: true });
  const ready = { timeoutMs: options.readyTimeoutMs, signal };

  // 1. Data and endpoints. The three servers start together; each prints its URL when it listens.
  const turtleFiles = writeDemoTurtle(path.join(dir, 'data'), options.seed);
  const names = demoSiteNames(options.sitePrefix);
  const endpointStarts = names.map(({ name, profile }) => {
    const turtleFile = turtleFiles.get(profile)!;
    const server = group.start({
      name: `sparql ${name}`,
      command: process.execPath,
      args: [
        path.join(root, 'dist', 'demo', 'sparql-server.js'),
        '--data',
        turtleFile,
        '--port',
        '0',
        '--host',
        '127.0.0.1',
      ],
      logFile: path.join(logDir, `sparql-${name}.log`),
      env: options.env,
    });
    processes.sparql.push(server);
    return { name, profile, turtleFile, server };
  });
  const sites: TrainSite[] = [];
  for (const s of endpointStarts) {
    const sparqlUrl = await s.server.waitForLogLine((line) => /^SPARQL endpoint (\S+)/.exec(line)?.[1], ready);
    sites.push({ name: s.name, profile: s.profile, turtleFile: s.turtleFile, sparqlUrl });
  }

  // 2. The registry, on a port of its choosing: it logs the one it got.
  const dataDir = path.join(dir, 'registry');
  const master = group.start({
    name: 'registry (node master)',
    command: process.execPath,
    args: [path.join(root, 'master'), '--port', '0', '--host', '127.0.0.1', '--data-dir', dataDir],
    logFile: path.join(logDir, 'master.log'),
    env: options.env,
  });
  processes.master = master;
  const port = await master.waitForLogLine((line) => jsonLogField(line, 'registry listening', 'port'), ready);
  const registryUrl = `http://127.0.0.1:${String(port)}`;

  // 3. Sites and a researcher, with the admin CLI on the registry's database (as its operator
  //    would). The keys are printed once, on stdout: they go into the client configs, never a log.
  const adminCli = async (args: string[]): Promise<Record<string, unknown>> => {
    const { stdout } = await execFileAsync(
      process.execPath,
      [path.join(root, 'master'), ...args, '--json', '--data-dir', dataDir],
      {
        env: options.env,
        signal,
        timeout: 60_000,
      },
    );
    return JSON.parse(stdout) as Record<string, unknown>;
  };
  const apiKeys = new Map<string, string>();
  for (const site of sites) apiKeys.set(site.name, String((await adminCli(['create-site', site.name])).apiKey));
  const researcher = {
    name: 'researcher',
    token: String((await adminCli(['create-user', 'researcher', '--role', 'researcher'])).token),
  };

  // 3b. The trusted third party: its key pair, its file service (a sender key per site, a reader
  //     token for its own client), registered at the registry by the admin; and a site of its own.
  const ttpDir = path.join(dir, 'ttp');
  const fileServiceCli = async (args: string[]): Promise<Record<string, unknown>> => {
    const { stdout } = await execFileAsync(
      process.execPath,
      [path.join(root, 'fileservice'), ...args, '--json', '--data-dir', ttpDir],
      { env: options.env, signal, timeout: 60_000 },
    );
    return JSON.parse(stdout) as Record<string, unknown>;
  };
  await fileServiceCli(['keys', 'create']);
  const ttpKeyFile = path.join(ttpDir, 'keys', 'ttp.key');
  const senderKeys = new Map<string, string>();
  for (const site of sites)
    senderKeys.set(site.name, String((await fileServiceCli(['create-sender', site.name])).apiKey));
  const readerToken = String((await fileServiceCli(['create-reader', 'ttp-worker'])).token);
  const fileservice = group.start({
    name: 'file service (node fileservice)',
    command: process.execPath,
    args: [path.join(root, 'fileservice'), '--port', '0', '--host', '127.0.0.1', '--data-dir', ttpDir],
    logFile: path.join(logDir, 'fileservice.log'),
    env: options.env,
  });
  processes.fileservice = fileservice;
  const fsPort = await fileservice.waitForLogLine(
    (line) => jsonLogField(line, 'file service listening', 'port'),
    ready,
  );
  const fileServiceUrl = `http://127.0.0.1:${String(fsPort)}`;
  const ttp = { name: 'ttp', site: demoTtpSiteName(options.sitePrefix) };
  await adminCli(['add-ttp', ttp.name, '--url', fileServiceUrl, '--public-key', path.join(ttpDir, 'keys', 'ttp.pub')]);
  apiKeys.set(ttp.site, String((await adminCli(['create-site', ttp.site])).apiKey));

  // 4. One site client per hospital, each with a config file as a site would write it, and its key
  //    pair made and registered (`node client keys create`) for sealed tasks; then the TTP's.
  const clientSites = [
    ...sites.map((site) => ({
      name: site.name,
      sparqlUrl: site.sparqlUrl,
      keys: { ttpApiKeys: { [ttp.name]: senderKeys.get(site.name)! } },
    })),
    {
      name: ttp.site,
      sparqlUrl: sites[0]!.sparqlUrl,
      keys: { keyFile: ttpKeyFile, ttpInbox: { url: fileServiceUrl, token: readerToken } },
    },
  ];
  for (const site of clientSites) {
    const configFile = clientConfigPath(dir, site.name);
    const clientDir = path.dirname(configFile);
    fs.mkdirSync(clientDir, { recursive: true });
    const config = {
      registryUrl,
      apiKey: apiKeys.get(site.name)!,
      sparqlEndpoint: site.sparqlUrl,
      allowedImages: options.allowedImages,
      workDir: path.join(clientDir, 'work'),
      auditLog: path.join(clientDir, 'audit.log'),
      keys: site.keys,
    };
    fs.writeFileSync(configFile, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
    await execFileAsync(process.execPath, [path.join(root, 'client'), 'keys', 'create', '--config', configFile], {
      env: options.env,
      signal,
      timeout: 60_000,
    });
    processes.clients.push(
      group.start({
        name: `client ${site.name}`,
        command: process.execPath,
        args: [path.join(root, 'client'), '--config', configFile],
        logFile: path.join(logDir, `client-${site.name}.log`),
        env: options.env,
      }),
    );
  }
  // Ready once polling: the gateway network, firewall and SPARQL gateway are up by then.
  await Promise.all(
    processes.clients.map((client) =>
      client.waitForLogLine(
        (line) => (jsonLogField(line, 'client state', 'to') === 'polling' ? true : undefined),
        ready,
      ),
    ),
  );

  return { registryUrl, researcher, sites, ttp };
}

/**
 * Stops the train in order (clients, registry, endpoints), each SIGTERM first and SIGKILL after
 * `graceMs`; resolves with the names of the processes that had to be killed.
 */
export async function stopTrain(group: ProcessGroup, processes: TrainProcesses, graceMs: number): Promise<string[]> {
  const killed = await group.stop(processes.clients, graceMs);
  if (processes.master) killed.push(...(await group.stop([processes.master], graceMs)));
  if (processes.fileservice) killed.push(...(await group.stop([processes.fileservice], graceMs)));
  killed.push(...(await group.stop(processes.sparql, graceMs)));
  return killed;
}

/** A field of a JSON log line (winston's json format) whose message is `message`; undefined otherwise. */
function jsonLogField(line: string, message: string, field: string): unknown {
  if (!line.startsWith('{') || !line.includes(message)) return undefined;
  try {
    const entry = JSON.parse(line) as Record<string, unknown>;
    return entry.message === message ? entry[field] : undefined;
  } catch {
    return undefined;
  }
}
