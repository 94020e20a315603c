import { parseArgs } from '../shared/config-loader.js';
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

const VALUE_FLAGS = ['port', 'host', 'data-dir', 'config', 'key-file', 'grace'];
const BOOLEAN_FLAGS = ['json', 'help'];

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const { flags, positional } = parseArgs(argv, BOOLEAN_FLAGS);
  const unknown = Object.keys(flags).filter((f) => !VALUE_FLAGS.includes(f) && !BOOLEAN_FLAGS.includes(f));
  if (unknown.length) {
    console.error(`error: unknown option --${unknown[0]}\n${USAGE.split('\n')[0]}`);
    return 2;
  }
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const command = positional[0] ?? 'serve';
  try {
    for (const f of VALUE_FLAGS) if (flags[f] === true) throw new UsageError(`--${f} needs a value`);
    const port = flags.port === undefined ? undefined : Number(flags.port);
    if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535))
      throw new UsageError('--port must be an integer from 0 to 65535');
    const str = (name: string) => (typeof flags[name] === 'string' ? (flags[name] as string) : undefined);
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
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
