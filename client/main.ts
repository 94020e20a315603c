import { parseArgs } from '../shared/config-loader.js';
import { ConfigError, coerceError } from '../shared/errors.js';
import { createLogger } from '../shared/logger.js';
import { loadClientConfig } from './config.js';
import { serveMetrics } from '../shared/metrics-server.js';
import { ClientMetrics } from './metrics.js';
import { SiteClient } from './site-client.js';

const USAGE = `Usage: node client [--config FILE]
  Runs the PHT site client (default config: ./config.json; see config.example.json).
  Environment overrides: PHT_REGISTRY_URL, PHT_API_KEY, PHT_SPARQL_ENDPOINT, PHT_WORK_DIR,
  PHT_ALLOWED_IMAGES (JSON list), PHT_LOG_LEVEL, PHT_LOG_FORMAT=json|pretty`;

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const { flags } = parseArgs(argv, ['help']);
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const file = typeof flags.config === 'string' ? flags.config : (env.PHT_CLIENT_CONFIG ?? 'config.json');
  let client: SiteClient;
  try {
    const config = loadClientConfig(file, env);
    const logger = createLogger({ level: config.logLevel, defaultMeta: { component: 'client' } }, env);
    // Metrics only when configured: the listener is loopback unless the config says otherwise.
    const metrics = config.metrics ? new ClientMetrics() : undefined;
    const listener =
      metrics && config.metrics ? await serveMetrics(metrics.registry, config.metrics.host, config.metrics.port) : null;
    if (listener) logger.info('metrics listening', { url: listener.url });
    client = new SiteClient({ config, logger, ...(metrics ? { metrics } : {}) });
    // A site client must keep serving: a stray rejection is logged loudly, never fatal.
    process.on('unhandledRejection', (reason) =>
      logger.error('unhandled rejection', { error: coerceError(reason).stack }),
    );
    const stopping = new Promise<void>((resolve) => {
      let signals = 0;
      const onSignal = (signal: string) => {
        if (++signals > 1) process.exit(130);
        logger.info(`received ${signal}; stopping (running containers are picked up at the next start)`);
        client
          .close()
          .then(() => listener?.close())
          .then(resolve, () => process.exit(1));
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
    });
    await client.start();
    await stopping;
    return 0;
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`error: ${e.message}`);
      return 2;
    }
    console.error(`error: ${coerceError(e).message}`);
    return 1;
  }
}
