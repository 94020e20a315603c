import type { Logger } from '../../shared/logger.js';
import type { MasterConfig } from '../config.js';
import type { RegistryEvents } from '../events.js';
import type { RegistryMetrics } from '../metrics.js';
import type { PublicKeys } from '../public-keys.js';
import type { ResultFileStore } from '../result-files.js';
import type { RegistryStore } from '../store/registry-store.js';

/** What every route module needs; built once by the server. */
export interface RegistryContext {
  store: RegistryStore;
  events: RegistryEvents;
  files: ResultFileStore;
  config: MasterConfig;
  logger: Logger;
  /** Absent in tests that build a bare app. */
  metrics?: RegistryMetrics;
  /** Public keys relayed by the registry (opened from config.dataDir when absent). */
  keys?: PublicKeys;
}
