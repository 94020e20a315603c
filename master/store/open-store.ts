import fs from 'node:fs';
import path from 'node:path';
import { SqliteRegistryStore } from './sqlite-store.js';

/** The registry's database in its data directory (created if missing, migrated on open). */
export function openStore(dataDir: string): SqliteRegistryStore {
  fs.mkdirSync(dataDir, { recursive: true });
  return new SqliteRegistryStore(path.join(dataDir, 'registry.sqlite'));
}
