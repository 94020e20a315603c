import { parseArgs } from '../shared/config-loader.js';
import { ConfigError, coerceError } from '../shared/errors.js';
import { createLogger } from '../shared/logger.js';
import { ADMIN_USAGE, runAdminCommand, UsageError } from './admin-cli.js';
import { loadMasterConfig } from './config.js';
import { startRegistry } from './server.js';

const USAGE = `Usage: node master [serve] [--port N] [--host ADDR] [--data-dir DIR] [--database URL] [--config FILE]
  Starts the PHT registry (default port 5000, data in ./data; --database postgres://… keeps the
  records in PostgreSQL instead of ./data/registry.sqlite, and several registries may share it).
  Environment: PHT_PORT, PHT_HOST, PHT_DATA_DIR, PHT_DATABASE_URL, PHT_LOG_LEVEL, PHT_LOG_FORMAT=json|pretty

${ADMIN_USAGE}`;

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const { flags, positional } = parseArgs(argv, ['json', 'help']);
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const command = positional[0] ?? 'serve';
  try {
    const port = flags.port === undefined ? undefined : Number(flags.port);
    if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535))
      throw new UsageError('--port must be an integer from 0 to 65535');
    const config = loadMasterConfig({
      file: typeof flags.config === 'string' ? flags.config : null,
      env,
      flags: {
        port,
        host: typeof flags.host === 'string' ? flags.host : undefined,
        dataDir: typeof flags['data-dir'] === 'string' ? flags['data-dir'] : undefined,
        database: typeof flags.database === 'string' ? flags.database : undefined,
      },
    });
    if (command !== 'serve') {
      await runAdminCommand(
        command,
        positional.slice(1),
        flags,
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
