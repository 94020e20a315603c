import { PostgresRegistryStore } from '../../master/store/postgres-store.js';
import { freshSchema } from './postgres.js';

/**
 * `count` stores on one fresh schema: several registry processes sharing one database, for tests
 * of what they do to each other. Each store and the schema are closed and dropped through
 * `cleanup` (run in reverse order after the test).
 */
export async function storesOnFreshSchema(
  adminUrl: string,
  count: number,
  poolSize: number,
  cleanup: (() => Promise<void>)[],
): Promise<PostgresRegistryStore[]> {
  const schema = await freshSchema(adminUrl);
  cleanup.push(() => schema.drop());
  const stores: PostgresRegistryStore[] = [];
  for (let i = 0; i < count; i++) {
    const store = await PostgresRegistryStore.open({ connectionString: schema.url, poolSize });
    cleanup.push(() => store.close());
    stores.push(store);
  }
  return stores;
}
