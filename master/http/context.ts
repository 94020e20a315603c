import type { Logger } from '../../shared/logger.js';
import type { MasterConfig } from '../config.js';
import type { RegistryEvents } from '../events.js';
import type { WaitingPolls } from '../hand-out.js';
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
  /** Long polls waiting for work, to hand new runs to in one batch (created by createApp when absent). */
  polls?: WaitingPolls;
  /** Public keys relayed by the registry (opened from config.dataDir when absent). */
  keys?: PublicKeys;
}
