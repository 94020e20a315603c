import fs from 'node:fs';
import { validateProgressReport } from '../shared/schemas.js';
import type { ProgressReport } from '../shared/types.js';

const MAX_READ = 256 * 1024;

/**
 * Follows the JSON-lines progress file a container appends to. Lines that are not valid
 * progress reports are ignored: the container's output is never trusted to be well-formed.
 */
export class ProgressReader {
  private offset = 0;
  private partial = '';

  constructor(private readonly file: string) {}

  /** The newest valid report written since the last call, or null. */
  readLatest(): ProgressReport | null {
    let fd: number;
    try {
      fd = fs.openSync(this.file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    } catch {
      return null;
    }
    let latest: ProgressReport | null = null;
    try {
      if (!fs.fstatSync(fd).isFile()) return null;
      const buffer = Buffer.alloc(MAX_READ);
      for (;;) {
        const n = fs.readSync(fd, buffer, 0, MAX_READ, this.offset);
        if (n <= 0) break;
        this.offset += n;
        const lines = (this.partial + buffer.subarray(0, n).toString('utf8')).split('\n');
        this.partial = (lines.pop() ?? '').slice(-4096);
        for (const line of lines) {
          const report = parseProgressLine(line);
          if (report) latest = report;
        }
      }
    } finally {
      fs.closeSync(fd);
    }
    return latest;
  }
}

export function parseProgressLine(line: string): ProgressReport | null {
  const trimmed = line.trim();
  if (!trimmed || trimmed.length > 4096) return null;
  try {
    const value: unknown = JSON.parse(trimmed);
    return validateProgressReport(value) ? value : null;
  } catch {
    return null;
  }
}
