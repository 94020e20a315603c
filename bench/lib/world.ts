import { PhtClient } from '../../sdk/index.js';
import { seedPrincipals, makeDataDir, startRegistryProcess, type RegistryProcess } from './registry-process.js';
import { runCommandLine, stringOption, UsageError, type OptionKind } from '../../shared/command-line.js';

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

/** A benchmark's options, read by the shared strict parser (an unknown option is refused with exit 2). */
export interface BenchArgs {
  /** A `--name value` option, or the fallback. */
  string(name: string, fallback: string): string;
  /** A `--name N` option as a non-negative number, or the fallback. */
  number(name: string, fallback: number): number;
  /** Whether the boolean `--name` was given. */
  flag(name: string): boolean;
}

/**
 * Runs a benchmark's main with its command line parsed strictly against `options` (`--help`
 * prints `usage`), and sets the exit code; errors are printed, not thrown at top level.
 */
export function runMain(
  spec: { usage: string; options: Record<string, OptionKind> },
  main: (args: BenchArgs) => Promise<void>,
): void {
  runCommandLine(process.argv.slice(2), spec, async (parsed) => {
    const args: BenchArgs = {
      string: (name, fallback) => stringOption(parsed, name, fallback),
      number: (name, fallback) => {
        const raw = stringOption(parsed, name);
        const value = raw === undefined ? fallback : Number(raw);
        if (!Number.isFinite(value) || value < 0)
          throw new UsageError(`--${name} must be a non-negative number, got "${raw ?? ''}"`);
        return value;
      },
      flag: (name) => parsed.values[name] === true,
    };
    await main(args);
    return 0;
  }).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
      process.exitCode = 1;
    },
  );
}
