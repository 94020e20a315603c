import { validateKeyRecord, type KeyKind, type KeyRecord } from '../key-schemas.js';
import { InvalidKeyError } from './errors.js';
import { parsePublicKey, type PublicKey } from './keys.js';
import type { FingerprintPins } from './pins.js';

/** Fetches a principal's key record from the registry (throws the caller's own errors, e.g. 404). */
export type KeyFetcher = (kind: KeyKind, name: string) => Promise<unknown>;

/**
 * Public keys of other principals, as relayed by the registry and checked here: the record must be
 * well formed, name the principal asked for, carry a fingerprint that matches its key, and agree
 * with the pinned fingerprint (or a rotation chain signed from it). Anything else throws.
 */
export class KeyDirectory {
  constructor(
    private readonly fetch: KeyFetcher,
    private readonly pins: FingerprintPins,
  ) {}

  async get(kind: KeyKind, name: string): Promise<{ key: PublicKey; record: KeyRecord }> {
    const record = await this.fetch(kind, name);
    if (!validateKeyRecord(record))
      throw new InvalidKeyError(
        `the registry answered a malformed key record for ${kind} "${name}": ${validateKeyRecord.problems().slice(0, 2).join('; ')}`,
      );
    if (record.kind !== kind || record.name !== name)
      throw new InvalidKeyError(
        `asked the registry for the key of ${kind} "${name}", got that of ${record.kind} "${record.name}"`,
      );
    const key = parsePublicKey(record.publicKey);
    if (key.fingerprint !== record.fingerprint)
      throw new InvalidKeyError(`the registry's fingerprint for ${kind} "${name}" does not match the key it sent`);
    return { key: this.pins.accept(`${kind}:${name}`, key, record.rotations), record };
  }
}
