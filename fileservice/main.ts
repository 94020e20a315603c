import { runProgram, waitForSignal } from '../shared/process-lifecycle.js';
import {
  integerOption,
  runCommandLine,
  stringOption,
  UsageError as CommandLineError,
  type ParsedCommandLine,
} from '../shared/command-line.js';
import { CryptoError } from '../shared/crypto/index.js';
import { ConfigError, coerceError } from '../shared/errors.js';
import { createLogger } from '../shared/logger.js';
import { ADMIN_USAGE, runAdminCommand } from './admin-cli.js';
import { loadFileServiceConfig } from './config.js';
import { UsageError } from './errors.js';
import { startFileService } from './server.js';

const USAGE = `Usage: node fileservice [serve] [--port N] [--host ADDR] [--data-dir DIR] [--config FILE] [--key-file FILE]
  Starts the PHT file service of a trusted third party (default port 5100, data in ./fileservice-data).
  Environment: PHT_PORT, PHT_HOST, PHT_DATA_DIR, PHT_TTP_KEY_FILE, PHT_LOG_LEVEL, PHT_LOG_FORMAT=json|pretty

${ADMIN_USAGE}`;

/** Each command's own options and how many words may follow it; all take --data-dir, --config, --key-file. */
const COMMANDS: Record<string, { options: string[]; maxArgs: number }> = {
  serve: { options: ['port', 'host'], maxArgs: 0 },
  'create-sender': { options: ['json'], maxArgs: 1 },
  'create-reader': { options: ['json'], maxArgs: 1 },
  list: { options: ['json'], maxArgs: 0 },
  revoke: { options: ['json'], maxArgs: 2 },
  enable: { options: ['json'], maxArgs: 2 },
  'rotate-key': { options: ['json'], maxArgs: 2 },
  keys: { options: ['json', 'grace'], maxArgs: 1 },
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
        config: 'value',
        'key-file': 'value',
        grace: 'value',
        json: 'boolean',
      },
      positionals: { max: 3 },
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
    if (value !== undefined && !['data-dir', 'config', 'key-file', ...known.options].includes(name))
      throw new CommandLineError(`option --${name} is not an option of "${command}"`);
  if (rest.length > known.maxArgs)
    throw new CommandLineError(`"${command}" takes at most ${known.maxArgs} argument(s); got "${rest.join(' ')}"`);
  try {
    const port = args.values.port === undefined ? undefined : integerOption(args, 'port', 0, 65535);
    const config = loadFileServiceConfig({
      file: stringOption(args, 'config') ?? null,
      env,
      flags: {
        port,
        host: stringOption(args, 'host'),
        dataDir: stringOption(args, 'data-dir'),
        keyFile: stringOption(args, 'key-file'),
      },
    });
    if (command !== 'serve') {
      runAdminCommand(command, rest, args.values, config, (text) => console.log(text));
      return 0;
    }
    const logger = createLogger({ level: config.logLevel, defaultMeta: { component: 'fileservice' } }, env);
    const service = await startFileService(config, logger);
    await waitForSignal(logger, () => service.close());
    return 0;
  } catch (e) {
    if (e instanceof UsageError || e instanceof ConfigError) {
      console.error(`error: ${e.message}`);
      return 2;
    }
    if (e instanceof CommandLineError) throw e;
    if (e instanceof CryptoError) {
      console.error(`error: ${e.message}`);
      return 1;
    }
    console.error(`error: ${coerceError(e).message}`);
    return 1;
  }
}

if (require.main === module) runProgram(main);
