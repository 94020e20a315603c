import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CryptoError,
  FingerprintPins,
  InsecureKeyFileError,
  InvalidKeyError,
  InvalidRotationError,
  KeyChangedError,
  KeyFileError,
  MalformedEnvelopeError,
  NotAnEnvelopeError,
  TamperedError,
  TruncatedError,
  UnsupportedVersionError,
  WrongKeyError,
  generateKeyPair,
  open,
  openStream,
  parsePublicKey,
  publicKeyToJson,
  readKeyRingFile,
  readPublicKeyFile,
  rotateKeyRing,
  seal,
  sealStream,
  signRotation,
  verifyRotation,
  writeKeyRingFile,
  writePublicKeyFile,
  type OpeningKey,
} from '../../shared/crypto/index.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

const vectors = JSON.parse(fs.readFileSync(path.join(__dirname, 'crypto-vectors.json'), 'utf8')) as {
  keys: unknown[];
  fingerprints: string[];
  publicKeys: unknown[];
  plaintextBase64: string;
  envelopeBase64: string;
  rotation: unknown;
};

let dir: string;
beforeEach(() => {
  dir = makeTempDir('pht-crypto-');
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const alice = generateKeyPair();
const bob = generateKeyPair();
const eve = generateKeyPair();
const CHUNK = 1024;

async function streamSeal(plain: Buffer, pieces: number[], chunkSize = CHUNK): Promise<Buffer> {
  return collect(split(plain, pieces), sealStream([alice.publicKey, bob.publicKey], { chunkSize }));
}

async function streamOpen(key: OpeningKey, envelope: Buffer, pieces: number[] = [envelope.length]): Promise<Buffer> {
  return collect(split(envelope, pieces), openStream(key));
}

/** Cuts data into pieces of the given sizes (cycling), to vary how writes straddle chunks. */
function split(data: Buffer, pieces: number[]): Buffer[] {
  const out: Buffer[] = [];
  let offset = 0;
  for (let i = 0; offset < data.length; i++) {
    const n = Math.max(1, pieces[i % pieces.length]!);
    out.push(data.subarray(offset, offset + n));
    offset += n;
  }
  return out;
}

async function collect(input: Buffer[], transform: NodeJS.ReadWriteStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  await pipeline(
    Readable.from(input),
    transform,
    new Writable({
      write(chunk: Buffer, _e, cb) {
        parts.push(chunk);
        cb();
      },
    }),
  );
  return Buffer.concat(parts);
}

function expectOpenFails(key: OpeningKey, envelope: Buffer, kind: new (...args: never[]) => CryptoError): void {
  expect(() => open(key, envelope)).toThrow(kind);
}

describe('keys', () => {
  it('gives each key pair a fingerprint covering both public halves', () => {
    expect(alice.publicKey.fingerprint).toMatch(/^SHA256:[A-Za-z0-9_-]{43}$/);
    expect(alice.publicKey.fingerprint).not.toBe(bob.publicKey.fingerprint);
    const json = publicKeyToJson(alice.publicKey);
    const mixed = parsePublicKey({ ...json, ed25519: publicKeyToJson(bob.publicKey).ed25519 });
    expect(mixed.fingerprint).not.toBe(alice.publicKey.fingerprint);
    expect(parsePublicKey(json).fingerprint).toBe(alice.publicKey.fingerprint);
  });

  it('rejects malformed public keys with InvalidKeyError', () => {
    const good = publicKeyToJson(alice.publicKey);
    for (const bad of [
      null,
      [],
      'key',
      { ...good, format: 'other' },
      { ...good, version: 2 },
      { ...good, x25519: 'AAAA' },
      { ...good, ed25519: good.ed25519 + 'A' },
      { ...good, extra: 1 },
      { format: 'pht-public-key', version: 1 },
    ])
      expect(() => parsePublicKey(bad)).toThrow(InvalidKeyError);
  });

  it('writes private key files with mode 0600 and reads them back', () => {
    const file = path.join(dir, 'keys', 'site.key');
    writeKeyRingFile(file, { current: alice, previous: [] });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const ring = readKeyRingFile(file);
    expect(ring.current.publicKey.fingerprint).toBe(alice.publicKey.fingerprint);
    expect(open(ring, seal([alice.publicKey], Buffer.from('x'))).toString()).toBe('x');
  });

  it('refuses to overwrite an existing key file', () => {
    const file = path.join(dir, 'site.key');
    writeKeyRingFile(file, { current: alice, previous: [] });
    expect(() => writeKeyRingFile(file, { current: bob, previous: [] })).toThrow(KeyFileError);
    expect(readKeyRingFile(file).current.publicKey.fingerprint).toBe(alice.publicKey.fingerprint);
  });

  it('refuses a private key file that group or others can read', () => {
    const file = path.join(dir, 'site.key');
    writeKeyRingFile(file, { current: alice, previous: [] });
    for (const mode of [0o640, 0o604, 0o620, 0o644]) {
      fs.chmodSync(file, mode);
      expect(() => readKeyRingFile(file)).toThrow(InsecureKeyFileError);
    }
    fs.chmodSync(file, 0o400);
    expect(readKeyRingFile(file).current.publicKey.fingerprint).toBe(alice.publicKey.fingerprint);
  });

  it('refuses a private key file reached through a symbolic link, and corrupt files', () => {
    const file = path.join(dir, 'site.key');
    writeKeyRingFile(file, { current: alice, previous: [] });
    fs.symlinkSync(file, path.join(dir, 'link.key'));
    expect(() => readKeyRingFile(path.join(dir, 'link.key'))).toThrow(/symbolic link/);
    fs.writeFileSync(path.join(dir, 'junk.key'), '{"format":"pht-private-key","version":1}', { mode: 0o600 });
    expect(() => readKeyRingFile(path.join(dir, 'junk.key'))).toThrow(KeyFileError);
    fs.writeFileSync(path.join(dir, 'nojson.key'), 'not json', { mode: 0o600 });
    expect(() => readKeyRingFile(path.join(dir, 'nojson.key'))).toThrow(KeyFileError);
    expect(() => readKeyRingFile(path.join(dir, 'missing.key'))).toThrow(KeyFileError);
    // A public part that does not belong to the private part is corruption, not a key.
    const text = JSON.parse(fs.readFileSync(file, 'utf8'));
    text.current.x25519Public = publicKeyToJson(bob.publicKey).x25519;
    fs.writeFileSync(path.join(dir, 'mixed.key'), JSON.stringify(text), { mode: 0o600 });
    expect(() => readKeyRingFile(path.join(dir, 'mixed.key'))).toThrow(/invalid/);
  });

  it('round-trips public key files', () => {
    const file = path.join(dir, 'site.pub');
    writePublicKeyFile(file, alice.publicKey);
    expect(readPublicKeyFile(file).fingerprint).toBe(alice.publicKey.fingerprint);
    fs.writeFileSync(file, '{"format":"pht-public-key"}');
    expect(() => readPublicKeyFile(file)).toThrow(InvalidKeyError);
  });
});

describe('seal and open', () => {
  const sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17];

  it.each(sizes)('round-trips %i bytes for every recipient', (size) => {
    const plain = crypto.randomBytes(size);
    const envelope = seal([alice.publicKey, bob.publicKey], plain, { chunkSize: CHUNK });
    expect(open(alice, envelope).equals(plain)).toBe(true);
    expect(open(bob, envelope).equals(plain)).toBe(true);
  });

  it.each(sizes)('streams %i bytes with the same format as whole-message sealing', async (size) => {
    const plain = crypto.randomBytes(size);
    const streamed = await streamSeal(plain, [7, 1000, 1, 3000]);
    expect(open(alice, streamed).equals(plain)).toBe(true);
    const whole = seal([alice.publicKey], plain, { chunkSize: CHUNK });
    expect((await streamOpen(alice, whole, [1, 13, 1040, 5000])).equals(plain)).toBe(true);
    expect((await streamOpen(bob, streamed, [3])).equals(plain)).toBe(true);
  });

  it('encrypts once and wraps the content key once per recipient', () => {
    const recipients = Array.from({ length: 50 }, () => generateKeyPair());
    const plain = crypto.randomBytes(10 * CHUNK);
    const envelope = seal(
      recipients.map((r) => r.publicKey),
      plain,
      { chunkSize: CHUNK },
    );
    // Payload once (10 chunks + tags), ~150 header bytes per recipient: not 50 copies of the data.
    expect(envelope.length).toBeLessThan(plain.length + 11 * 16 + 50 * 250 + 200);
    for (const r of [recipients[0]!, recipients[49]!]) expect(open(r, envelope).equals(plain)).toBe(true);
  });

  it('fails with WrongKeyError for a key that is not a recipient', async () => {
    const envelope = seal([alice.publicKey, bob.publicKey], Buffer.from('secret'));
    expect(() => open(eve, envelope)).toThrow(WrongKeyError);
    await expect(streamOpen(eve, envelope)).rejects.toThrow(WrongKeyError);
  });

  it('opens the published test vector (format version 1 stays readable)', () => {
    fs.writeFileSync(
      path.join(dir, 'v.key'),
      JSON.stringify({ format: 'pht-private-key', version: 1, current: vectors.keys[1], previous: [] }),
      { mode: 0o600 },
    );
    const key = readKeyRingFile(path.join(dir, 'v.key'));
    expect(key.current.publicKey.fingerprint).toBe(vectors.fingerprints[1]);
    expect(parsePublicKey(vectors.publicKeys[0]).fingerprint).toBe(vectors.fingerprints[0]);
    const plain = open(key, Buffer.from(vectors.envelopeBase64, 'base64'));
    expect(plain.toString('base64')).toBe(vectors.plaintextBase64);
    expect(verifyRotation(vectors.rotation).next.fingerprint).toBe(vectors.fingerprints[1]);
  });
});

describe('tampering and damage', () => {
  const plain = crypto.randomBytes(3 * CHUNK + 100);
  const envelope = seal([alice.publicKey, bob.publicKey], plain, { chunkSize: CHUNK });
  const headerEnd = envelope.length - (3 * (CHUNK + 16) + 100 + 16);

  it('detects a flipped bit anywhere in the envelope, never returning garbage', () => {
    for (let i = 0; i < envelope.length; i++) {
      const damaged = Buffer.from(envelope);
      damaged[i]! ^= 0x01;
      let error: unknown = null;
      try {
        open(alice, damaged);
      } catch (e) {
        error = e;
      }
      expect(error, `byte ${i}`).toBeInstanceOf(CryptoError);
    }
  });

  it('names the failure: tampered chunk, header, wrapped key', () => {
    const chunk = Buffer.from(envelope);
    chunk[headerEnd + 5]! ^= 0x80;
    expectOpenFails(alice, chunk, TamperedError);
    const mac = Buffer.from(envelope);
    mac[headerEnd - 1]! ^= 0x80;
    expectOpenFails(alice, mac, TamperedError);
    // Change a recipient's wrapped key inside the JSON header (keeping it valid base64url).
    const text = envelope.toString('latin1');
    const at = text.indexOf('"wrappedKey":"') + 20;
    const wrapped = Buffer.from(envelope);
    wrapped[at] = wrapped[at] === 0x41 ? 0x42 : 0x41;
    expectOpenFails(alice, wrapped, TamperedError);
  });

  it('detects truncation at a chunk boundary and inside a chunk or the header', async () => {
    const atBoundary = envelope.subarray(0, headerEnd + 2 * (CHUNK + 16));
    expectOpenFails(alice, atBoundary, TruncatedError);
    await expect(streamOpen(alice, atBoundary, [100])).rejects.toThrow(TruncatedError);
    expectOpenFails(alice, envelope.subarray(0, headerEnd), TruncatedError);
    await expect(streamOpen(alice, envelope.subarray(0, headerEnd))).rejects.toThrow(TruncatedError);
    expectOpenFails(alice, envelope.subarray(0, envelope.length - 1), TamperedError);
    expectOpenFails(alice, envelope.subarray(0, 20), TruncatedError);
    await expect(streamOpen(alice, envelope.subarray(0, 20))).rejects.toThrow(TruncatedError);
    expectOpenFails(alice, envelope.subarray(0, 2), TruncatedError);
    expectOpenFails(alice, Buffer.alloc(0), TruncatedError);
  });

  it('detects reordered, swapped, dropped and appended chunks', () => {
    const head = envelope.subarray(0, headerEnd);
    const c = (i: number) => envelope.subarray(headerEnd + i * (CHUNK + 16), headerEnd + (i + 1) * (CHUNK + 16));
    const last = envelope.subarray(headerEnd + 3 * (CHUNK + 16));
    expectOpenFails(alice, Buffer.concat([head, c(1), c(0), c(2), last]), TamperedError);
    expectOpenFails(alice, Buffer.concat([head, c(0), c(2), last]), TamperedError);
    expectOpenFails(alice, Buffer.concat([head, c(0), c(1), c(2), last, last]), TamperedError);
    expectOpenFails(alice, Buffer.concat([envelope, Buffer.from('x')]), TamperedError);
    // A chunk from another message under the same recipients does not fit.
    const other = seal([alice.publicKey, bob.publicKey], plain, { chunkSize: CHUNK });
    const otherC1 = other.subarray(headerEnd + (CHUNK + 16), headerEnd + 2 * (CHUNK + 16));
    expectOpenFails(alice, Buffer.concat([head, c(0), otherC1, c(2), last]), TamperedError);
  });

  it('a header from another message cannot be grafted onto a payload', () => {
    const other = seal([alice.publicKey, bob.publicKey], plain, { chunkSize: CHUNK });
    expectOpenFails(alice, Buffer.concat([other.subarray(0, headerEnd), envelope.subarray(headerEnd)]), TamperedError);
  });

  it('names foreign data and unknown format versions', async () => {
    expectOpenFails(alice, Buffer.from('{"config": "plain json"}'), NotAnEnvelopeError);
    await expect(streamOpen(alice, Buffer.from('{"config": "plain json"}'))).rejects.toThrow(NotAnEnvelopeError);
    const v2 = Buffer.from(envelope);
    v2[4] = 2;
    expectOpenFails(alice, v2, UnsupportedVersionError);
    await expect(streamOpen(alice, v2)).rejects.toThrow(UnsupportedVersionError);
    const hugeHeader = Buffer.from(envelope);
    hugeHeader.writeUInt32BE(0xffffffff, 5);
    expectOpenFails(alice, hugeHeader, MalformedEnvelopeError);
  });
});

describe('rotation', () => {
  it('keeps old ciphertext readable through the grace period, then drops the old key', () => {
    const file = path.join(dir, 'site.key');
    const t0 = new Date('2026-01-01T00:00:00Z');
    writeKeyRingFile(file, { current: alice, previous: [] });
    const old = seal([alice.publicKey], Buffer.from('sealed before rotation'));
    const { ring, statement } = rotateKeyRing(readKeyRingFile(file, t0), 7 * 86_400_000, t0);
    writeKeyRingFile(file, ring, { overwrite: true });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const during = readKeyRingFile(file, new Date('2026-01-05T00:00:00Z'));
    expect(open(during, old).toString()).toBe('sealed before rotation');
    expect(during.previous[0]!.readableUntil).toBe('2026-01-08T00:00:00.000Z');
    const after = readKeyRingFile(file, new Date('2026-01-09T00:00:00Z'));
    expect(() => open(after, old)).toThrow(WrongKeyError);
    expect(verifyRotation(statement).next.fingerprint).toBe(ring.current.publicKey.fingerprint);
  });

  it('refuses rotation statements not signed by the old key', () => {
    const statement = signRotation(alice, bob.publicKey);
    expect(verifyRotation(statement).old.fingerprint).toBe(alice.publicKey.fingerprint);
    // Eve claims alice rotated to eve's key: the signature is eve's, not alice's.
    const forged = { ...signRotation(eve, eve.publicKey), old: publicKeyToJson(alice.publicKey) };
    expect(() => verifyRotation(forged)).toThrow(InvalidRotationError);
    expect(() => verifyRotation({ ...statement, new: publicKeyToJson(eve.publicKey) })).toThrow(InvalidRotationError);
    expect(() => verifyRotation({ ...statement, issuedAt: '2020-01-01T00:00:00.000Z' })).toThrow(InvalidRotationError);
    expect(() => verifyRotation({ format: 'x' })).toThrow(InvalidRotationError);
  });
});

describe('fingerprint pinning', () => {
  it('pins on first use and refuses a swapped key, naming the principal', () => {
    const file = path.join(dir, 'pins.json');
    const pins = new FingerprintPins(file);
    expect(pins.accept('site:hospital-a', alice.publicKey)).toBe(alice.publicKey);
    expect(pins.accept('site:hospital-a', alice.publicKey)).toBe(alice.publicKey);
    expect(() => pins.accept('site:hospital-a', eve.publicKey)).toThrow(KeyChangedError);
    expect(() => new FingerprintPins(file).accept('site:hospital-a', eve.publicKey)).toThrow(/site:hospital-a/);
  });

  it('follows a chain of rotations each signed by the previous key', () => {
    const pins = new FingerprintPins(path.join(dir, 'pins.json'));
    pins.accept('user:alice', alice.publicKey);
    const r1 = signRotation(alice, bob.publicKey);
    const r2 = signRotation(bob, eve.publicKey);
    expect(pins.accept('user:alice', eve.publicKey, [r2, r1])).toBe(eve.publicKey);
    expect(new FingerprintPins(path.join(dir, 'pins.json')).pinned('user:alice')).toBe(eve.publicKey.fingerprint);
  });

  it('refuses a change backed only by a rotation the old key did not sign', () => {
    const pins = new FingerprintPins(null);
    pins.accept('ttp:ttp1', alice.publicKey);
    const forged = { ...signRotation(eve, eve.publicKey), old: publicKeyToJson(alice.publicKey) };
    expect(() => pins.accept('ttp:ttp1', eve.publicKey, [forged, 'junk', null])).toThrow(KeyChangedError);
  });

  it('lets a fingerprint pinned in config win over first use', () => {
    const pins = new FingerprintPins(null, { 'site:hospital-a': alice.publicKey.fingerprint });
    expect(() => pins.accept('site:hospital-a', eve.publicKey)).toThrow(KeyChangedError);
    expect(pins.accept('site:hospital-a', alice.publicKey)).toBe(alice.publicKey);
    expect(() => new FingerprintPins(null, { x: 'SHA256:short' })).toThrow(KeyFileError);
  });
});
