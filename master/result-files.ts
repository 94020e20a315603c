import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ERROR_CODES } from '../shared/error-codes.js';
import { RegistryError } from './errors.js';

/**
 * Result files on disk. Files are stored under random names (never a name a site chose), written
 * to a temporary file while streaming and renamed into place only when complete, so a crash
 * mid-upload leaves no half file behind a database row.
 */
export class ResultFileStore {
  private readonly dir: string;
  private readonly tmpDir: string;

  /**
   * `sharedGraceMs`: when several registry processes share this directory (PostgreSQL backend),
   * another process may be writing a temporary file or recording a finished one right now, so
   * clean-ups leave alone anything touched within this many milliseconds. 0: this process is the
   * directory's only user (SQLite), and everything left over at start is a crash's leftover.
   */
  constructor(
    dataDir: string,
    private readonly sharedGraceMs = 0,
  ) {
    this.dir = path.join(dataDir, 'files');
    this.tmpDir = path.join(dataDir, 'files-tmp');
    fs.mkdirSync(this.dir, { recursive: true });
    fs.mkdirSync(this.tmpDir, { recursive: true });
    // Leftovers of uploads interrupted by a crash.
    for (const f of fs.readdirSync(this.tmpDir)) this.removeIfStale(path.join(this.tmpDir, f));
  }

  /** Removes the file unless another process may still be using it; true when removed. */
  private removeIfStale(file: string): boolean {
    if (this.sharedGraceMs > 0) {
      const stat = fs.statSync(file, { throwIfNoEntry: false });
      if (!stat || Date.now() - stat.mtimeMs < this.sharedGraceMs) return false;
    }
    fs.rmSync(file, { force: true });
    return true;
  }

  /** Streams `body` to disk; throws 413 once more than `maxBytes` arrive. */
  async receive(body: Readable, maxBytes: number): Promise<{ storedAs: string; size: number; sha256: string }> {
    const storedAs = crypto.randomUUID();
    const tmp = path.join(this.tmpDir, storedAs);
    const hash = crypto.createHash('sha256');
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, callback) {
        size += chunk.length;
        if (size > maxBytes) {
          callback(
            new RegistryError(413, ERROR_CODES.payloadTooLarge, `file is larger than the allowed ${maxBytes} bytes`),
          );
          return;
        }
        hash.update(chunk);
        callback(null, chunk);
      },
    });
    const file = fs.createWriteStream(tmp, { flags: 'wx' });
    try {
      await pipeline(body, meter, file);
      fs.renameSync(tmp, path.join(this.dir, storedAs));
    } catch (e) {
      // The file is opened asynchronously: when the upload fails before the open completes, the
      // open still creates it later. Wait until the stream has closed, then remove what it made.
      if (!file.closed) await new Promise<void>((resolve) => file.once('close', () => resolve()));
      fs.rmSync(tmp, { force: true });
      if ((e as { code?: string }).code === 'ENOSPC') {
        throw new RegistryError(507, ERROR_CODES.storageFull, 'the registry is out of disk space; retry later');
      }
      throw e;
    }
    return { storedAs, size, sha256: hash.digest('hex') };
  }

  /**
   * Removes stored files no run refers to: a registry killed between storing an upload and
   * recording it leaves one behind. Call before serving, when no upload can be under way in this
   * process (with a shared directory, files other processes are storing now are fresh and kept).
   */
  removeUnreferenced(referenced: Set<string>): number {
    let removed = 0;
    for (const name of fs.readdirSync(this.dir)) {
      if (referenced.has(name)) continue;
      if (this.removeIfStale(path.join(this.dir, name))) removed++;
    }
    return removed;
  }

  pathOf(storedAs: string): string {
    return path.join(this.dir, path.basename(storedAs));
  }

  remove(storedAs: string): void {
    fs.rmSync(this.pathOf(storedAs), { force: true });
  }
}
