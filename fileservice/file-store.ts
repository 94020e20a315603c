import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ERROR_CODES } from '../shared/error-codes.js';
import { FileServiceError } from './errors.js';

/**
 * Uploaded bytes on disk, under random names (never a name from a request). An upload streams
 * into a temporary file and is renamed into place only when it is complete and its checksum
 * matches, so a half-sent or corrupted file is never visible.
 */
export class FileBytes {
  private readonly dir: string;
  private readonly tmpDir: string;

  constructor(dataDir: string) {
    this.dir = path.join(dataDir, 'files');
    this.tmpDir = path.join(dataDir, 'files-tmp');
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    fs.mkdirSync(this.tmpDir, { recursive: true, mode: 0o700 });
    // Leftovers of uploads interrupted by a crash.
    for (const f of fs.readdirSync(this.tmpDir)) fs.rmSync(path.join(this.tmpDir, f), { force: true });
  }

  /**
   * Streams `body` to disk. Throws 413 once more than `maxBytes` arrive, and 400 when
   * `expectedSha256` is given and does not match what arrived.
   */
  async receive(
    body: Readable,
    maxBytes: number,
    expectedSha256: string | null,
  ): Promise<{ storedAs: string; size: number; sha256: string }> {
    const storedAs = crypto.randomUUID();
    const tmp = path.join(this.tmpDir, storedAs);
    const hash = crypto.createHash('sha256');
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, callback) {
        size += chunk.length;
        if (size > maxBytes) {
          callback(
            new FileServiceError(413, ERROR_CODES.payloadTooLarge, `file is larger than the allowed ${maxBytes} bytes`),
          );
          return;
        }
        hash.update(chunk);
        callback(null, chunk);
      },
    });
    const file = fs.createWriteStream(tmp, { flags: 'wx', mode: 0o600 });
    try {
      await pipeline(body, meter, file);
      const sha256 = hash.digest('hex');
      if (expectedSha256 !== null && sha256 !== expectedSha256)
        throw new FileServiceError(
          400,
          ERROR_CODES.checksumMismatch,
          `the received bytes have SHA-256 ${sha256}, not the ${expectedSha256} announced in X-Content-SHA256; nothing was stored`,
        );
      fs.renameSync(tmp, path.join(this.dir, storedAs));
      return { storedAs, size, sha256 };
    } catch (e) {
      // The write stream opens its file asynchronously: wait until it has closed, then remove it.
      if (!file.closed) await new Promise<void>((resolve) => file.once('close', () => resolve()));
      fs.rmSync(tmp, { force: true });
      if ((e as { code?: string }).code === 'ENOSPC')
        throw new FileServiceError(507, ERROR_CODES.storageFull, 'the file service is out of disk space; retry later');
      throw e;
    }
  }

  /** Removes stored files no record refers to (a crash between storing and recording). */
  removeUnreferenced(referenced: Set<string>): number {
    let removed = 0;
    for (const name of fs.readdirSync(this.dir)) {
      if (referenced.has(name)) continue;
      fs.rmSync(path.join(this.dir, name), { force: true });
      removed++;
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
