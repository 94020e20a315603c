import { runProgram, waitForSignal } from '../shared/process-lifecycle.js';
import {
  integerOption,
  runCommandLine,
  stringOption,
  UsageError as CommandLineError,
  type ParsedCommandLine,
} from '../shared/command-line.js';
import { ConfigError, coerceError } from '../shared/errors.js';
import { createLogger } from '../shared/logger.js';
import { ADMIN_USAGE, runAdminCommand, UsageError } from './admin-cli.js';
import { loadMasterConfig, type MasterConfig } from './config.js';
import { ResultFileStore } from './result-files.js';
import { runExpireCommand } from './retention.js';
import { openStore, SHARED_FILES_GRACE_MS, startRegistry } from './server.js';

const USAGE = `Usage: node master [serve] [--port N] [--host ADDR] [--data-dir DIR] [--database URL] [--config FILE]
         [--retain-logs AGE] [--retain-files AGE] [--retain-runs AGE]
  Starts the PHT registry (default port 5000, data in ./data; --database postgres://… keeps the
  records in PostgreSQL instead of ./data/registry.sqlite, and several registries may share it).
  --retain-logs 30d, --retain-files 90d: finished runs' logs and result files are removed at
  that age (retention.logs, retention.files in the config file); --retain-runs 1y: finished
  tasks are deleted whole (runs, logs, files) that long after they ended (retention.runs).
       node master expire [--dry-run] [--retain-logs AGE] [--retain-files AGE] [--retain-runs AGE]
  Expires what retention makes due now, in batches; --dry-run only says what would go.
  Environment: PHT_PORT, PHT_HOST, PHT_DATA_DIR, PHT_DATABASE_URL, PHT_LOG_LEVEL, PHT_LOG_FORMAT=json|pretty

${ADMIN_USAGE}`;

/** Each command's own options and how many words may follow it; every command takes --data-dir, --database and --config. */
const COMMANDS: Record<string, { options: string[]; maxArgs: number }> = {
  serve: { options: ['port', 'host', 'retain-logs', 'retain-files', 'retain-runs'], maxArgs: 0 },
  expire: { options: ['dry-run', 'retain-logs', 'retain-files', 'retain-runs'], maxArgs: 0 },
  'create-site': { options: ['json', 'org'], maxArgs: 1 },
  'create-user': { options: ['json', 'role', 'org'], maxArgs: 1 },
  'create-org': { options: ['json'], maxArgs: 1 },
  'set-org': { options: ['json'], maxArgs: 3 },
  'create-project': { options: ['json'], maxArgs: 1 },
  'add-to-project': { options: ['json'], maxArgs: 3 },
  list: { options: ['json'], maxArgs: 1 },
  revoke: { options: ['json'], maxArgs: 2 },
  enable: { options: ['json'], maxArgs: 2 },
  'rotate-key': { options: ['json'], maxArgs: 2 },
  'add-ttp': { options: ['json', 'url', 'public-key'], maxArgs: 1 },
  'revoke-key': { options: ['json'], maxArgs: 2 },
};

export function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  return runCommandLine(
    argv,
    {
      usage: USAGE,
      options: {
        port: 'value',
        host: 'value',
        'data-dir': 'value',
        database: 'value',
        config: 'value',
        json: 'boolean',
        role: 'value',
        org: 'value',
        url: 'value',
        'public-key': 'value',
        'retain-logs': 'value',
        'retain-files': 'value',
        'retain-runs': 'value',
        'dry-run': 'boolean',
      },
      positionals: { max: 4 },
    },
    (args) => run(args, env),
  );
}

async function run(args: ParsedCommandLine, env: NodeJS.ProcessEnv): Promise<number> {
  const command = args.positionals[0] ?? 'serve';
  const rest = args.positionals.slice(1);
  const known = COMMANDS[command];
  if (!known) throw new CommandLineError(`unknown command "${command}"`);
  for (const [name, value] of Object.entries(args.values))
    if (value !== undefined && !['data-dir', 'database', 'config', ...known.options].includes(name))
      throw new CommandLineError(`option --${name} is not an option of "${command}"`);
  const max = known.maxArgs;
  if (rest.length > max)
    throw new CommandLineError(`"${command}" takes at most ${max} argument(s); got "${rest.join(' ')}"`);
  try {
    const port = args.values.port === undefined ? undefined : integerOption(args, 'port', 0, 65535);
    const config = loadMasterConfig({
      file: stringOption(args, 'config') ?? null,
      env,
      flags: {
        port,
        host: stringOption(args, 'host'),
        dataDir: stringOption(args, 'data-dir'),
        database: stringOption(args, 'database'),
        retainLogs: stringOption(args, 'retain-logs'),
        retainFiles: stringOption(args, 'retain-files'),
        retainRuns: stringOption(args, 'retain-runs'),
      },
    });
    if (command === 'expire') {
      await expireCommand(config, args.values['dry-run'] === true);
      return 0;
    }
    if (command !== 'serve') {
      // Missing names are reported by the command itself, with what it expected.
      await runAdminCommand(
        command,
        rest,
        args.values,
        { dataDir: config.dataDir, database: config.database, poolSize: 1 },
        (text) => console.log(text),
      );
      return 0;
    }
    const logger = createLogger({ level: config.logLevel, defaultMeta: { component: 'master' } }, env);
    const registry = await startRegistry(config, logger);
    await waitForSignal(logger, () => registry.close());
    return 0;
  } catch (e) {
    if (e instanceof UsageError || e instanceof ConfigError) {
      console.error(`error: ${e.message}`);
      return 2;
    }
    if (e instanceof CommandLineError) throw e;
    console.error(`error: ${coerceError(e).message}`);
    return 1;
  }
}

/** `node master expire`: one sweep with this config's retention, or its preview. */
async function expireCommand(config: MasterConfig, dryRun: boolean): Promise<void> {
  const store = await openStore({ dataDir: config.dataDir, database: config.database, poolSize: 1 });
  try {
    const files = new ResultFileStore(config.dataDir, config.database ? SHARED_FILES_GRACE_MS : 0);
    // Each task deleted whole is written to stderr as the server would log it.
    const logger = createLogger({ level: config.logLevel, defaultMeta: { component: 'retention' } });
    await runExpireCommand(store, files, config.retention, dryRun, (text) => console.log(text), logger);
  } finally {
    await store.close();
  }
}

if (require.main === module) runProgram(main);
