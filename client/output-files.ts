import fs from 'node:fs';
import path from 'node:path';
import { resultFilePathProblem } from '../shared/names.js';

export interface OutputFile {
  /** Path relative to the output folder, with "/" separators. */
  name: string;
  absolutePath: string;
  size: number;
}

export interface OutputScan {
  files: OutputFile[];
  totalBytes: number;
  /** Entries that will not be sent, with why (symlinks, devices, unsafe names). */
  skipped: string[];
}

/**
 * Lists the regular files a container left in its output folder. Symlinks are never followed
 * (a container could point one at a host file), and names that are not safe paths are skipped.
 */
export function scanOutput(outputDir: string, maxDepth = 16): OutputScan {
  const scan: OutputScan = { files: [], totalBytes: 0, skipped: [] };
  const walk = (dir: string, prefix: string, depth: number) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const name = prefix ? `${prefix}/${entry.name}` : entry.name;
      const absolutePath = path.join(dir, entry.name);
      const stat = fs.lstatSync(absolutePath);
      if (stat.isDirectory()) {
        if (depth >= maxDepth) scan.skipped.push(`${name}/: nested too deep`);
        else walk(absolutePath, name, depth + 1);
      } else if (stat.isFile()) {
        const problem = resultFilePathProblem(name);
        if (problem) {
          scan.skipped.push(`${JSON.stringify(name)}: ${problem}`);
          continue;
        }
        scan.files.push({ name, absolutePath, size: stat.size });
        scan.totalBytes += stat.size;
      } else {
        scan.skipped.push(`${name}: not a regular file (${stat.isSymbolicLink() ? 'symlink' : 'special file'})`);
      }
    }
  };
  walk(outputDir, '', 1);
  return scan;
}

/** Size of a folder tree without following links; cheap enough to run every second. */
export function folderBytes(dir: string): number {
  let total = 0;
  const walk = (d: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      try {
        const s = fs.lstatSync(p);
        if (s.isDirectory()) walk(p);
        else total += s.size;
      } catch {
        /* vanished while walking */
      }
    }
  };
  walk(dir);
  return total;
}

/** Opens a result file for upload without following a symlink swapped in at the last moment. */
export function openForUpload(file: OutputFile): fs.ReadStream {
  const fd = fs.openSync(file.absolutePath, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  return fs.createReadStream('', { fd });
}
