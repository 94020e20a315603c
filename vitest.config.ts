import { defineConfig } from 'vitest/config';

// Projects: fast unit/integration tests (the registry's also on PostgreSQL), and end-to-end suites against the real Docker engine
// and SPARQL servers (slower, run one file at a time so containers do not fight over 2 cores).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/e2e/**', 'test/postgres/**'],
          environment: 'node',
          testTimeout: 30_000,
          setupFiles: ['test/helpers/temp-dirs-setup.ts'],
        },
      },
      {
        // The registry suite again, on PostgreSQL: each test registry gets a fresh schema.
        test: {
          name: 'unit-postgres',
          include: ['test/master/**/*.test.ts', 'test/postgres/**/*.test.ts'],
          environment: 'node',
          env: { PHT_TEST_BACKEND: 'postgres' },
          globalSetup: ['test/helpers/postgres-global-setup.ts'],
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          globalSetup: ['test/e2e/global-setup.ts'],
          setupFiles: ['test/helpers/temp-dirs-setup.ts'],
          environment: 'node',
          testTimeout: 180_000,
          hookTimeout: 180_000,
          pool: 'forks',
          poolOptions: { forks: { singleFork: true } },
        },
      },
    ],
  },
});
