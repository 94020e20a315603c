import type { TestProject } from 'vitest/node';
import { freePort } from './ports.js';
import { ensureTestDatabase, startPostgresCluster, TEST_DATABASE_ENV, type PostgresCluster } from './postgres.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Superuser URL of the PostgreSQL server the unit-postgres project runs against. */
    postgresUrl: string;
  }
}

/**
 * The unit-postgres project needs a PostgreSQL server. CI starts one and passes its URL in
 * PHT_TEST_DATABASE_URL; without it, CI fails here (a suite that skips itself would hide that
 * half the registry tests did not run). A developer's run starts a throwaway cluster instead.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let url = process.env[TEST_DATABASE_ENV];
  let cluster: PostgresCluster | null = null;
  if (!url) {
    if (process.env.CI)
      throw new Error(
        `${TEST_DATABASE_ENV} is not set: the unit-postgres project runs the registry suite on PostgreSQL (.ci/run starts one)`,
      );
    cluster = await startPostgresCluster(await freePort());
    url = cluster.url;
  }
  await ensureTestDatabase(url);
  project.provide('postgresUrl', url);
  return async () => {
    await cluster?.destroy();
  };
}
