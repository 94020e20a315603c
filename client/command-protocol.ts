/** What the client and its command helper (command-helper.ts) say to each other, one JSON a line. */

/** The only programs the helper runs. */
export const HELPER_COMMANDS: readonly string[] = ['mkfs.ext4', 'mount', 'umount'];

export interface HelperRequest {
  id: number;
  file: string;
  args: string[];
}

export interface HelperAnswer {
  id: number;
  ok: boolean;
  /** The exit code of a command that failed, when it exited. */
  code: number | null;
  message: string | null;
  stdout: string;
  stderr: string;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A request line, or null when it is not one. */
export function parseHelperRequest(line: string): HelperRequest | null {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return null;
  }
  if (!isRecord(v) || !Number.isSafeInteger(v.id) || typeof v.file !== 'string') return null;
  if (!Array.isArray(v.args) || !v.args.every((a) => typeof a === 'string')) return null;
  return { id: v.id as number, file: v.file, args: v.args as string[] };
}

/** An answer line, or null when it is not one. */
export function parseHelperAnswer(line: string): HelperAnswer | null {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return null;
  }
  if (!isRecord(v) || !Number.isSafeInteger(v.id) || typeof v.ok !== 'boolean') return null;
  return {
    id: v.id as number,
    ok: v.ok,
    code: typeof v.code === 'number' ? v.code : null,
    message: typeof v.message === 'string' ? v.message : null,
    stdout: typeof v.stdout === 'string' ? v.stdout : '',
    stderr: typeof v.stderr === 'string' ? v.stderr : '',
  };
}
