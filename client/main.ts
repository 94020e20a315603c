import { runCommandLine, stringOption, UsageError } from '../shared/command-line.js';
import { ConfigError, coerceError } from '../shared/errors.js';
import { createLogger } from '../shared/logger.js';
import { loadClientConfig } from './config.js';
import { serveMetrics } from '../shared/metrics-server.js';
import { ClientMetrics } from './metrics.js';
import { KEYS_USAGE, runKeysCommand } from './keys-command.js';
import { isOfficerCommand, runOfficerCommand } from './commands/index.js';
import { SiteClient } from './site-client.js';

const USAGE = `Usage: node client [--config FILE]
  Runs the PHT site client (default config: ./config.json; see config.example.json).
  Environment overrides: PHT_REGISTRY_URL, PHT_API_KEY, PHT_SPARQL_ENDPOINT, PHT_WORK_DIR,
  PHT_ALLOWED_IMAGES (JSON list), PHT_LOG_LEVEL, PHT_LOG_FORMAT=json|pretty
  SIGINT/SIGTERM stop it (within 15 s; running containers are picked up at the next start);
  a second signal exits at once.
The site officer's commands (each with --help): node client audit [verify], node client review RUN,
  node client approve RUN, node client reject RUN --reason TEXT
${KEYS_USAGE}`;

export function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  // The site officer's commands (audit, review, approve, reject) read and write the site's files only.
  if (isOfficerCommand(argv[0])) return runOfficerCommand(argv, env);
  const spec = {
    usage: USAGE,
    options: { config: 'value', grace: 'value', json: 'boolean' } as const,
    positionals: { max: 2 },
  };
  return runCommandLine(argv, spec, async (args) => {
    const file = stringOption(args, 'config') ?? env.PHT_CLIENT_CONFIG ?? 'config.json';
    try {
      const config = loadClientConfig(file, env);
      if (args.positionals.length === 0 && (args.values.grace !== undefined || args.values.json !== undefined))
        throw new UsageError('--grace and --json belong to "node client keys …"');
      if (args.positionals.length > 0) {
        if (args.positionals[0] !== 'keys') throw new UsageError(`unknown command "${args.positionals[0]}"`);
        const flags = {
          ...(typeof args.values.grace === 'string' ? { grace: args.values.grace } : {}),
          ...(args.values.json ? { json: true as const } : {}),
        };
        await runKeysCommand(args.positionals[1], flags, config, (text) => console.log(text));
        return 0;
      }
      const logger = createLogger({ level: config.logLevel, defaultMeta: { component: 'client' } }, env);
      // Metrics only when configured: the listener is loopback unless the config says otherwise.
      const metrics = config.metrics ? new ClientMetrics() : undefined;
      const listener =
        metrics && config.metrics
          ? await serveMetrics(metrics.registry, config.metrics.host, config.metrics.port)
          : null;
      if (listener) logger.info('metrics listening', { url: listener.url });
      const client = new SiteClient({ config, logger, ...(metrics ? { metrics } : {}) });
      // A site client must keep serving: a stray rejection is logged loudly, never fatal.
      process.on('unhandledRejection', (reason) =>
        logger.error('unhandled rejection', { error: coerceError(reason).stack }),
      );
      let signals = 0;
      const stopped = new Promise<number>((resolve) => {
        const onSignal = (signal: string) => {
          if (++signals > 1) {
            // The operator insists: exit now; the work folder lets the next start carry on.
            logger.warn(`received ${signal} again; exiting at once`);
            process.exit(130);
          }
          logger.info(`received ${signal}; stopping (running containers are picked up at the next start)`);
          client.close().then(
            () => void listener?.close().finally(() => resolve(0)),
            (e: unknown) => {
              logger.error('shutdown did not complete', { error: coerceError(e).message });
              resolve(1);
            },
          );
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
      });
      try {
        await client.start();
      } catch (e) {
        // A signal during start-up ends start() with the shutdown's abort: that is a clean stop.
        if (signals > 0) return await stopped;
        await client.close().catch(() => undefined);
        throw e;
      }
      return await stopped;
    } catch (e) {
      if (e instanceof ConfigError) {
        console.error(`error: ${e.message}`);
        return 2;
      }
      console.error(`error: ${coerceError(e).message}`);
      return 1;
    }
  });
}
