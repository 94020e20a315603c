import fs from 'node:fs';
import path from 'node:path';
import { MAX_FILE_PATH_DEPTH, MAX_FILE_PATH_LENGTH, resultFilePathProblem } from '../shared/names.js';

/*
 * Everything under a run's output folder was written by the container: hostile input. The walk
 * here never follows a link, never builds a long host path (each step is taken from the open
 * descriptor of its folder, through /proc/self/fd, so 15 nested 255-character folders cannot make
 * a path too long for the kernel), never blocks the event loop (every call is asynchronous) and
 * stops after a bounded number of entries. An entry that cannot be read is skipped with a reason.
 */

const O_DIR = fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW;
const O_FILE = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;
/** Reasons kept in a scan; beyond this they are only counted. */
const MAX_SKIPPED_REASONS = 100;

export interface OutputFile {
  /** Path relative to the output folder, with "/" separators (a safe result path). */
  name: string;
  size: number;
}

export interface OutputScan {
  files: OutputFile[];
  totalBytes: number;
  /** Entries that will not be sent, with why (symlinks, devices, unsafe names, unreadable). */
  skipped: string[];
  /** How many entries were skipped in all (skipped holds at most the first 100 reasons). */
  skippedCount: number;
  /** The walk stopped early: more files than `maxFiles`, or more entries than its budget. */
  overflow: boolean;
}

export interface ScanOptions {
  /** Stop (overflow) once more regular files than this were found. */
  maxFiles: number;
  /** Stop (overflow) after visiting this many entries of any kind. Default: maxFiles + 10,000. */
  maxEntries?: number;
}

/** Lists the regular files a container left in its output folder; see the module comment. */
export async function scanOutput(outputDir: string, options: ScanOptions): Promise<OutputScan> {
  const scan: OutputScan = { files: [], totalBytes: 0, skipped: [], skippedCount: 0, overflow: false };
  const maxEntries = options.maxEntries ?? options.maxFiles + 10_000;
  let visited = 0;
  const skip = (name: string, reason: string) => {
    scan.skippedCount++;
    if (scan.skipped.length < MAX_SKIPPED_REASONS) scan.skipped.push(`${JSON.stringify(name)}: ${reason}`);
  };

  const walk = async (dirFd: number, prefix: string, depth: number): Promise<void> => {
    const here = `/proc/self/fd/${dirFd}`;
    let names: string[] = [];
    let dir: fs.Dir;
    try {
      dir = await fs.promises.opendir(here, { bufferSize: 256 });
    } catch (e) {
      skip(prefix || '.', `folder not readable (${codeOf(e)})`);
      return;
    }
    try {
      for await (const entry of dir) {
        if (++visited > maxEntries) {
          scan.overflow = true;
          break;
        }
        names.push(entry.name);
      }
    } catch (e) {
      skip(prefix || '.', `folder not readable (${codeOf(e)})`);
    }
    names = names.sort();
    for (const entryName of names) {
      if (scan.overflow) return;
      const name = prefix ? `${prefix}/${entryName}` : entryName;
      // Names are checked before any system call on them: an unsafe or overlong name is skipped
      // whatever it is, and a folder with such a name is not descended into.
      if (name.length > MAX_FILE_PATH_LENGTH) {
        skip(name.slice(0, 200) + '…', `path longer than ${MAX_FILE_PATH_LENGTH} characters`);
        continue;
      }
      let stat: fs.Stats;
      try {
        stat = await fs.promises.lstat(`${here}/${entryName}`);
      } catch (e) {
        skip(name, `not readable (${codeOf(e)})`);
        continue;
      }
      if (stat.isDirectory()) {
        if (depth >= MAX_FILE_PATH_DEPTH) {
          skip(`${name}/`, 'nested too deep');
          continue;
        }
        const problem = resultFilePathProblem(name);
        if (problem) {
          skip(`${name}/`, problem);
          continue;
        }
        let child: fs.promises.FileHandle;
        try {
          child = await fs.promises.open(`${here}/${entryName}`, O_DIR);
        } catch (e) {
          skip(`${name}/`, `folder not readable (${codeOf(e)})`);
          continue;
        }
        try {
          await walk(child.fd, name, depth + 1);
        } finally {
          await child.close();
        }
      } else if (stat.isFile()) {
        const problem = resultFilePathProblem(name);
        if (problem) {
          skip(name, problem);
          continue;
        }
        if (scan.files.length >= options.maxFiles) {
          scan.overflow = true;
          return;
        }
        scan.files.push({ name, size: stat.size });
        scan.totalBytes += stat.size;
      } else {
        skip(name, `not a regular file (${stat.isSymbolicLink() ? 'symlink' : 'special file'})`);
      }
    }
  };

  let root: fs.promises.FileHandle;
  try {
    root = await fs.promises.open(outputDir, O_DIR);
  } catch (e) {
    if (codeOf(e) === 'ENOENT') return scan;
    throw e;
  }
  try {
    await walk(root.fd, '', 1);
  } finally {
    await root.close();
  }
  return scan;
}

/**
 * Opens a result file for upload, one path segment at a time from the output folder's descriptor,
 * never following a link (a symlink swapped in after the scan fails with ELOOP or ENOTDIR).
 */
export async function openForUpload(outputDir: string, file: OutputFile): Promise<fs.ReadStream> {
  const segments = file.name.split('/');
  const last = segments.pop()!;
  let dir = await fs.promises.open(outputDir, O_DIR);
  try {
    for (const segment of segments) {
      const next = await fs.promises.open(`/proc/self/fd/${dir.fd}/${segment}`, O_DIR);
      await dir.close();
      dir = next;
    }
    const handle = await fs.promises.open(`/proc/self/fd/${dir.fd}/${last}`, O_FILE);
    const stat = await handle.stat();
    if (!stat.isFile()) {
      await handle.close();
      throw Object.assign(new Error(`${file.name} is not a regular file`), { code: 'EINVAL' });
    }
    return handle.createReadStream({ start: 0 });
  } finally {
    await dir.close();
  }
}

/** Bytes and inodes in use on the filesystem holding `dir`: one statfs call, whatever is in it. */
export async function filesystemUsage(dir: string): Promise<{ bytes: number; inodes: number; inodesFull: boolean }> {
  const s = await fs.promises.statfs(dir);
  return { bytes: (s.blocks - s.bfree) * s.bsize, inodes: s.files - s.ffree, inodesFull: s.ffree === 0 };
}

/**
 * Bytes and entries under a folder without following links, for workspaces whose disk is not a
 * filesystem of its own; asynchronous and bounded by `maxEntries`.
 */
export async function folderUsage(dir: string, maxEntries: number): Promise<{ bytes: number; entries: number }> {
  let bytes = 0;
  let entries = 0;
  const walk = async (d: string): Promise<void> => {
    let handle: fs.Dir;
    try {
      handle = await fs.promises.opendir(d, { bufferSize: 256 });
    } catch {
      return;
    }
    const folders: string[] = [];
    for await (const e of handle) {
      if (++entries > maxEntries) break;
      const p = path.join(d, e.name);
      if (e.isDirectory()) folders.push(p);
      else if (e.isFile()) {
        try {
          bytes += (await fs.promises.lstat(p)).size;
        } catch {
          /* vanished while walking, or a path too long: not counted */
        }
      }
    }
    for (const f of folders) if (entries <= maxEntries) await walk(f);
  };
  await walk(dir);
  return { bytes, entries };
}

function codeOf(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : String((e as Error)?.message ?? e);
}
