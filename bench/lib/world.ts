import { PhtClient } from '../../sdk/index.js';
import { seedPrincipals, makeDataDir, startRegistryProcess, type RegistryProcess } from './registry-process.js';

export interface TrainWorld {
  registry: RegistryProcess;
  researcher: PhtClient;
  /** Site name → API key. */
  siteKeys: Map<string, string>;
  close(): Promise<void>;
}

/** A registry process with the given sites and one researcher, and the researcher's SDK client. */
export async function startWorld(
  sites: string[],
  registryOptions: Parameters<typeof startRegistryProcess>[0] = {},
): Promise<TrainWorld> {
  const dataDir = makeDataDir();
  const { siteKeys, userTokens } = await seedPrincipals(dataDir, sites, ['bench-researcher']);
  const registry = await startRegistryProcess({ ...registryOptions, dataDir });
  const researcher = new PhtClient({
    url: registry.url,
    token: userTokens.get('bench-researcher')!,
    timeoutMs: 120_000,
  });
  return {
    registry,
    researcher,
    siteKeys,
    async close() {
      await researcher.close();
      await registry.stop();
    },
  };
}

/** Reads `--name value` and `--flag` arguments. */
export function argOf(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback;
}

export function numberArg(name: string, fallback: number): number {
  const value = Number(argOf(name, String(fallback)));
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} must be a non-negative number`);
  return value;
}

/** Runs a benchmark's main and sets the exit code; errors are printed, not thrown at top level. */
export function runMain(main: () => Promise<void>): void {
  main().then(
    () => {
      process.exitCode = 0;
    },
    (e: unknown) => {
      console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
      process.exitCode = 1;
    },
  );
}
