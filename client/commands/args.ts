/** A usage error: the command prints the usage line and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/**
 * Strict flag parsing for the officer's subcommands: only the listed flags, each given once;
 * `valued` flags take the next argument (or `--flag=value`). Anything else is a usage error.
 */
export function parseCommandArgs(
  argv: readonly string[],
  spec: { valued: readonly string[]; boolean: readonly string[]; maxPositional: number },
): { flags: Record<string, string | true>; positional: string[] } {
  const flags: Record<string, string | true> = {};
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq > 0 ? arg.slice(2, eq) : arg.slice(2);
      if (name in flags) throw new UsageError(`--${name} given twice`);
      if (spec.valued.includes(name)) {
        const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
        if (value === undefined || value === '') throw new UsageError(`--${name} needs a value`);
        flags[name] = value;
      } else if (spec.boolean.includes(name) && eq < 0) flags[name] = true;
      else throw new UsageError(`unknown option ${arg.slice(0, 60)}`);
    } else positional.push(arg);
  }
  if (positional.length > spec.maxPositional)
    throw new UsageError(`unexpected argument ${positional[spec.maxPositional]!.slice(0, 60)}`);
  return { flags, positional };
}

/** A run id as the officer types it. */
export function parseRunId(text: string | undefined): number {
  if (text === undefined || !/^[1-9][0-9]{0,15}$/.test(text))
    throw new UsageError('RUN must be a run id (a positive integer)');
  return Number(text);
}
