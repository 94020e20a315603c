import crypto from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { generateKeyPair, openStream, sealStream } from '../../shared/crypto/index.js';

/**
 * Flat memory, checked by counting rather than by timing: bytes produced by the source minus
 * bytes that reached the sink is everything the pipeline holds (stream buffers plus the crypto
 * transforms' own block). With backpressure working it is bounded by a few chunks, whatever the
 * total size; a transform that accumulated its input would hold the whole stream.
 */
async function maxInFlight(totalBytes: number, chunkSize: number): Promise<{ max: number; digestOk: boolean }> {
  const key = generateKeyPair();
  const piece = crypto.randomBytes(chunkSize);
  let produced = 0;
  let consumed = 0;
  let max = 0;
  const inHash = crypto.createHash('sha256');
  const outHash = crypto.createHash('sha256');
  const source = new Readable({
    highWaterMark: chunkSize,
    read() {
      if (produced >= totalBytes) {
        this.push(null);
        return;
      }
      const n = Math.min(piece.length, totalBytes - produced);
      // Vary the data so chunks differ; copy so the consumer may keep what it gets.
      const data = Buffer.from(piece.subarray(0, n));
      data.writeUInt32BE(produced >>> 0, 0);
      produced += n;
      inHash.update(data);
      max = Math.max(max, produced - consumed);
      this.push(data);
    },
  });
  const sink = new Writable({
    highWaterMark: chunkSize,
    write(chunk: Buffer, _e, cb) {
      consumed += chunk.length;
      outHash.update(chunk);
      cb();
    },
  });
  await pipeline(source, sealStream([key.publicKey], { chunkSize }), openStream(key), sink);
  expect(consumed).toBe(totalBytes);
  return { max, digestOk: inHash.digest('hex') === outHash.digest('hex') };
}

describe('streaming seal/open memory', () => {
  it('holds a bounded number of chunks in flight, independent of the stream length', async () => {
    const small = await maxInFlight(4 * 1024 * 1024, 64 * 1024);
    const large = await maxInFlight(64 * 1024 * 1024, 64 * 1024);
    expect(small.digestOk && large.digestOk).toBe(true);
    // 16 times the data, the same bound: a few 64 KiB chunks plus the streams' buffers.
    expect(large.max).toBeLessThanOrEqual(8 * 64 * 1024);
    expect(large.max).toBeLessThanOrEqual(small.max + 2 * 64 * 1024);
  });

  it('scales what it holds with the chunk size', async () => {
    const { max, digestOk } = await maxInFlight(8 * 1024 * 1024, 4 * 1024);
    expect(digestOk).toBe(true);
    expect(max).toBeLessThanOrEqual(8 * 4 * 1024);
  });
});
