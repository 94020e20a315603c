import path from 'node:path';
import { pathToFileURL } from 'node:url';

/** The slice of a build's store the benchmarks use to create principals. */
export interface SeedStore {
  createPrincipal(kind: 'site' | 'user', name: string, role: string): Promise<{ secret: string }>;
  close(): Promise<void> | void;
}

interface OpenStoreModule {
  openSqliteStore?: (dir: string) => SeedStore;
  openStore(location: unknown): SeedStore | Promise<SeedStore>;
}

/**
 * Opens the SQLite store of `root`'s build (this checkout or a baseline), with the build's own
 * migrations. Older commits export `openStore(dir)`; since the PostgreSQL merge it takes a
 * location object and the SQLite store is `openSqliteStore(dir)`.
 */
export async function openBuildStore(root: string, dataDir: string): Promise<SeedStore> {
  const mod = (await import(pathToFileURL(path.join(root, 'dist/master/store/open-store.js')).href)) as OpenStoreModule;
  return mod.openSqliteStore ? mod.openSqliteStore(dataDir) : await mod.openStore(dataDir);
}
