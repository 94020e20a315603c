/**
 * Key pairs, key files, fingerprints and signed key rotations.
 *
 * A principal's key is a pair of pairs: an X25519 key that receives sealed messages, and a
 * companion Ed25519 key whose only job is to sign the rotation to the next key (X25519 cannot
 * sign, and Node's crypto has no safe conversion between the two curves). Both public halves
 * travel together and the fingerprint covers both, so a relay cannot swap either one.
 */
import crypto, { type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { InsecureKeyFileError, InvalidKeyError, InvalidRotationError, KeyFileError } from './errors.js';

export interface PublicKey {
  readonly x25519: KeyObject;
  readonly ed25519: KeyObject;
  /** `SHA256:` + base64url of SHA-256 over both raw public keys (see fingerprintOf). */
  readonly fingerprint: string;
}

export interface PrivateKey {
  readonly publicKey: PublicKey;
  readonly x25519: KeyObject;
  readonly ed25519: KeyObject;
  readonly createdAt: string;
}

/** A retired key kept so that ciphertext sealed to it stays readable until `readableUntil`. */
export interface RetiredKey {
  readonly key: PrivateKey;
  readonly retiredAt: string;
  readonly readableUntil: string;
}

/** What a private key file holds: the current key and the retired keys still in their grace period. */
export interface KeyRing {
  readonly current: PrivateKey;
  readonly previous: readonly RetiredKey[];
}

/** A public key as JSON (files, registry answers, config). */
export interface PublicKeyJson {
  format: 'pht-public-key';
  version: 1;
  x25519: string;
  ed25519: string;
}

/** The old key's signature over the new key: lets a pinned fingerprint follow a genuine rotation. */
export interface RotationStatement {
  format: 'pht-key-rotation';
  version: 1;
  old: PublicKeyJson;
  new: PublicKeyJson;
  issuedAt: string;
  /** Ed25519 signature by the old key over rotationSigningBytes(), base64url. */
  signature: string;
}

const RAW_KEY = /^[A-Za-z0-9_-]{43}$/;
const SIGNATURE = /^[A-Za-z0-9_-]{86}$/;

function rawPublic(key: KeyObject): Buffer {
  const x = key.export({ format: 'jwk' }).x;
  if (typeof x !== 'string') throw new InvalidKeyError('not an X25519/Ed25519 public key');
  return Buffer.from(x, 'base64url');
}

/** The fingerprint people compare and pin: it names both halves of a public key. */
export function fingerprintOf(x25519: KeyObject, ed25519: KeyObject): string {
  const digest = crypto
    .createHash('sha256')
    .update('pht-public-key-v1\0')
    .update(rawPublic(x25519))
    .update(rawPublic(ed25519))
    .digest('base64url');
  return `SHA256:${digest}`;
}

function makePublicKey(x25519: KeyObject, ed25519: KeyObject): PublicKey {
  return { x25519, ed25519, fingerprint: fingerprintOf(x25519, ed25519) };
}

/** A fresh key pair (X25519 for sealing, Ed25519 for signing its successor). */
export function generateKeyPair(now: Date = new Date()): PrivateKey {
  const x = crypto.generateKeyPairSync('x25519');
  const e = crypto.generateKeyPairSync('ed25519');
  return {
    publicKey: makePublicKey(x.publicKey, e.publicKey),
    x25519: x.privateKey,
    ed25519: e.privateKey,
    createdAt: now.toISOString(),
  };
}

export function publicKeyToJson(key: PublicKey): PublicKeyJson {
  return {
    format: 'pht-public-key',
    version: 1,
    x25519: rawPublic(key.x25519).toString('base64url'),
    ed25519: rawPublic(key.ed25519).toString('base64url'),
  };
}

/** Validates a public key from outside (file, config, registry answer). Throws InvalidKeyError. */
export function parsePublicKey(value: unknown): PublicKey {
  if (!value || typeof value !== 'object' || Array.isArray(value))
    throw new InvalidKeyError('a public key must be a JSON object');
  const v = value as Record<string, unknown>;
  const extra = Object.keys(v).filter((k) => !['format', 'version', 'x25519', 'ed25519'].includes(k));
  if (extra.length) throw new InvalidKeyError(`unexpected field(s) in public key: ${extra.join(', ')}`);
  if (v.format !== 'pht-public-key') throw new InvalidKeyError('public key "format" must be "pht-public-key"');
  if (v.version !== 1) throw new InvalidKeyError(`public key version ${String(v.version)} is not supported`);
  if (typeof v.x25519 !== 'string' || !RAW_KEY.test(v.x25519))
    throw new InvalidKeyError('public key "x25519" must be 32 bytes in base64url');
  if (typeof v.ed25519 !== 'string' || !RAW_KEY.test(v.ed25519))
    throw new InvalidKeyError('public key "ed25519" must be 32 bytes in base64url');
  try {
    const x = crypto.createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: v.x25519 }, format: 'jwk' });
    const e = crypto.createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: v.ed25519 }, format: 'jwk' });
    return makePublicKey(x, e);
  } catch {
    throw new InvalidKeyError('public key bytes are not valid curve points');
  }
}

/** Accepts what `fingerprintOf` produces and nothing else (for fingerprints pinned in config). */
export const FINGERPRINT_PATTERN = '^SHA256:[A-Za-z0-9_-]{43}$';

// ---- key files -------------------------------------------------------------------------------

interface PrivateKeyJson {
  x25519: string;
  ed25519: string;
  x25519Public: string;
  ed25519Public: string;
  createdAt: string;
}

function privateToJson(key: PrivateKey): PrivateKeyJson {
  const x = key.x25519.export({ format: 'jwk' });
  const e = key.ed25519.export({ format: 'jwk' });
  return {
    x25519: String(x.d),
    ed25519: String(e.d),
    x25519Public: String(x.x),
    ed25519Public: String(e.x),
    createdAt: key.createdAt,
  };
}

function privateFromJson(v: unknown, file: string): PrivateKey {
  const o = (v ?? {}) as Record<string, unknown>;
  for (const f of ['x25519', 'ed25519', 'x25519Public', 'ed25519Public'] as const) {
    if (typeof o[f] !== 'string' || !RAW_KEY.test(o[f]))
      throw new KeyFileError(`key file ${file}: field "${f}" is missing or malformed`, file);
  }
  if (typeof o.createdAt !== 'string') throw new KeyFileError(`key file ${file}: field "createdAt" is missing`, file);
  try {
    const x = crypto.createPrivateKey({
      key: { kty: 'OKP', crv: 'X25519', d: o.x25519 as string, x: o.x25519Public as string },
      format: 'jwk',
    });
    const e = crypto.createPrivateKey({
      key: { kty: 'OKP', crv: 'Ed25519', d: o.ed25519 as string, x: o.ed25519Public as string },
      format: 'jwk',
    });
    // Derive the public halves from the private ones: a file whose stored public part does not
    // match its private part is corrupt, and trusting it would seal to a key nobody holds.
    const pub = makePublicKey(crypto.createPublicKey(x), crypto.createPublicKey(e));
    if (
      rawPublic(pub.x25519).toString('base64url') !== o.x25519Public ||
      rawPublic(pub.ed25519).toString('base64url') !== o.ed25519Public
    )
      throw new Error('mismatch');
    return { publicKey: pub, x25519: x, ed25519: e, createdAt: o.createdAt };
  } catch {
    throw new KeyFileError(`key file ${file}: the key material is invalid`, file);
  }
}

/**
 * Writes a private key file with mode 0600, atomically (temp file + rename). Refuses to replace an
 * existing file unless `overwrite` (a rotation rewrites the file it read).
 */
export function writeKeyRingFile(file: string, ring: KeyRing, options: { overwrite?: boolean } = {}): void {
  const body = JSON.stringify(
    {
      format: 'pht-private-key',
      version: 1,
      current: privateToJson(ring.current),
      previous: ring.previous.map((r) => ({
        ...privateToJson(r.key),
        retiredAt: r.retiredAt,
        readableUntil: r.readableUntil,
      })),
    },
    null,
    2,
  );
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true, mode: 0o700 });
  if (!options.overwrite && fs.existsSync(file))
    throw new KeyFileError(`key file ${file} already exists; refusing to overwrite it`, file);
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
  // Created with 0600 from the start (the umask can only remove bits), never chmod-ed afterwards.
  fs.writeFileSync(tmp, body + '\n', { mode: 0o600, flag: 'wx' });
  try {
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/**
 * Reads a private key file. Refuses a file that group or others may read or write, a symbolic
 * link, or anything that is not a regular file; drops retired keys whose grace period is over.
 */
export function readKeyRingFile(file: string, now: Date = new Date()): KeyRing {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ELOOP') throw new KeyFileError(`private key file ${file} is a symbolic link; refusing it`, file);
    throw new KeyFileError(`cannot read private key file ${file}: ${code ?? (e as Error).message}`, file);
  }
  let text: string;
  try {
    // fstat on the opened descriptor: the file checked is the file read.
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new KeyFileError(`private key file ${file} is not a regular file`, file);
    if ((stat.mode & 0o077) !== 0) throw new InsecureKeyFileError(file, stat.mode);
    if (stat.size > 1024 * 1024) throw new KeyFileError(`private key file ${file} is too large to be a key file`, file);
    text = fs.readFileSync(fd, 'utf8');
  } finally {
    fs.closeSync(fd);
  }
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new KeyFileError(`private key file ${file} is not valid JSON`, file);
  }
  if (json?.format !== 'pht-private-key' || json.version !== 1)
    throw new KeyFileError(`${file} is not a PHT private key file (format "pht-private-key", version 1)`, file);
  const current = privateFromJson(json.current, file);
  if (!Array.isArray(json.previous)) throw new KeyFileError(`key file ${file}: field "previous" must be a list`, file);
  const previous: RetiredKey[] = [];
  for (const p of json.previous as Record<string, unknown>[]) {
    if (typeof p?.readableUntil !== 'string' || typeof p.retiredAt !== 'string')
      throw new KeyFileError(`key file ${file}: a retired key lacks "retiredAt"/"readableUntil"`, file);
    if (Date.parse(p.readableUntil) <= now.getTime()) continue;
    previous.push({ key: privateFromJson(p, file), retiredAt: p.retiredAt, readableUntil: p.readableUntil });
  }
  return { current, previous };
}

export function writePublicKeyFile(file: string, key: PublicKey): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(publicKeyToJson(key), null, 2) + '\n', { mode: 0o644 });
}

export function readPublicKeyFile(file: string): PublicKey {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new KeyFileError(
      `cannot read public key file ${file}: ${(e as { code?: string }).code ?? (e as Error).message}`,
      file,
    );
  }
  try {
    return parsePublicKey(JSON.parse(text));
  } catch (e) {
    if (e instanceof InvalidKeyError) throw new InvalidKeyError(`${file}: ${e.message}`);
    throw new KeyFileError(`public key file ${file} is not valid JSON`, file);
  }
}

// ---- rotation ------------------------------------------------------------------------------------

/** The exact bytes signed: a fixed-order list, so no JSON canonicalisation question arises. */
function rotationSigningBytes(oldKey: PublicKeyJson, newKey: PublicKeyJson, issuedAt: string): Buffer {
  return Buffer.from(
    JSON.stringify(['pht-key-rotation-v1', oldKey.x25519, oldKey.ed25519, newKey.x25519, newKey.ed25519, issuedAt]),
  );
}

/** The old key signs the new one. */
export function signRotation(oldKey: PrivateKey, newKey: PublicKey, now: Date = new Date()): RotationStatement {
  const old = publicKeyToJson(oldKey.publicKey);
  const next = publicKeyToJson(newKey);
  const issuedAt = now.toISOString();
  const signature = crypto.sign(null, rotationSigningBytes(old, next, issuedAt), oldKey.ed25519).toString('base64url');
  return { format: 'pht-key-rotation', version: 1, old, new: next, issuedAt, signature };
}

/**
 * Checks a rotation statement from outside. Returns the old and new keys when the statement is
 * well formed and signed by the old key's Ed25519 half; throws InvalidRotationError otherwise.
 */
export function verifyRotation(statement: unknown): { old: PublicKey; next: PublicKey; issuedAt: string } {
  const s = (statement ?? {}) as Record<string, unknown>;
  if (s.format !== 'pht-key-rotation' || s.version !== 1)
    throw new InvalidRotationError('not a PHT key rotation statement (version 1)');
  if (typeof s.issuedAt !== 'string' || Number.isNaN(Date.parse(s.issuedAt)))
    throw new InvalidRotationError('rotation "issuedAt" must be a date');
  if (typeof s.signature !== 'string' || !SIGNATURE.test(s.signature))
    throw new InvalidRotationError('rotation "signature" is malformed');
  let old: PublicKey;
  let next: PublicKey;
  try {
    old = parsePublicKey(s.old);
    next = parsePublicKey(s.new);
  } catch (e) {
    throw new InvalidRotationError(`rotation names an invalid key: ${(e as Error).message}`);
  }
  const bytes = rotationSigningBytes(publicKeyToJson(old), publicKeyToJson(next), s.issuedAt);
  if (!crypto.verify(null, bytes, old.ed25519, Buffer.from(s.signature, 'base64url')))
    throw new InvalidRotationError(`rotation from ${old.fingerprint} is not signed by that key`);
  return { old, next, issuedAt: s.issuedAt };
}

/**
 * Rotates a key ring: a new current key, the old one kept readable for `graceMs`, retired keys
 * past their grace dropped. Returns the statement to publish (signed by the old key).
 */
export function rotateKeyRing(
  ring: KeyRing,
  graceMs: number,
  now: Date = new Date(),
): { ring: KeyRing; statement: RotationStatement } {
  const next = generateKeyPair(now);
  const readableUntil = new Date(now.getTime() + graceMs).toISOString();
  const previous = [
    { key: ring.current, retiredAt: now.toISOString(), readableUntil },
    ...ring.previous.filter((p) => Date.parse(p.readableUntil) > now.getTime()),
  ];
  return { ring: { current: next, previous }, statement: signRotation(ring.current, next.publicKey, now) };
}

// ---- key file sets (what the `keys create` commands write) ------------------------------------

/** A private key file `x.key` has its public key beside it in `x.pub` and its rotations in `x.rotations.json`. */
export function keyFilePaths(privateFile: string): { privateFile: string; publicFile: string; rotationsFile: string } {
  const base = privateFile.endsWith('.key') ? privateFile.slice(0, -4) : privateFile;
  return { privateFile, publicFile: `${base}.pub`, rotationsFile: `${base}.rotations.json` };
}

/** Creates a key pair's files (private 0600, public beside it). Refuses to replace an existing key. */
export function createKeyFiles(privateFile: string): PrivateKey {
  const key = generateKeyPair();
  writeKeyRingFile(privateFile, { current: key, previous: [] });
  writePublicKeyFile(keyFilePaths(privateFile).publicFile, key.publicKey);
  return key;
}

/**
 * Rotates the key in `privateFile`: the old key stays in the file (readable) for `graceMs`, the
 * public file is replaced and the signed statement appended to the rotations file.
 */
export function rotateKeyFiles(
  privateFile: string,
  graceMs: number,
  now: Date = new Date(),
): { ring: KeyRing; statement: RotationStatement; rotations: RotationStatement[] } {
  const paths = keyFilePaths(privateFile);
  const { ring, statement } = rotateKeyRing(readKeyRingFile(privateFile, now), graceMs, now);
  writeKeyRingFile(privateFile, ring, { overwrite: true });
  writePublicKeyFile(paths.publicFile, ring.current.publicKey);
  const rotations = [...readRotationsFile(paths.rotationsFile), statement];
  fs.writeFileSync(paths.rotationsFile, JSON.stringify(rotations, null, 2) + '\n', { mode: 0o644 });
  return { ring, statement, rotations };
}

/** The rotation statements published beside a public key (an empty list when none). */
export function readRotationsFile(file: string): RotationStatement[] {
  if (!fs.existsSync(file)) return [];
  const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
  if (!Array.isArray(parsed)) throw new KeyFileError(`rotations file ${file} must hold a JSON list`, file);
  for (const s of parsed) verifyRotation(s);
  return parsed as RotationStatement[];
}
