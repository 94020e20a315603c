import path from 'node:path';
import Database from 'better-sqlite3';
import { InvalidKeyError, InvalidRotationError, parsePublicKey, verifyRotation } from '../shared/crypto/index.js';
import { ERROR_CODES } from '../shared/error-codes.js';
import type { KeyKind, KeyRecord, PublicKeyBody } from '../shared/key-schemas.js';
import { RegistryError } from './errors.js';

/** A stored key as both backends keep it (JSON in text columns). */
export interface StoredKeyRow {
  kind: KeyKind;
  name: string;
  public_key: string;
  fingerprint: string;
  rotations: string;
  url: string | null;
  revoked_at: string | null;
}
type Row = StoredKeyRow;

const toRecord = (r: Row): KeyRecord => ({
  kind: r.kind,
  name: r.name,
  publicKey: JSON.parse(r.public_key) as PublicKeyBody,
  fingerprint: r.fingerprint,
  rotations: JSON.parse(r.rotations) as unknown[],
  url: r.url,
});

/**
 * The public keys the registry relays, on either backend (SQLite here, PostgreSQL in
 * store/postgres-public-keys.ts). The registry checks what it can (a key is well formed, a change
 * comes with a rotation signed by the registered key), but clients never rely on that: they pin
 * fingerprints themselves.
 */
export interface PublicKeys {
  /** The key handed out for a principal; throws 404 when none is registered and 410 when revoked. */
  get(kind: KeyKind, name: string): Promise<KeyRecord>;
  /**
   * Registers a principal's key. The first key is taken as is; the same key again changes
   * nothing; another key needs a rotation signed by the registered one (409 otherwise).
   */
  register(
    kind: KeyKind,
    name: string,
    body: PublicKeyBody,
    rotation: unknown,
    url?: string | null,
  ): Promise<{ record: KeyRecord; changed: boolean }>;
  revoke(kind: KeyKind, name: string): Promise<boolean>;
  /** Those of `names` that have no registered key or only a revoked one, in the order given. */
  withoutActiveKey(kind: KeyKind, names: readonly string[]): Promise<string[]>;
  close(): Promise<void>;
}

/** The record handed out for a stored row: 404 without one, 410 for a revoked key. */
export function keyRecordOf(row: Row | undefined, kind: KeyKind, name: string): KeyRecord {
  if (!row) throw new RegistryError(404, ERROR_CODES.notFound, `${kind} "${name}" has no registered public key`);
  if (row.revoked_at)
    throw new RegistryError(
      410,
      ERROR_CODES.keyRevoked,
      `the public key of ${kind} "${name}" was revoked at ${row.revoked_at}`,
    );
  return toRecord(row);
}

/**
 * The registration rules, once for every backend: given the stored row, either nothing changes or
 * this fingerprint and rotation chain are written. Throws 400 for a malformed key and 409 for a
 * change without a valid rotation signed by the registered key.
 */
export function planRegistration(
  row: Row | undefined,
  kind: KeyKind,
  name: string,
  body: PublicKeyBody,
  rotation: unknown,
  url: string | null,
): { unchanged: KeyRecord } | { fingerprint: string; rotations: unknown[] } {
  let key;
  try {
    key = parsePublicKey(body);
  } catch (e) {
    if (e instanceof InvalidKeyError) throw new RegistryError(400, ERROR_CODES.validation, e.message);
    throw e;
  }
  let rotations: unknown[] = row ? (JSON.parse(row.rotations) as unknown[]) : [];
  if (row && !row.revoked_at && row.fingerprint === key.fingerprint && (url === null || url === row.url))
    return { unchanged: toRecord(row) };
  if (row && !row.revoked_at && row.fingerprint !== key.fingerprint) {
    if (rotation === undefined || rotation === null)
      throw new RegistryError(
        409,
        ERROR_CODES.conflict,
        `${kind} "${name}" already has key ${row.fingerprint}; a new key needs a rotation signed by it`,
      );
    try {
      const { old, next } = verifyRotation(rotation);
      if (old.fingerprint !== row.fingerprint || next.fingerprint !== key.fingerprint)
        throw new InvalidRotationError('names other keys');
    } catch (e) {
      throw new RegistryError(
        409,
        ERROR_CODES.conflict,
        `the rotation for ${kind} "${name}" is not valid: ${(e as Error).message}`,
      );
    }
    rotations = [...rotations, rotation];
  }
  return { fingerprint: key.fingerprint, rotations };
}

/**
 * The SQLite backend's keys, in the registry's SQLite file (table of migration 0005), through a
 * connection of its own.
 */
export class PublicKeyStore implements PublicKeys {
  private readonly db: Database.Database;
  private readonly stmts;

  /** Opens the registry's database; the registry's store must have migrated it already. */
  constructor(dataDir: string) {
    this.db = new Database(path.join(dataDir, 'registry.sqlite'));
    this.db.pragma('busy_timeout = 5000');
    this.stmts = {
      get: this.db.prepare('SELECT * FROM public_keys WHERE kind = ? AND name = ?'),
      upsert: this.db.prepare(
        `INSERT INTO public_keys (kind, name, public_key, fingerprint, rotations, url, revoked_at, updated_at)
         VALUES (@kind, @name, @publicKey, @fingerprint, @rotations, @url, NULL, @now)
         ON CONFLICT (kind, name) DO UPDATE SET public_key = excluded.public_key, fingerprint = excluded.fingerprint,
           rotations = excluded.rotations, url = excluded.url, revoked_at = NULL, updated_at = excluded.updated_at`,
      ),
      revoke: this.db.prepare(
        'UPDATE public_keys SET revoked_at = ?, updated_at = ? WHERE kind = ? AND name = ? AND revoked_at IS NULL',
      ),
    };
  }

  async get(kind: KeyKind, name: string): Promise<KeyRecord> {
    return keyRecordOf(this.stmts.get.get(kind, name) as Row | undefined, kind, name);
  }

  async register(
    kind: KeyKind,
    name: string,
    body: PublicKeyBody,
    rotation: unknown,
    url: string | null = null,
  ): Promise<{ record: KeyRecord; changed: boolean }> {
    return this.db.transaction(() => {
      const row = this.stmts.get.get(kind, name) as Row | undefined;
      const plan = planRegistration(row, kind, name, body, rotation, url);
      if ('unchanged' in plan) return { record: plan.unchanged, changed: false };
      this.stmts.upsert.run({
        kind,
        name,
        publicKey: JSON.stringify(body),
        fingerprint: plan.fingerprint,
        rotations: JSON.stringify(plan.rotations),
        url,
        now: new Date().toISOString(),
      });
      return { record: toRecord(this.stmts.get.get(kind, name) as Row), changed: true };
    })();
  }

  async revoke(kind: KeyKind, name: string): Promise<boolean> {
    const now = new Date().toISOString();
    return this.stmts.revoke.run(now, now, kind, name).changes === 1;
  }

  async withoutActiveKey(kind: KeyKind, names: readonly string[]): Promise<string[]> {
    return names.filter((name) => {
      const row = this.stmts.get.get(kind, name) as Row | undefined;
      return !row || row.revoked_at !== null;
    });
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
