import fs from 'node:fs';
import { validateProgressReport } from '../shared/schemas.js';
import type { ProgressReport } from '../shared/types.js';

/** Bytes read per call, so a fast writer never holds the event loop. */
const READ_PER_CALL = 256 * 1024;

/**
 * Follows the JSON-lines progress file a container appends to. Lines that are not valid
 * progress reports are ignored: the container's output is never trusted to be well-formed.
 * Reads are asynchronous and bounded per call; past `maxBytes` nothing more is read and
 * `exceeded` turns true (the executor fails the run).
 */
export class ProgressReader {
  private offset = 0;
  private partial = '';
  exceeded = false;

  constructor(
    private readonly file: string,
    private readonly maxBytes = Number.MAX_SAFE_INTEGER,
  ) {}

  /** The newest valid report among the next `budget` bytes written since the last call, or null. */
  async readLatest(budget = READ_PER_CALL): Promise<ProgressReport | null> {
    if (this.exceeded) return null;
    let handle: fs.promises.FileHandle;
    try {
      handle = await fs.promises.open(
        this.file,
        fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK,
      );
    } catch {
      return null;
    }
    let latest: ProgressReport | null = null;
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) return null;
      if (stat.size > this.maxBytes) {
        this.exceeded = true;
        return null;
      }
      const buffer = Buffer.alloc(READ_PER_CALL);
      for (let read = 0; read < budget;) {
        const { bytesRead } = await handle.read(buffer, 0, READ_PER_CALL, this.offset);
        if (bytesRead <= 0) break;
        read += bytesRead;
        this.offset += bytesRead;
        const lines = (this.partial + buffer.subarray(0, bytesRead).toString('utf8')).split('\n');
        this.partial = (lines.pop() ?? '').slice(-4096);
        for (const line of lines) {
          const report = parseProgressLine(line);
          if (report) latest = report;
        }
      }
    } finally {
      await handle.close();
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
