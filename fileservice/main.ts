import {
  integerOption,
  runCommandLine,
  stringOption,
  type ParsedCommandLine,
  UsageError as CommandLineUsageError,
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
  Environment: PHT_PORT, PHT_HOST, PHT_DATA_DIR, PHT_KEY_FILE, PHT_LOG_LEVEL, PHT_LOG_FORMAT=json|pretty

${ADMIN_USAGE}`;

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
  const positional = args.positionals;
  const flags = args.values;
  const command = positional[0] ?? 'serve';
  try {
    const port = flags.port === undefined ? undefined : integerOption(args, 'port', 0, 65535);
    const str = (name: string) => stringOption(args, name);
    const config = loadFileServiceConfig({
      file: str('config') ?? null,
      env,
      flags: { port, host: str('host'), dataDir: str('data-dir'), keyFile: str('key-file') },
    });
    if (command !== 'serve') {
      runAdminCommand(command, positional.slice(1), flags, config, (text) => console.log(text));
      return 0;
    }
    if (positional.length > 1) throw new UsageError(`unexpected argument "${positional[1]}"`);
    const logger = createLogger({ level: config.logLevel, defaultMeta: { component: 'fileservice' } }, env);
    const service = await startFileService(config, logger);
    await waitForSignal(logger, () => service.close());
    return 0;
  } catch (e) {
    if (e instanceof CommandLineUsageError) throw e; // runCommandLine prints it with the usage, exit 2
    if (e instanceof UsageError || e instanceof ConfigError) {
      console.error(`error: ${e.message}`);
      return 2;
    }
    if (e instanceof CryptoError) {
      console.error(`error: ${e.message}`);
      return 1;
    }
    console.error(`error: ${coerceError(e).message}`);
    return 1;
  }
}

/** Resolves after a clean shutdown on SIGINT/SIGTERM; a second signal exits at once. */
function waitForSignal(logger: { info: (m: string) => unknown }, shutdown: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (signal: string) => {
      if (stopping) process.exit(130);
      stopping = true;
      logger.info(`received ${signal}, shutting down`);
      shutdown().then(resolve, () => process.exit(1));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
