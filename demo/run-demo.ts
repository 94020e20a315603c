/**
 * `npm start`: the Personal Health Train end to end, on real parts.
 *
 * Checks the Docker engine and the loopback image registry (running `bash scripts/infra.sh up`
 * when they do not answer), builds and pushes the three algorithm images, starts three SPARQL
 * endpoints, the registry, a trusted third party's file service and four site clients (the
 * hospitals' and the TTP's) as child processes, runs two federated analyses through the SDK
 * (descriptive statistics; logistic regression by Newton–Raphson rounds) and a third, sealed end to
 * end, at the TTP (pooled median and quartiles of age), prints them next to the same analyses
 * computed centrally on the pooled raw data, prints how long
 * everything took, and shuts everything down: processes (SIGTERM, SIGKILL after a deadline), the
 * clients' containers and Docker networks, and its temp dir.
 *
 *   node dist/demo/run-demo.js [--keep] [--site-prefix PREFIX] [--seed N]
 *
 * Exit code 0 only when both analyses agree with the central computation; 1 when they do not or
 * something failed; 130 when interrupted. Ctrl-C at any point shuts everything down (a second
 * Ctrl-C kills the processes instead of waiting for them; a third exits at once).
 */
import { unmountAllUnder } from './mounts.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { integerOption, runCommandLine, stringOption, UsageError } from '../shared/command-line.js';
import Docker from 'dockerode';
import { PhtClient, ResearcherKeys } from '../sdk/index.js';
import { pooledQuantiles } from './researcher-pooled-quantiles.js';
import { centralDescriptiveStats, centralLogisticRegression, type CentralDescriptiveStats } from './central.js';
import {
  compareDescriptiveStats,
  compareLogisticRegression,
  formatDescriptiveComparison,
  formatLogisticComparison,
  formatTable,
} from './comparison.js';
import {
  algorithmImages,
  bringInfrastructureUp,
  buildAlgorithmImages,
  checkInfrastructure,
  defaultDockerCli,
  defaultGatewayNetwork,
  listSiteResources,
  removeFirewallRules,
  removeSiteResources,
  type InfrastructureStatus,
} from './docker-resources.js';
import {
  describeExit,
  ProcessGroup,
  processesWithCommandLine,
  type ExitStatus,
  type ManagedProcess,
} from './processes.js';
import { federatedDescriptiveStats } from './researcher-descriptive-stats.js';
import { federatedLogisticRegression } from './researcher-logistic-regression.js';
import { DEMO_SEED, generateDemoData } from './synthetic-data.js';
import {
  clientCommandLineMarker,
  demoSiteNames,
  demoTtpSiteName,
  emptyTrainProcesses,
  LOG_DIR,
  startTrain,
  stopTrain,
  type Train,
} from './train.js';

export interface DemoOptions {
  /** Keep the temp dir (data, registry database, client work dirs, logs) at the end. */
  keep: boolean;
  /** Prepended to the site names (site-a, …), so two demos on one machine keep apart. */
  sitePrefix: string;
  seed: number;
  /** host:port of the image registry. */
  imageRegistry: string;
  dockerCli: string;
  /** Environment handed to the scripts (infra.sh, the image build). */
  env: NodeJS.ProcessEnv;
}

/** Why the demo stopped early: the user pressed Ctrl-C (or the demo got SIGTERM). */
export class DemoInterruptedError extends Error {
  override readonly name = 'DemoInterruptedError';
  constructor(readonly signal: string) {
    super(`interrupted by ${signal}`);
  }
}

/** Why the demo stopped early: one of the train's processes ended on its own. */
export class TrainProcessExitedError extends Error {
  override readonly name = 'TrainProcessExitedError';
  constructor(
    readonly process: ManagedProcess,
    readonly status: ExitStatus,
  ) {
    super(
      `${process.name} (pid ${process.pid}) ${describeExit(status)} while the demo was running; last lines of ${process.logFile}:\n${process.logTail()}`,
    );
  }
}

const READY_TIMEOUT_MS = 60_000;
const DOCKER_SOCKET = '/var/run/docker.sock';
const STOP_GRACE_MS = 10_000;

type Print = (line?: string) => void;

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

/** The repository root: the nearest folder above this file with the project's package.json. */
export function repositoryRoot(from: string = __dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file) && (JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: string }).name === 'pht')
      return dir;
    if (path.dirname(dir) === dir) throw new Error(`no PHT package.json above ${from}`);
  }
}

/**
 * The environment of the registry, the clients and the endpoints: without the PHT_* variables
 * (PHT_PORT, PHT_API_KEY, …) that would override their config files, and with JSON logs.
 */
function trainEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const clean = Object.fromEntries(Object.entries(env).filter(([key]) => !key.startsWith('PHT_')));
  return { ...clean, PHT_LOG_FORMAT: 'json' };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** One run of the demo: start-up, analyses, and a shutdown that undoes whatever was started. */
export class Demo {
  readonly dir: string;
  private readonly processes: ProcessGroup;
  private readonly train = emptyTrainProcesses();
  private readonly siteNames: string[];
  /** Every site whose client this demo runs (the hospitals and the TTP): their Docker state is cleaned up. */
  private readonly dockerSites: string[];
  private readonly timings: Array<[string, number]> = [];
  private readonly startedAt = Date.now();
  private readonly failure = new AbortController();
  /** Set once no other demo uses these site names: only then is their Docker state ours to remove. */
  private ownsSites = false;

  constructor(
    private readonly options: DemoOptions,
    private readonly print: Print,
  ) {
    this.siteNames = demoSiteNames(options.sitePrefix).map((s) => s.name);
    this.dockerSites = [...this.siteNames, demoTtpSiteName(options.sitePrefix)];
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pht-demo-'));
    fs.mkdirSync(path.join(this.dir, LOG_DIR), { recursive: true });
    // A train process that ends on its own fails whatever is waiting, at once.
    this.processes = new ProcessGroup((p, status) => this.failure.abort(new TrainProcessExitedError(p, status)));
  }

  /** Whether any process was started (and so there are logs worth keeping). */
  get startedProcesses(): boolean {
    return this.processes.list().length > 0;
  }

  /** Why the demo had to stop on its own (a train process ended), if it did. */
  get failureReason(): unknown {
    return this.failure.signal.aborted ? this.failure.signal.reason : undefined;
  }

  /** Runs everything up to (not including) the shutdown; resolves with whether both analyses agree. */
  async run(interrupt: AbortSignal): Promise<boolean> {
    const signal = AbortSignal.any([interrupt, this.failure.signal]);
    const root = repositoryRoot();
    const { print } = this;
    print('PHT demo: three hospitals keep their patients; two analyses travel to them.');
    print(`working directory: ${this.dir}`);
    print();

    await this.timed('infrastructure check', async () => {
      await this.ensureInfrastructure(root, signal);
      await this.claimSites();
    });
    const images = algorithmImages(this.options.imageRegistry);
    await this.timed('algorithm images built and pushed', async () => {
      print(`building and pushing ${images.descriptiveStats} and ${images.logisticRegression}`);
      await buildAlgorithmImages(
        this.processes,
        root,
        this.logFile('build-algorithm-images.log'),
        this.options.env,
        signal,
      );
    });

    const train = await this.timed('train started', () => this.startTrain(root, signal));
    const startupMs = Date.now() - this.startedAt;

    const pht = new PhtClient({ url: train.registryUrl, token: train.researcher.token });
    try {
      const patients = generateDemoData(this.options.seed);
      const centralStats: Record<string, CentralDescriptiveStats> = {
        pooled: centralDescriptiveStats([...patients.values()].flat()),
      };
      for (const site of train.sites) centralStats[site.name] = centralDescriptiveStats(patients.get(site.profile)!);

      print();
      print('1. Federated descriptive statistics (one task, one run per site)');
      const stats = await this.timed('descriptive statistics', () =>
        federatedDescriptiveStats(pht, this.siteNames, { image: images.descriptiveStats, signal }),
      );
      const statsComparison = compareDescriptiveStats(stats.stats, centralStats);
      print(
        `   task ${stats.taskId}: results from ${this.siteNames.length} sites, next to the central computation on all patients`,
      );
      for (const line of formatDescriptiveComparison(statsComparison)) print(`   ${line}`);

      print();
      print(
        '2. Federated logistic regression of 2-year survival on age, BMI and sex (Newton-Raphson, one task per round)',
      );
      const logistic = await this.timed('logistic regression', () =>
        federatedLogisticRegression(pht, this.siteNames, {
          image: images.logisticRegression,
          signal,
          onRound: (r) =>
            print(
              `   round ${r.round} (task ${r.taskId}, ${seconds(r.durationMs)}): log-likelihood ${r.logLikelihood.toFixed(6)} at [${r.coefficients.map((b) => b.toFixed(6)).join(', ')}]`,
            ),
        }),
      );
      const central = centralLogisticRegression([...patients.values()].flat());
      const logisticComparison = compareLogisticRegression(logistic.fit, central);
      print(
        `   ${logistic.fit.converged ? 'converged' : 'did NOT converge'} after ${logistic.rounds.length} rounds on ${logistic.fit.count} complete cases; central: ${central.iterations} iterations on ${central.count}`,
      );
      for (const line of formatLogisticComparison(logisticComparison)) print(`   ${line}`);
      print();
      print('3. Exact pooled median and quartiles of age, at a trusted third party (sealed end to end)');
      const quantiles = await this.timed('pooled quantiles at the TTP', async () => {
        const keys = new ResearcherKeys({
          keyFile: path.join(this.dir, 'researcher', 'researcher.key'),
          pinsFile: path.join(this.dir, 'researcher', 'pins.json'),
        });
        await keys.create(pht);
        return pooledQuantiles(pht, keys, this.siteNames, train.ttp, { image: images.pooledQuantiles, signal });
      });
      const allAges = [...patients.values()].flat().map((p) => p.age);
      const centralQuantiles = centralQuartiles(allAges);
      const quantilesAgree =
        quantiles.n === allAges.length &&
        (['q1', 'median', 'q3'] as const).every((k) => Math.abs(quantiles[k] - centralQuantiles[k]) <= 1e-9);
      print(
        `   tasks ${quantiles.sendTaskId} (sites → TTP's file service, sealed for the TTP) and ${quantiles.poolTaskId} (at the TTP, result sealed for the researcher)`,
      );
      for (const line of formatTable(
        ['age', 'n', 'q1', 'median', 'q3'],
        [
          ['at the TTP', String(quantiles.n), String(quantiles.q1), String(quantiles.median), String(quantiles.q3)],
          [
            'central',
            String(allAges.length),
            String(centralQuantiles.q1),
            String(centralQuantiles.median),
            String(centralQuantiles.q3),
          ],
        ],
      ))
        print(`   ${line}`);
      print('   neither the registry nor the researcher saw a patient value: the registry relayed only ciphertext,');
      print("   the ages went sealed to the TTP's file service, and the researcher received only the quantiles.");

      const roundMs = logistic.rounds.map((r) => r.durationMs);
      const roundsSummary = `${roundMs.length} rounds, ${seconds(roundMs.reduce((a, b) => a + b, 0) / Math.max(1, roundMs.length))} per round on average (fastest ${seconds(Math.min(...roundMs))}, slowest ${seconds(Math.max(...roundMs))})`;

      print();
      print('Timing');
      const rows = this.timings.map(([what, ms]) => [what, seconds(ms)]);
      rows.push(['start-up in all', seconds(startupMs)], ['so far', seconds(Date.now() - this.startedAt)]);
      for (const line of formatTable(['step', 'took'], rows)) print(`   ${line}`);
      print(`   logistic regression: ${roundsSummary}`);

      const agree = statsComparison.agree && logisticComparison.agree && quantilesAgree;
      print();
      print(
        agree
          ? 'RESULT: all three analyses agree with the central computation.'
          : 'RESULT: the federated and central answers DISAGREE.',
      );
      return agree;
    } finally {
      await pht.close();
    }
  }

  /**
   * Stops everything that was started, removes the clients' containers and networks, checks that
   * nothing is left, and removes the temp dir unless it is kept. `force` (a second Ctrl-C) kills
   * the processes instead of waiting for them. Never throws: it reports what it could not undo.
   */
  async shutdown(options: { keepDir: boolean; force: AbortSignal }): Promise<boolean> {
    const { print } = this;
    const started = Date.now();
    print();
    print('Shutting down');
    const onForce = (): void => this.processes.killAll();
    options.force.addEventListener('abort', onForce, { once: true });
    if (options.force.aborted) onForce();
    let clean = true;
    try {
      const killed = await stopTrain(this.processes, this.train, STOP_GRACE_MS);
      // Scripts (image build, infra.sh) cut short by an interruption.
      killed.push(
        ...(await this.processes.stop(
          this.processes.list().filter((p) => !p.stopRequested),
          STOP_GRACE_MS,
        )),
      );
      const stopped = this.processes.list().length;
      print(
        `   stopped ${plural(stopped, 'process', 'processes')}${killed.length ? ` (killed after ${STOP_GRACE_MS / 1000} s: ${killed.join(', ')})` : ''}`,
      );
      const stillRunning = this.processes.list().filter((p) => p.running);
      if (stillRunning.length) {
        clean = false;
        print(`   STILL RUNNING: ${stillRunning.map((p) => `${p.name} (pid ${p.pid})`).join(', ')}`);
      }
    } finally {
      options.force.removeEventListener('abort', onForce);
      this.processes.dispose();
    }

    if (!this.ownsSites) {
      // No client was started, so nothing in Docker is ours; these names may be another demo's.
      print('   Docker: untouched (no site client was started)');
    } else
      try {
        const docker = new Docker({ socketPath: DOCKER_SOCKET });
        let containers = 0;
        const networks: string[] = [];
        for (const site of this.dockerSites) {
          const removed = await removeSiteResources(docker, site);
          containers += removed.containers.length;
          networks.push(...removed.networks);
        }
        print(
          `   removed ${plural(containers, 'container')} and ${plural(networks.length, 'Docker network')} (${networks.join(', ') || 'none'}) of sites ${this.dockerSites.join(', ')}`,
        );
        const rules = await removeFirewallRules([
          ...new Set([...networks, ...this.dockerSites.map(defaultGatewayNetwork)]),
        ]);
        if (rules > 0) print(`   removed ${plural(rules, 'host firewall rule')} a killed client left behind`);
        const left = await Promise.all(this.dockerSites.map((site) => listSiteResources(docker, site)));
        const leftCount = left.reduce((n, r) => n + r.containers.length + r.networks.length, 0);
        if (leftCount > 0) {
          clean = false;
          print(
            `   LEFT BEHIND: ${leftCount} containers or networks labelled org.pht.site=${this.dockerSites.join('|')}`,
          );
        }
      } catch (e) {
        clean = false;
        print(`   could not clean up Docker: ${e instanceof Error ? e.message : String(e)}`);
      }

    if (this.processes.list().length > 0) {
      print(`   logs (${options.keepDir ? 'kept' : 'removed with the working directory; --keep keeps them'}):`);
      for (const p of this.processes.list())
        print(`     ${p.name.padEnd(30)} pid ${String(p.pid).padEnd(8)} ${p.logFile}`);
    }
    if (options.keepDir) {
      print(`   kept ${this.dir}`);
    } else {
      const unmounted = unmountAllUnder(this.dir);
      if (unmounted > 0) print(`   unmounted ${unmounted} run disk(s) that stopped clients left mounted`);
      fs.rmSync(this.dir, { recursive: true, force: true });
      print(`   removed ${this.dir}`);
    }
    print(
      `   shutdown took ${seconds(Date.now() - started)}; the demo took ${seconds(Date.now() - this.startedAt)} in all`,
    );
    print(
      clean
        ? '   nothing left behind: no processes, containers or networks of the demo'
        : '   NOT everything could be cleaned up (see above)',
    );
    return clean;
  }

  private logFile(name: string): string {
    return path.join(this.dir, LOG_DIR, name);
  }

  private async timed<T>(what: string, step: () => Promise<T>): Promise<T> {
    const started = Date.now();
    const result = await step();
    this.timings.push([what, Date.now() - started]);
    return result;
  }

  private async ensureInfrastructure(root: string, signal: AbortSignal): Promise<void> {
    const infra = { imageRegistry: this.options.imageRegistry, dockerCli: this.options.dockerCli };
    let status = await checkInfrastructure(infra, signal);
    if (!ready(status)) {
      const logFile = this.logFile('infra-up.log');
      this.print(
        `${describeMissing(status, infra.imageRegistry)}: running \`bash scripts/infra.sh up\` (log: ${logFile})`,
      );
      await bringInfrastructureUp(this.processes, root, logFile, this.options.env, signal);
      status = await checkInfrastructure(infra, signal);
      if (!ready(status))
        throw new Error(
          `${describeMissing(status, infra.imageRegistry)} even after \`bash scripts/infra.sh up\`; see ${logFile}`,
        );
      this.print('(the daemons infra.sh started stay up for the next run; `bash scripts/infra.sh down` stops them)');
    }
    this.print(`Docker engine, image registry ${infra.imageRegistry} and base image: ready`);
  }

  /**
   * Makes sure no other demo on this machine uses the same site names, then removes what an
   * earlier demo that was killed left in Docker under them. Left-overs matter: a client names a
   * run's container after its site and run id, and adopts an existing container of that name as
   * its own, so a stale container from an earlier registry would stand in for a new run.
   */
  private async claimSites(): Promise<void> {
    for (const site of this.dockerSites) {
      const users = processesWithCommandLine(clientCommandLineMarker(site));
      if (users.length > 0) {
        throw new Error(
          `another demo's client for site ${site} is running (pid ${users.join(', ')}); give this one other site names with --site-prefix`,
        );
      }
    }
    this.ownsSites = true;
    const docker = new Docker({ socketPath: DOCKER_SOCKET });
    for (const site of this.dockerSites) {
      const removed = await removeSiteResources(docker, site);
      const rules = await removeFirewallRules([...new Set([...removed.networks, defaultGatewayNetwork(site)])]);
      if (removed.containers.length + removed.networks.length + rules > 0) {
        this.print(
          `removed what an earlier demo left behind for ${site}: ${plural(removed.containers.length, 'container')}, ${plural(removed.networks.length, 'network')}, ${plural(rules, 'firewall rule')}`,
        );
      }
    }
  }

  private async startTrain(root: string, signal: AbortSignal): Promise<Train> {
    this.print(
      `starting ${this.siteNames.length} SPARQL endpoints, the registry (node master) and ${this.siteNames.length} site clients (node client)`,
    );
    const train = await startTrain(
      this.processes,
      this.train,
      {
        root,
        dir: this.dir,
        sitePrefix: this.options.sitePrefix,
        seed: this.options.seed,
        allowedImages: [`${escapeRegExp(this.options.imageRegistry)}/pht/.*`],
        env: trainEnvironment(process.env),
        readyTimeoutMs: READY_TIMEOUT_MS,
      },
      signal,
    );
    const patients = generateDemoData(this.options.seed);
    const rows = train.sites.map((site) => {
      const client = this.train.clients.find((c) => c.name === `client ${site.name}`)!;
      return [site.name, String(patients.get(site.profile)!.length), site.sparqlUrl, String(client.pid)];
    });
    for (const line of formatTable(['site', 'patients', 'SPARQL endpoint (127.0.0.1 only)', 'client pid'], rows))
      this.print(`   ${line}`);
    this.print(
      `   registry ${train.registryUrl} (pid ${this.train.master!.pid}); researcher "${train.researcher.name}"`,
    );
    return train;
  }
}

/** Median and quartiles by linear interpolation between order statistics (as the algorithm computes them). */
function centralQuartiles(values: number[]): { q1: number; median: number; q3: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => {
    const pos = (sorted.length - 1) * q;
    const lo = Math.floor(pos);
    const hi = Math.ceil(pos);
    return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
  };
  return { q1: at(0.25), median: at(0.5), q3: at(0.75) };
}

function ready(status: InfrastructureStatus): boolean {
  return status.docker && status.registry && status.baseImage;
}

function describeMissing(status: InfrastructureStatus, registry: string): string {
  if (!status.docker) return '`docker version` failed';
  if (!status.registry) return `the image registry does not answer on http://${registry}/v2/`;
  return `the base image ${registry}/pht/node-base:20 is not in the registry`;
}

/** The command line: options, signals, exit code. */
export async function main(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  print: Print = (line = '') => void process.stdout.write(line + '\n'),
): Promise<number> {
  const usage = 'Usage: node dist/demo/run-demo.js [--keep] [--site-prefix PREFIX] [--seed N]   (npm start)';
  const io = {
    stdout: (text: string) => print(text),
    stderr: (text: string) => void process.stderr.write(text + '\n'),
  };
  return runCommandLine(
    argv,
    { usage, options: { keep: 'boolean', 'site-prefix': 'value', seed: 'value' } },
    (args) => {
      const seed = integerOption(args, 'seed', DEMO_SEED);
      const sitePrefix = stringOption(args, 'site-prefix', '');
      if (!/^([a-z0-9][a-z0-9_-]{0,40})?$/.test(sitePrefix))
        throw new UsageError(
          '--site-prefix must be lowercase letters, digits, "-" or "_", starting with a letter or digit',
        );
      return runDemo({ keep: args.values.keep === true, sitePrefix, seed }, env, print);
    },
    io,
  );
}

async function runDemo(
  values: { keep: boolean; sitePrefix: string; seed: number },
  env: NodeJS.ProcessEnv,
  print: Print,
): Promise<number> {
  const { sitePrefix, seed } = values;
  const demo = new Demo(
    {
      keep: values.keep ?? false,
      sitePrefix,
      seed,
      imageRegistry: env.PHT_IMAGE_REGISTRY ?? '127.0.0.1:5050',
      dockerCli: env.DOCKER ?? defaultDockerCli(),
      env,
    },
    print,
  );
  const interrupt = new AbortController();
  const force = new AbortController();
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals += 1;
    if (signals === 1) {
      print(`\n${signal}: stopping the demo and cleaning up (again to stop waiting for processes)`);
      interrupt.abort(new DemoInterruptedError(signal));
    } else if (signals === 2) {
      print(`\n${signal}: killing the demo's processes`);
      force.abort();
    } else {
      process.exit(130); // the ProcessGroup's exit hook still SIGKILLs the children
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let agree = false;
  let failed = false;
  try {
    agree = await demo.run(interrupt.signal);
  } catch (e) {
    failed = true;
    // An abort surfaces as whatever the aborted call threw; the signal's reason says why.
    const reason: unknown = interrupt.signal.aborted ? interrupt.signal.reason : (demo.failureReason ?? e);
    print();
    print(
      reason instanceof DemoInterruptedError
        ? `demo ${reason.message}`
        : `demo failed: ${reason instanceof Error ? reason.message : String(reason)}`,
    );
  }
  // A failed demo keeps its logs for whoever wants to look; an interrupted one does not.
  const keepDir = values.keep || (failed && !interrupt.signal.aborted && demo.startedProcesses);
  const clean = await demo.shutdown({ keepDir: keepDir ?? false, force: force.signal });
  process.removeListener('SIGINT', onSignal);
  process.removeListener('SIGTERM', onSignal);
  if (interrupt.signal.aborted) return 130;
  return agree && clean ? 0 : 1;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
