/** The CLI's end-to-end encryption: `pht keys …`, `task create --encrypt`, opening sealed logs and results. */
import { SEALED_TEXT_PREFIX } from '../../shared/crypto/index.js';
import { parseDurationMs } from '../../shared/duration.js';
import type { CreateTaskRequest, Task } from '../../shared/types.js';
import type { SavedFile } from '../client.js';
import { ResearcherKeys } from '../sealed.js';
import type { Command, CommandContext } from './commands.js';
import { EXIT, UsageError } from './io.js';

const keysOf = (ctx: CommandContext) =>
  ResearcherKeys.fromEnv({
    ...ctx.io.env,
    ...(typeof ctx.flags['key-file'] === 'string' ? { PHT_KEY_FILE: ctx.flags['key-file'] } : {}),
  });

export const KEY_COMMANDS: readonly Command[] = [
  {
    name: 'keys create',
    synopsis: '[--key-file FILE]',
    summary:
      'create your key pair (default $PHT_KEY_FILE or ~/.pht/researcher.key, mode 0600) and register its public key',
    args: [],
    valueFlags: ['key-file'],
    booleanFlags: [],
    run: async (ctx) => {
      const keys = keysOf(ctx);
      const key = await keys.create(ctx.client);
      const fingerprint = key.publicKey.fingerprint;
      ctx.io.stdout.write(
        ctx.json
          ? JSON.stringify({ fingerprint, privateKeyFile: keys.keyFile }) + '\n'
          : `key pair ready and registered\nprivate key: ${keys.keyFile} (mode 0600; never leaves this machine)\nfingerprint: ${fingerprint}\n`,
      );
      return EXIT.ok;
    },
  },
  {
    name: 'keys rotate',
    synopsis: '[--grace 168h] [--key-file FILE]',
    summary:
      'a new key pair, registered with a rotation signed by the old one (which opens old results for the grace period)',
    args: [],
    valueFlags: ['grace', 'key-file'],
    booleanFlags: [],
    run: async (ctx) => {
      const grace = typeof ctx.flags.grace === 'string' ? ctx.flags.grace : '168h';
      let graceMs: number;
      try {
        graceMs = parseDurationMs(grace);
      } catch {
        throw new UsageError(`--grace must be a duration like 168h, got "${grace}"`);
      }
      const ring = await keysOf(ctx).rotate(ctx.client, graceMs);
      ctx.io.stdout.write(
        `key rotated and registered\nnew fingerprint: ${ring.current.publicKey.fingerprint}\nresults sealed to the old key stay readable until ${ring.previous[0]!.readableUntil}\n`,
      );
      return EXIT.ok;
    },
  },
];

/** For `task create --encrypt`: posts the task sealed; null when not asked to. */
export function sealedTaskOf(ctx: CommandContext): ((request: CreateTaskRequest) => Promise<Task>) | null {
  const recipients = typeof ctx.flags.recipients === 'string' ? ctx.flags.recipients : undefined;
  const ttp = typeof ctx.flags.ttp === 'string' ? ctx.flags.ttp : undefined;
  if (ctx.flags.encrypt !== true) {
    if (recipients !== undefined || ttp !== undefined) throw new UsageError('--recipients and --ttp need --encrypt');
    return null;
  }
  const resultRecipients = recipients
    ?.split(',')
    .map((r) => r.trim())
    .filter((r) => r.length > 0);
  return (request) => keysOf(ctx).createSealedTask(ctx.client, { ...request, resultRecipients, ttp });
}

/** A log (or a piece of it) with its sealed lines opened; plain logs pass unchanged. */
export function openLogIfSealed(ctx: CommandContext, text: string): string {
  return text.includes(SEALED_TEXT_PREFIX) ? keysOf(ctx).openLog(text) : text;
}

/** Saved result files, the sealed ones opened in place. */
export async function openResultsIfSealed(ctx: CommandContext, files: SavedFile[]): Promise<SavedFile[]> {
  return files.length === 0 ? files : keysOf(ctx).openFiles(files);
}
