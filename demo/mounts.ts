import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Unmounts every filesystem mounted under `dir` (deepest first). A site client mounts a disk image
 * per run under its work folder; a client stopped (or killed) while a run was in flight leaves that
 * disk mounted for its next start, so whoever deletes the work folder for good must unmount first
 * or the removal fails with EBUSY.
 */
export function unmountAllUnder(dir: string): number {
  const root = path.resolve(dir) + path.sep;
  let mounts: string[];
  try {
    mounts = fs
      .readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .map((line) => decodeMountPath(line.split(' ')[1] ?? ''))
      .filter((target) => target.startsWith(root));
  } catch {
    return 0; // no /proc (not Linux): nothing can be mounted by a site client either
  }
  mounts.sort((a, b) => b.length - a.length);
  for (const target of mounts) execFileSync('umount', ['-l', target]);
  return mounts.length;
}

/** /proc/self/mounts writes space, tab, newline and backslash in paths as octal escapes. */
function decodeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}
