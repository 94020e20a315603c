/**
 * Sealed envelopes: one random content key per message, wrapped for each recipient, payload in
 * authenticated chunks. An HPKE-style construction from Node's crypto only:
 *
 *   wrap (per recipient): ephemeral X25519 key, shared = X25519(eph, recipient),
 *     kek||nonce = HKDF-SHA256(shared, salt = eph_pub||recipient_pub, "pht-seal-v1 wrap", 44),
 *     wrapped = AES-256-GCM(kek, nonce, contentKey, aad = "pht-seal-v1 wrap")
 *   header MAC = HMAC-SHA256(HKDF(contentKey, salt, "pht-seal-v1 header"), prefix||header)
 *   payload key = HKDF-SHA256(contentKey, salt, "pht-seal-v1 payload")
 *   chunk i = AES-256-GCM(payload key, nonce = i (11 bytes BE) || final,
 *                         aad = "pht-seal-v1 chunk" || i (8 bytes BE) || final)
 *
 * Layout: "PHTE" | version (1 byte) | header length (u32 BE) | header JSON | header MAC (32) | chunks.
 * Every chunk but the last holds exactly `chunkSize` plaintext bytes; the last one (possibly empty)
 * carries the final flag. So a reader notices truncation (no final chunk), reordering and swapping
 * (index in nonce and aad), tampering (GCM tags, header MAC) and a foreign header (MAC).
 *
 * A streaming reader releases each chunk once it authenticates; the end of the stream is known to
 * be genuine only when the stream finishes without error. Callers write to a temporary file and
 * keep it only when the stream ends cleanly.
 */
import crypto, { type KeyObject } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import {
  CryptoError,
  InvalidKeyError,
  MalformedEnvelopeError,
  NotAnEnvelopeError,
  TamperedError,
  TruncatedError,
  UnsupportedVersionError,
  WrongKeyError,
} from './errors.js';
import type { KeyRing, PrivateKey, PublicKey } from './keys.js';

export const ENVELOPE_MAGIC = Buffer.from('PHTE', 'ascii');
export const ENVELOPE_VERSION = 1;
export const DEFAULT_CHUNK_SIZE = 64 * 1024;
export const MIN_CHUNK_SIZE = 1024;
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;
export const MAX_RECIPIENTS = 10_000;
const MAX_HEADER_BYTES = 4 * 1024 * 1024;
const PREFIX_BYTES = 9;
const MAC_BYTES = 32;
const TAG_BYTES = 16;
const WRAP_INFO = Buffer.from('pht-seal-v1 wrap');
const CHUNK_AAD = Buffer.from('pht-seal-v1 chunk');
const B64URL = /^[A-Za-z0-9_-]+$/;

/** Whoever may open a message: a recipient list is a list of public keys. */
export type Recipients = readonly PublicKey[];
/** What opens a message: one private key, or a key ring (current key plus retired ones in grace). */
export type OpeningKey = PrivateKey | KeyRing;

export interface SealOptions {
  /** Plaintext bytes per chunk (default 64 KiB). */
  chunkSize?: number;
}

interface Stanza {
  fingerprint: string;
  ephemeral: string;
  wrappedKey: string;
}

interface Header {
  chunkSize: number;
  salt: string;
  recipients: Stanza[];
}

const rawX25519 = (key: KeyObject) => Buffer.from(String(key.export({ format: 'jwk' }).x), 'base64url');

function hkdf(ikm: Buffer, salt: Buffer, info: string | Buffer, length: number): Buffer {
  return Buffer.from(crypto.hkdfSync('sha256', ikm, salt, info, length));
}

function wrapFor(recipient: PublicKey, contentKey: Buffer): Stanza {
  const eph = crypto.generateKeyPairSync('x25519');
  const ephRaw = rawX25519(eph.publicKey);
  const shared = crypto.diffieHellman({ privateKey: eph.privateKey, publicKey: recipient.x25519 });
  const material = hkdf(shared, Buffer.concat([ephRaw, rawX25519(recipient.x25519)]), WRAP_INFO, 44);
  const cipher = crypto.createCipheriv('aes-256-gcm', material.subarray(0, 32), material.subarray(32));
  cipher.setAAD(WRAP_INFO);
  const wrapped = Buffer.concat([cipher.update(contentKey), cipher.final(), cipher.getAuthTag()]);
  return {
    fingerprint: recipient.fingerprint,
    ephemeral: ephRaw.toString('base64url'),
    wrappedKey: wrapped.toString('base64url'),
  };
}

function unwrap(key: PrivateKey, stanza: Stanza): Buffer {
  let shared: Buffer;
  const ephRaw = Buffer.from(stanza.ephemeral, 'base64url');
  try {
    const eph = crypto.createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: stanza.ephemeral }, format: 'jwk' });
    shared = crypto.diffieHellman({ privateKey: key.x25519, publicKey: eph });
  } catch {
    // A low-order or malformed ephemeral key: the header was altered.
    throw new TamperedError(`the key wrapped for ${stanza.fingerprint} does not authenticate`);
  }
  const material = hkdf(shared, Buffer.concat([ephRaw, rawX25519(key.publicKey.x25519)]), WRAP_INFO, 44);
  const wrapped = Buffer.from(stanza.wrappedKey, 'base64url');
  try {
    const decipher = crypto.createDecipheriv('aes-256-gcm', material.subarray(0, 32), material.subarray(32));
    decipher.setAAD(WRAP_INFO);
    decipher.setAuthTag(wrapped.subarray(32));
    return Buffer.concat([decipher.update(wrapped.subarray(0, 32)), decipher.final()]);
  } catch {
    throw new TamperedError(`the key wrapped for ${stanza.fingerprint} does not authenticate`);
  }
}

/** Encrypts and decrypts the chunks of one message. */
class ChunkCipher {
  private index = 0n;
  private readonly key: Buffer;

  constructor(contentKey: Buffer, salt: Buffer) {
    this.key = hkdf(contentKey, salt, 'pht-seal-v1 payload', 32);
  }

  private params(final: boolean): { nonce: Buffer; aad: Buffer } {
    if (this.index >= 2n ** 64n) throw new MalformedEnvelopeError('too many chunks');
    const nonce = Buffer.alloc(12);
    // 11-byte big-endian index: the upper 3 bytes stay 0 below 2^64 chunks.
    nonce.writeBigUInt64BE(this.index, 3);
    nonce[11] = final ? 1 : 0;
    const aad = Buffer.alloc(CHUNK_AAD.length + 9);
    CHUNK_AAD.copy(aad);
    aad.writeBigUInt64BE(this.index, CHUNK_AAD.length);
    aad[CHUNK_AAD.length + 8] = final ? 1 : 0;
    return { nonce, aad };
  }

  seal(plain: Buffer, final: boolean): Buffer {
    const { nonce, aad } = this.params(final);
    const cipher = crypto.createCipheriv('aes-256-gcm', this.key, nonce);
    cipher.setAAD(aad);
    const out = Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
    this.index++;
    return out;
  }

  /** Returns null when the chunk does not authenticate with the given final flag. */
  tryOpen(sealed: Buffer, final: boolean): Buffer | null {
    if (sealed.length < TAG_BYTES) return null;
    const { nonce, aad } = this.params(final);
    try {
      const decipher = crypto.createDecipheriv('aes-256-gcm', this.key, nonce);
      decipher.setAAD(aad);
      decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
      const out = Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES)), decipher.final()]);
      this.index++;
      return out;
    } catch {
      return null;
    }
  }

  get chunkIndex(): bigint {
    return this.index;
  }
}

/** Builds the envelope's header (prefix, JSON, MAC) and the cipher for its chunks. */
function startSealing(
  recipients: Recipients,
  options: SealOptions,
): { head: Buffer; chunks: ChunkCipher; chunkSize: number } {
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!Number.isInteger(chunkSize) || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE)
    throw new RangeError(`chunkSize must be an integer from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE}`);
  if (recipients.length === 0) throw new InvalidKeyError('a message needs at least one recipient');
  if (recipients.length > MAX_RECIPIENTS)
    throw new InvalidKeyError(`a message may have at most ${MAX_RECIPIENTS} recipients`);
  const contentKey = crypto.randomBytes(32);
  const salt = crypto.randomBytes(16);
  const seen = new Set<string>();
  const stanzas: Stanza[] = [];
  for (const r of recipients) {
    if (seen.has(r.fingerprint)) continue;
    seen.add(r.fingerprint);
    stanzas.push(wrapFor(r, contentKey));
  }
  const header: Header = { chunkSize, salt: salt.toString('base64url'), recipients: stanzas };
  const json = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(PREFIX_BYTES);
  ENVELOPE_MAGIC.copy(prefix);
  prefix[4] = ENVELOPE_VERSION;
  prefix.writeUInt32BE(json.length, 5);
  const mac = crypto
    .createHmac('sha256', hkdf(contentKey, salt, 'pht-seal-v1 header', 32))
    .update(prefix)
    .update(json)
    .digest();
  return { head: Buffer.concat([prefix, json, mac]), chunks: new ChunkCipher(contentKey, salt), chunkSize };
}

/** Checks magic and version; returns the header length. Needs the first 9 bytes. */
function readPrefix(prefix: Buffer): number {
  if (!prefix.subarray(0, 4).equals(ENVELOPE_MAGIC))
    throw new NotAnEnvelopeError('the data is not a sealed PHT envelope');
  const version = prefix[4]!;
  if (version !== ENVELOPE_VERSION) throw new UnsupportedVersionError(version);
  const length = prefix.readUInt32BE(5);
  if (length < 2 || length > MAX_HEADER_BYTES)
    throw new MalformedEnvelopeError(`envelope header length ${length} is out of range`);
  return length;
}

function parseHeader(json: Buffer): Header {
  let h: Record<string, unknown>;
  try {
    h = JSON.parse(json.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new MalformedEnvelopeError('the envelope header is not valid JSON');
  }
  const fail = (what: string) => new MalformedEnvelopeError(`envelope header: ${what}`);
  if (!h || typeof h !== 'object' || Array.isArray(h)) throw fail('not an object');
  const { chunkSize, salt, recipients } = h;
  if (
    typeof chunkSize !== 'number' ||
    !Number.isInteger(chunkSize) ||
    chunkSize < MIN_CHUNK_SIZE ||
    chunkSize > MAX_CHUNK_SIZE
  )
    throw fail('chunkSize out of range');
  if (typeof salt !== 'string' || !B64URL.test(salt) || Buffer.from(salt, 'base64url').length !== 16)
    throw fail('bad salt');
  if (!Array.isArray(recipients) || recipients.length === 0 || recipients.length > MAX_RECIPIENTS)
    throw fail('bad recipient list');
  for (const r of recipients as Record<string, unknown>[]) {
    if (typeof r?.fingerprint !== 'string' || r.fingerprint.length > 64) throw fail('bad recipient fingerprint');
    if (
      typeof r.ephemeral !== 'string' ||
      !B64URL.test(r.ephemeral) ||
      Buffer.from(r.ephemeral, 'base64url').length !== 32
    )
      throw fail('bad ephemeral key');
    if (
      typeof r.wrappedKey !== 'string' ||
      !B64URL.test(r.wrappedKey) ||
      Buffer.from(r.wrappedKey, 'base64url').length !== 48
    )
      throw fail('bad wrapped key');
  }
  return { chunkSize, salt, recipients: recipients as Stanza[] };
}

function keysOf(key: OpeningKey): PrivateKey[] {
  return 'current' in key ? [key.current, ...key.previous.map((p) => p.key)] : [key];
}

/** Finds our stanza, unwraps the content key, checks the header MAC. */
function startOpening(
  key: OpeningKey,
  prefix: Buffer,
  json: Buffer,
  mac: Buffer,
): { chunks: ChunkCipher; chunkSize: number } {
  const header = parseHeader(json);
  const candidates = keysOf(key);
  let contentKey: Buffer | null = null;
  for (const candidate of candidates) {
    const stanza = header.recipients.find((r) => r.fingerprint === candidate.publicKey.fingerprint);
    if (stanza) {
      contentKey = unwrap(candidate, stanza);
      break;
    }
  }
  if (!contentKey)
    throw new WrongKeyError(
      candidates.map((c) => c.publicKey.fingerprint),
      header.recipients.map((r) => r.fingerprint),
    );
  const salt = Buffer.from(header.salt, 'base64url');
  const expected = crypto
    .createHmac('sha256', hkdf(contentKey, salt, 'pht-seal-v1 header', 32))
    .update(prefix)
    .update(json)
    .digest();
  if (!crypto.timingSafeEqual(expected, mac))
    throw new TamperedError('the envelope header was altered (its MAC does not match)');
  return { chunks: new ChunkCipher(contentKey, salt), chunkSize: header.chunkSize };
}

/** Opens the last piece of a message; distinguishes a cut at a chunk boundary from tampering. */
function openFinal(chunks: ChunkCipher, rest: Buffer, chunkSize: number): Buffer {
  if (rest.length === 0)
    throw new TruncatedError(`the envelope ends after chunk ${chunks.chunkIndex} without its final chunk`);
  const plain = chunks.tryOpen(rest, true);
  if (plain) return plain;
  if (rest.length === chunkSize + TAG_BYTES && chunks.tryOpen(rest, false))
    throw new TruncatedError(`the envelope ends after chunk ${chunks.chunkIndex} without its final chunk`);
  throw new TamperedError(`chunk ${chunks.chunkIndex} does not authenticate: the envelope was altered or cut short`);
}

/** Seals bytes for every recipient (one content key, wrapped once per recipient). */
export function seal(recipients: Recipients, plaintext: Uint8Array, options: SealOptions = {}): Buffer {
  const { head, chunks, chunkSize } = startSealing(recipients, options);
  const data = Buffer.from(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength);
  const parts = [head];
  let offset = 0;
  while (data.length - offset > chunkSize) {
    parts.push(chunks.seal(data.subarray(offset, offset + chunkSize), false));
    offset += chunkSize;
  }
  parts.push(chunks.seal(data.subarray(offset), true));
  return Buffer.concat(parts);
}

/** Opens an envelope with a private key or key ring. Throws a CryptoError subclass on any failure. */
export function open(key: OpeningKey, envelope: Uint8Array): Buffer {
  const data = Buffer.from(envelope.buffer, envelope.byteOffset, envelope.byteLength);
  if (data.length < 4 && ENVELOPE_MAGIC.subarray(0, data.length).equals(data))
    throw new TruncatedError('the envelope ends inside its header');
  if (data.length < PREFIX_BYTES) {
    if (!data.subarray(0, 4).equals(ENVELOPE_MAGIC))
      throw new NotAnEnvelopeError('the data is not a sealed PHT envelope');
    throw new TruncatedError('the envelope ends inside its header');
  }
  const length = readPrefix(data.subarray(0, PREFIX_BYTES));
  const bodyStart = PREFIX_BYTES + length + MAC_BYTES;
  if (data.length < bodyStart) throw new TruncatedError('the envelope ends inside its header');
  const { chunks, chunkSize } = startOpening(
    key,
    data.subarray(0, PREFIX_BYTES),
    data.subarray(PREFIX_BYTES, PREFIX_BYTES + length),
    data.subarray(PREFIX_BYTES + length, bodyStart),
  );
  const sealedChunk = chunkSize + TAG_BYTES;
  const parts: Buffer[] = [];
  let offset = bodyStart;
  while (data.length - offset > sealedChunk) {
    const plain = chunks.tryOpen(data.subarray(offset, offset + sealedChunk), false);
    if (!plain) throw new TamperedError(`chunk ${chunks.chunkIndex} does not authenticate: the envelope was altered`);
    parts.push(plain);
    offset += sealedChunk;
  }
  parts.push(openFinal(chunks, data.subarray(offset), chunkSize));
  return Buffer.concat(parts);
}

/**
 * Collects bytes into fixed-size blocks; a full block is handed on only once a further byte
 * arrives, so the last block (full or not) is always known to be the last. Holds at most one block.
 */
class Blocker {
  private block: Buffer;
  private fill = 0;

  constructor(size: number) {
    this.block = Buffer.alloc(size);
  }

  /** Calls `onFull` for each block that is certainly not the last one. */
  write(data: Buffer, onFull: (block: Buffer) => void): void {
    let offset = 0;
    while (offset < data.length) {
      if (this.fill === this.block.length) {
        onFull(this.block);
        // The consumer may keep the block (sealing copies it, but stay safe): use a fresh one.
        this.block = Buffer.alloc(this.block.length);
        this.fill = 0;
      }
      const n = Math.min(this.block.length - this.fill, data.length - offset);
      data.copy(this.block, this.fill, offset, offset + n);
      this.fill += n;
      offset += n;
    }
  }

  rest(): Buffer {
    return this.block.subarray(0, this.fill);
  }
}

/** A sealing Transform that also knows how long its output is for a given plaintext length. */
export interface SealStream extends Transform {
  /** The envelope's length for `plainBytes` of plaintext (for a Content-Length). */
  sealedLength(plainBytes: number): number;
}

/** A Transform that seals what is written to it. Memory: one chunk plus the streams' buffers. */
export function sealStream(recipients: Recipients, options: SealOptions = {}): SealStream {
  const { head, chunks, chunkSize } = startSealing(recipients, options);
  const blocker = new Blocker(chunkSize);
  let headSent = false;
  const sendHead = (t: Transform) => {
    if (!headSent) t.push(head);
    headSent = true;
  };
  const stream = new Transform({
    transform(data: Buffer, _encoding, callback: TransformCallback) {
      sendHead(this);
      blocker.write(data, (block) => this.push(chunks.seal(block, false)));
      callback();
    },
    flush(callback: TransformCallback) {
      sendHead(this);
      callback(null, chunks.seal(blocker.rest(), true));
    },
  }) as SealStream;
  // Every chunk but the last is full; the last holds the rest (possibly nothing).
  stream.sealedLength = (plainBytes) =>
    head.length + Math.max(1, Math.ceil(plainBytes / chunkSize)) * TAG_BYTES + plainBytes;
  return stream;
}

/**
 * A Transform that opens an envelope. Emits each chunk once it authenticates and fails with a
 * CryptoError on any problem, including an envelope that ends early.
 */
export function openStream(key: OpeningKey): Transform {
  let head: Buffer[] = [];
  let headBytes = 0;
  let headerLength: number | null = null;
  let state: { chunks: ChunkCipher; blocker: Blocker; chunkSize: number } | null = null;

  const feedHead = (data: Buffer): Buffer | null => {
    head.push(data);
    headBytes += data.length;
    let all = Buffer.concat(head);
    head = [all];
    if (headerLength === null) {
      if (!all.subarray(0, Math.min(4, all.length)).equals(ENVELOPE_MAGIC.subarray(0, Math.min(4, all.length))))
        throw new NotAnEnvelopeError('the data is not a sealed PHT envelope');
      if (all.length < PREFIX_BYTES) return null;
      headerLength = readPrefix(all.subarray(0, PREFIX_BYTES));
    }
    const bodyStart = PREFIX_BYTES + headerLength + MAC_BYTES;
    if (headBytes < bodyStart) return null;
    const opened = startOpening(
      key,
      all.subarray(0, PREFIX_BYTES),
      all.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLength),
      all.subarray(PREFIX_BYTES + headerLength, bodyStart),
    );
    state = { ...opened, blocker: new Blocker(opened.chunkSize + TAG_BYTES) };
    const rest = all.subarray(bodyStart);
    all = Buffer.alloc(0);
    head = [];
    return rest;
  };

  return new Transform({
    transform(data: Buffer, _encoding, callback: TransformCallback) {
      try {
        let body: Buffer | null = data;
        if (!state) body = feedHead(data);
        if (body && state) {
          const s: { chunks: ChunkCipher; blocker: Blocker } = state;
          s.blocker.write(body, (block) => {
            const plain = s.chunks.tryOpen(block, false);
            if (!plain)
              throw new TamperedError(`chunk ${s.chunks.chunkIndex} does not authenticate: the envelope was altered`);
            this.push(plain);
          });
        }
        callback();
      } catch (e) {
        callback(e instanceof CryptoError ? e : new MalformedEnvelopeError((e as Error).message));
      }
    },
    flush(callback: TransformCallback) {
      if (!state) {
        callback(new TruncatedError('the envelope ends inside its header'));
        return;
      }
      const s: { chunks: ChunkCipher; blocker: Blocker; chunkSize: number } = state;
      try {
        callback(null, openFinal(s.chunks, s.blocker.rest(), s.chunkSize));
      } catch (e) {
        callback(e as Error);
      }
    },
  });
}

/** True when the bytes start like an envelope (for readers that accept both plain and sealed data). */
export function looksSealed(data: Uint8Array): boolean {
  return data.length >= 4 && Buffer.from(data.buffer, data.byteOffset, 4).equals(ENVELOPE_MAGIC);
}
