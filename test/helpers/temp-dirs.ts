import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * Temp folders that tests hand to site clients. A client that stops while a run holds its disk
 * leaves that disk mounted on purpose (its next start mounts it again, see RunExecutor), so a
 * test that only deletes the folder leaks the mount and its loop device: 62 of them had piled up
 * on a developer machine. The setup file test/helpers/temp-dirs-setup.ts removes every folder made
 * here after each test file, mounts first.
 */
const made = new Set<string>();

/** A fresh folder under the system's temp folder, removed with its mounts after the test file. */
export function makeTempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.add(dir);
  return dir;
}

/** Mount points at or below `dir`, deepest first (from /proc/self/mountinfo; octal escapes decoded). */
export function mountsUnder(dir: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return []; // not Linux: no loop disks either
  }
  const root = path.resolve(dir);
  const points = text
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_m, octal: string) => String.fromCharCode(parseInt(octal, 8))))
    .filter((p) => p === root || p.startsWith(`${root}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/**
 * Unmounts everything mounted below `dir` (lazily if busy: a loop device made by `mount -o loop`
 * detaches itself once its last user is gone), then deletes the folder.
 */
export function removeTree(dir: string): void {
  for (const point of mountsUnder(dir)) {
    try {
      execFileSync('umount', [point], { stdio: 'ignore' });
    } catch {
      try {
        execFileSync('umount', ['-l', point], { stdio: 'ignore' });
      } catch {
        // Not ours to unmount (no privilege): the deletion below reports what is left.
      }
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Removes every folder made by {@link makeTempDir} so far. */
export function removeTempDirs(): void {
  for (const dir of made) {
    made.delete(dir);
    removeTree(dir);
  }
}
