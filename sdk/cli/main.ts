/**
 * `pht`: the researcher's command line over the registry's REST API. `main()` takes its output
 * streams and environment as arguments so that tests can run it in-process; `run()` is what the
 * `pht` binary calls.
 */
import { parseCommandLine, UsageError as CommandLineError, type OptionKind } from '../../shared/command-line.js';
import { PhtClient } from '../client.js';
import { PhtApiError, PhtError } from '../errors.js';
import { COMMANDS, type Command } from './commands.js';
import { EXIT, UsageError, type CliIo } from './io.js';
import { terminalSafeJson, visible } from './terminal-text.js';

const GLOBAL_VALUE_FLAGS = ['url', 'token'];
const GLOBAL_BOOLEAN_FLAGS = ['json', 'help'];
/** Every option of every command: the parser refuses anything else; checkCommandLine then refuses another command's. */
const ALL_OPTIONS: Record<string, OptionKind> = Object.fromEntries([
  ...[...GLOBAL_VALUE_FLAGS, ...COMMANDS.flatMap((c) => c.valueFlags)].map((f) => [f, 'value'] as const),
  ...[...GLOBAL_BOOLEAN_FLAGS, ...COMMANDS.flatMap((c) => c.booleanFlags)]
    .filter((f) => f !== 'help')
    .map((f) => [f, 'boolean'] as const),
]);

export function usage(): string {
  const lines = COMMANDS.map((c) => `  pht ${c.name}${c.synopsis ? ` ${c.synopsis}` : ''}\n      ${c.summary}`);
  return `Usage: pht <command> [options]

Posts analyses (Docker images) to a PHT registry and collects what the sites send back.

Commands:
${lines.join('\n')}

Options:
  --url URL        the registry, e.g. http://localhost:5000 (default: $PHT_URL)
  --token TOKEN    a researcher token (default: $PHT_TOKEN; prefer the variable, flags show in ps)
  --json           print machine-readable JSON only (errors go to stderr as JSON)
  --help           this help; "pht <command> --help" for one command

--timeout takes seconds (90) or a duration (90s, 5m, 2h). Without it, --wait waits until the task
is final. On a terminal the runs' states are redrawn in place; otherwise each change is one line.

Exit codes:
  0  success; for "task create --wait" and "task wait": the task completed
  1  the task failed, was cancelled, or did not finish within --timeout
  2  usage error
  3  the registry refused the request or could not be reached (or another error stopped pht)
`;
}

function commandUsage(command: Command): string {
  return `Usage: pht ${command.name}${command.synopsis ? ` ${command.synopsis}` : ''}\n  ${command.summary}\n\nRun "pht --help" for the global options and exit codes.\n`;
}

/** Runs one `pht` command line; resolves with the exit code. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseCommandLine(argv, { usage: '', options: ALL_OPTIONS, positionals: { max: Infinity } });
  } catch (e) {
    if (!(e instanceof CommandLineError)) throw e;
    return reportError(new UsageError(e.message), io, argv.includes('--json'));
  }
  const flags: Record<string, string | true> = {};
  for (const [name, value] of Object.entries(parsed.values))
    if (typeof value === 'string' || value === true) flags[name] = value;
  const positional = parsed.positionals;
  const json = flags.json === true;
  const wantsHelp = parsed.help || positional[0] === 'help';
  const command = findCommand(positional);
  if (wantsHelp) {
    io.stdout.write(command ? commandUsage(command) : usage());
    return EXIT.ok;
  }
  let client: PhtClient | undefined;
  try {
    if (!command) {
      if (positional.length === 0) throw new UsageError('no command given');
      if (positional.length === 1 && positional[0] === 'task') {
        throw new UsageError(
          `"pht task" needs a subcommand: ${COMMANDS.filter((c) => c.name.startsWith('task '))
            .map((c) => c.name.slice(5))
            .join(', ')}`,
        );
      }
      throw new UsageError(`unknown command "${positional.join(' ')}"`);
    }
    const args = positional.slice(command.name.split(' ').length);
    checkCommandLine(command, flags, args);
    client = command.offline ? undefined : connect(flags, io.env);
    // An offline command never touches the client.
    return await command.run({ client: client as PhtClient, flags, args, io, json });
  } catch (e) {
    return reportError(e, io, json);
  } finally {
    await client?.close();
  }
}

/** Entry point of the `pht` binary. */
export function run(): void {
  // `pht task list | head` closes stdout early: that is not an error worth a stack trace.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(EXIT.ok);
    throw e;
  });
  void main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env }).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`pht: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exitCode = EXIT.registry;
    },
  );
}

function findCommand(positional: readonly string[]): Command | undefined {
  const words = positional.filter((p) => p !== 'help');
  return COMMANDS.find((c) => c.name.split(' ').every((word, i) => words[i] === word));
}

function checkCommandLine(command: Command, flags: Record<string, string | true>, args: readonly string[]): void {
  const valueFlags = [...GLOBAL_VALUE_FLAGS, ...command.valueFlags];
  const booleanFlags = [...GLOBAL_BOOLEAN_FLAGS, ...command.booleanFlags];
  for (const [name, value] of Object.entries(flags)) {
    if (booleanFlags.includes(name)) {
      if (value !== true) throw new UsageError(`--${name} takes no value`);
    } else if (valueFlags.includes(name)) {
      if (value === true) throw new UsageError(`--${name} needs a value`);
    } else {
      throw new UsageError(`unknown option --${name} for "pht ${command.name}"`);
    }
  }
  if (args.length !== command.args.length) {
    const wanted = command.args.length === 0 ? 'no arguments' : command.args.join(' ');
    throw new UsageError(
      `"pht ${command.name}" takes ${wanted}; got ${args.length === 0 ? 'none' : `"${args.join(' ')}"`}`,
    );
  }
}

function connect(flags: Record<string, string | true>, env: NodeJS.ProcessEnv): PhtClient {
  const url = typeof flags.url === 'string' ? flags.url : env.PHT_URL;
  const token = typeof flags.token === 'string' ? flags.token : env.PHT_TOKEN;
  if (!url) throw new UsageError('no registry URL: pass --url URL or set PHT_URL');
  if (!token) throw new UsageError('no token: set PHT_TOKEN (or pass --token TOKEN)');
  try {
    return new PhtClient({ url, token });
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/^PhtClient: /, ''));
  }
}

function reportError(e: unknown, io: CliIo, json: boolean): number {
  const code = e instanceof UsageError ? EXIT.usage : EXIT.registry;
  if (json) {
    const error: Record<string, unknown> = {
      type: e instanceof Error ? e.name : 'Error',
      message: e instanceof Error ? e.message : String(e),
    };
    if (e instanceof PhtApiError) Object.assign(error, { status: e.status, code: e.code });
    io.stderr.write(terminalSafeJson({ error }) + '\n');
    return code;
  }
  // Messages and codes may come from the registry: their control characters are shown escaped.
  if (e instanceof UsageError) io.stderr.write(`pht: ${visible(e.message)}\nRun "pht --help" for usage.\n`);
  else if (e instanceof PhtApiError) {
    const hint = e.status === 401 ? ' (check PHT_TOKEN or --token)' : '';
    io.stderr.write(`pht: ${visible(e.message)} (HTTP ${e.status}, ${visible(e.code)})${hint}\n`);
  } else if (e instanceof PhtError) io.stderr.write(`pht: ${visible(e.message)}\n`);
  else io.stderr.write(`pht: ${visible(e instanceof Error ? e.message : String(e))}\n`);
  return code;
}
