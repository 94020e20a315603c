import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { compileMasterConfig, type MasterConfig } from '../../master/config.js';
import { startRegistry, type RunningRegistry } from '../../master/server.js';
import { silentLogger, type Logger } from '../../shared/logger.js';
import { masterConfigSchema } from '../../shared/config-schemas.js';
import { loadRawConfig } from '../../shared/config-loader.js';

export interface TestRegistry extends RunningRegistry {
  dataDir: string;
  config: MasterConfig;
  createSite(name: string): Promise<string>;
  createUser(name: string, role?: 'researcher' | 'admin'): Promise<string>;
  /** Stops the server and removes its data directory. */
  destroy(): Promise<void>;
  /** Stops the server but keeps the data directory, then starts a new one on it (same port). */
  restart(): Promise<TestRegistry>;
}

/**
 * A real registry on an ephemeral loopback port with a fresh SQLite file in a temp dir.
 * `overrides` is a raw config fragment (as in a config file), e.g. { lease: '1s' }.
 */
export async function startTestRegistry(
  overrides: Record<string, unknown> = {},
  options: { dataDir?: string; port?: number; logger?: Logger } = {},
): Promise<TestRegistry> {
  const dataDir = options.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'pht-registry-'));
  const raw = loadRawConfig({
    file: null,
    fileRequired: false,
    schema: masterConfigSchema,
    env: {},
    envOverrides: [],
    flagOverrides: { host: '127.0.0.1', port: options.port ?? 0, dataDir, sweepInterval: '200ms', ...overrides },
  });
  const config = compileMasterConfig(raw);
  const logger = options.logger ?? silentLogger();
  const registry = await startRegistry(config, logger);
  const fixture: TestRegistry = {
    ...registry,
    dataDir,
    config,
    async createSite(name) {
      return (await registry.store.createPrincipal('site', name, 'site')).secret;
    },
    async createUser(name, role = 'researcher') {
      return (await registry.store.createPrincipal('user', name, role)).secret;
    },
    async destroy() {
      await registry.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
    async restart() {
      await registry.close();
      return startTestRegistry(overrides, { dataDir, port: registry.port, logger });
    },
  };
  return fixture;
}
