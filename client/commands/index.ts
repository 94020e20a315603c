import { ConfigError, coerceError } from '../../shared/errors.js';
import { AUDIT_USAGE, auditCommand } from './audit.js';
import { UsageError } from './args.js';
import { CommandFailure, decideCommand, REVIEW_USAGE, reviewCommand } from './review.js';
import { siteFilesFrom, type CommandIo } from './site-files.js';

/** The site officer's subcommands of `node client`. */
export const OFFICER_COMMANDS = ['audit', 'review', 'approve', 'reject'] as const;

export function isOfficerCommand(word: string | undefined): boolean {
  return (OFFICER_COMMANDS as readonly string[]).includes(word ?? '');
}

const consoleIo: CommandIo = { out: (t) => console.log(t), err: (t) => console.error(t) };

/** Runs `node client <command> …`; returns the exit code (2 for usage errors). */
export async function runOfficerCommand(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  io: CommandIo = consoleIo,
): Promise<number> {
  const [command, ...rest] = argv;
  const usage = command === 'audit' ? AUDIT_USAGE : REVIEW_USAGE;
  try {
    if (rest.includes('--help')) {
      io.out(usage);
      return 0;
    }
    switch (command) {
      case 'audit':
        return await auditCommand(rest, (flags) => siteFilesFrom(flags, env), io);
      case 'review':
        return await reviewCommand(rest, (flags) => siteFilesFrom(flags, env), io);
      case 'approve':
      case 'reject':
        return await decideCommand(
          command === 'approve' ? 'approved' : 'rejected',
          rest,
          (flags) => siteFilesFrom(flags, env),
          io,
        );
      default:
        throw new UsageError(`unknown command ${String(command)}`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`error: ${e.message}\n${usage}`);
      return 2;
    }
    if (e instanceof CommandFailure) {
      io.err(`error: ${e.message}`);
      return 1;
    }
    if (e instanceof ConfigError) {
      io.err(`error: ${e.message}`);
      return 2;
    }
    io.err(`error: ${coerceError(e).message}`);
    return 1;
  }
}
