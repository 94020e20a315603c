/**
 * The one command-line parser of every PHT program (master, client, fileservice, pht, the demo and
 * bench scripts). Strict: an option the program does not declare is refused, never ignored
 * (`node master --prot 5001` must not start a registry on the default port).
 *
 * Usage:
 * ```ts
 * const USAGE = 'Usage: node thing [--port N] [--verbose] FILE';
 * const exit = runCommandLine(process.argv.slice(2), {
 *   usage: USAGE,
 *   options: { port: 'value', verbose: 'boolean', data: 'list' },   // --help/-h are always accepted
 *   positionals: { min: 1, max: 1 },                  // default: none allowed
 * }, (args) => {
 *   args.values.port;        // string | undefined ('value' options; `--port 5001` or `--port=5001`)
 *   args.values.verbose;     // true | undefined ('boolean' options; a value given to one is refused)
 *   args.values.data;        // string[] | undefined ('list' options may be given many times)
 *   args.positionals[0];     // the FILE
 *   return 0;                // the exit code (or a promise of one)
 * });
 * ```
 * `runCommandLine` prints USAGE on `--help`/`-h` (exit 0), and `error: …` plus USAGE on stderr for
 * anything refused (exit 2); a UsageError thrown by the handler is reported the same way.
 * `parseCommandLine` is the parser alone: it returns the values or throws UsageError.
 */
import { parseArgs } from 'node:util';

/** 'value' takes an argument (`--name X` or `--name=X`); 'boolean' takes none; 'list' is a value that may repeat. */
export type OptionKind = 'value' | 'boolean' | 'list';

export interface CommandLineSpec {
  /** The program's usage text: printed on --help and after every refusal. */
  usage: string;
  /** Every option the program takes, by long name (without the dashes). */
  options: Readonly<Record<string, OptionKind>>;
  /** How many positional arguments are allowed (default: none). */
  positionals?: { min?: number; max?: number };
}

export interface ParsedCommandLine {
  /** Value options as strings, boolean options as `true`, list options as arrays; absent options are missing. */
  values: Record<string, string | true | string[] | undefined>;
  positionals: string[];
  help: boolean;
}

/** A command line the program refuses: exit code 2 with the usage line. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Parses `argv` strictly against `spec`; throws UsageError naming the first problem. */
export function parseCommandLine(argv: readonly string[], spec: CommandLineSpec): ParsedCommandLine {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {
    help: { type: 'boolean', short: 'h' },
  };
  for (const [name, kind] of Object.entries(spec.options)) {
    options[name] = { type: kind === 'boolean' ? 'boolean' : 'string', multiple: kind === 'list' };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: true });
  } catch (e) {
    throw new UsageError(describeParseError(e));
  }
  const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
  const help = values.help === true;
  const out: ParsedCommandLine['values'] = {};
  for (const [name, value] of Object.entries(values)) {
    if (name === 'help') continue;
    out[name] = value === true ? true : typeof value === 'string' || Array.isArray(value) ? value : undefined;
  }
  const { min = 0, max = 0 } = spec.positionals ?? {};
  if (!help) {
    if (parsed.positionals.length > max)
      throw new UsageError(
        max === 0
          ? `unexpected argument "${parsed.positionals[0]}"`
          : `too many arguments: "${parsed.positionals.slice(max).join(' ')}"`,
      );
    if (parsed.positionals.length < min) throw new UsageError('missing argument');
  }
  return { values: out, positionals: parsed.positionals, help };
}

/**
 * Parses `argv`, then runs `handler` with the result; resolves with the exit code. Prints the
 * usage for --help (0) and for a refused command line or a UsageError from the handler (2).
 */
export async function runCommandLine(
  argv: readonly string[],
  spec: CommandLineSpec,
  handler: (args: ParsedCommandLine) => number | Promise<number>,
  io: CommandLineIo = { stdout: (text) => console.log(text), stderr: (text) => console.error(text) },
): Promise<number> {
  try {
    const args = parseCommandLine(argv, spec);
    if (args.help) {
      io.stdout(spec.usage.trimEnd());
      return 0;
    }
    return await handler(args);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    io.stderr(`error: ${e.message}\n${spec.usage.trimEnd()}`);
    return 2;
  }
}

/** Where runCommandLine prints: each call is one block of text without its final newline. */
export interface CommandLineIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

/** Reads a value option as a non-negative integer (or the fallback when absent); refuses anything else. */
export function integerOption(
  args: ParsedCommandLine,
  name: string,
  fallback: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const raw = args.values[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (typeof raw !== 'string' || !/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n > max)
    throw new UsageError(`--${name} must be an integer from 0 to ${max}, got "${String(raw)}"`);
  return n;
}

/** Reads a value option as a string (or the fallback when absent). */
export function stringOption(args: ParsedCommandLine, name: string, fallback: string): string;
export function stringOption(args: ParsedCommandLine, name: string): string | undefined;
export function stringOption(args: ParsedCommandLine, name: string, fallback?: string): string | undefined {
  const raw = args.values[name];
  return typeof raw === 'string' ? raw : fallback;
}

/** Node's parseArgs messages, rephrased for people (they mention internal details and `strict`). */
function describeParseError(e: unknown): string {
  const code = (e as { code?: string }).code;
  const message = e instanceof Error ? e.message : String(e);
  const option = /'(?:-\w, )?(--?[\w-]+)/.exec(message)?.[1];
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${option ?? message}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (/does not take an argument/.test(message)) return `option ${option ?? ''} takes no value`;
      if (/argument missing/.test(message)) return `option ${option ?? ''} needs a value`;
      if (/ambiguous/.test(message)) return `option ${option ?? ''} needs a value`;
      return message;
    default:
      return message;
  }
}

/** Reads a list option (every occurrence, in order); empty when absent. */
export function listOption(args: ParsedCommandLine, name: string): string[] {
  const raw = args.values[name];
  return Array.isArray(raw) ? raw : typeof raw === 'string' ? [raw] : [];
}
