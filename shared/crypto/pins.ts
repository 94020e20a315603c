/**
 * Trust on first use for public keys relayed by someone else (the registry). The first key seen
 * for a principal is pinned by fingerprint in a local file; later a different key is accepted
 * only through a chain of rotation statements each signed by the previous key. An operator can
 * pin fingerprints in config instead; a config pin always wins over what the file learned from
 * another starting point.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { InvalidRotationError, KeyChangedError, KeyFileError } from './errors.js';
import { FINGERPRINT_PATTERN, verifyRotation, type PublicKey } from './keys.js';

interface PinEntry {
  fingerprint: string;
  pinnedAt: string;
  /** The config pin this entry was reached from by signed rotations, if any. */
  from?: string;
}

const fingerprintRe = new RegExp(FINGERPRINT_PATTERN);
const MAX_CHAIN = 64;

export class FingerprintPins {
  private entries: Record<string, PinEntry> = {};

  /**
   * @param file where pins learned on first use are kept (null: in memory only)
   * @param configured fingerprints an operator pinned, by principal (e.g. "site:hospital-a")
   */
  constructor(
    private readonly file: string | null,
    private readonly configured: Readonly<Record<string, string>> = {},
  ) {
    for (const [principal, fp] of Object.entries(configured))
      if (!fingerprintRe.test(fp))
        throw new KeyFileError(`pinned fingerprint for ${principal} is malformed: ${fp}`, file ?? 'config');
    if (file && fs.existsSync(file)) {
      try {
        const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, PinEntry>;
        for (const [principal, entry] of Object.entries(parsed)) {
          if (typeof entry?.fingerprint !== 'string' || !fingerprintRe.test(entry.fingerprint))
            throw new Error(principal);
          this.entries[principal] = entry;
        }
      } catch (e) {
        throw new KeyFileError(`pin file ${file} is corrupt (${(e as Error).message}); fix or remove it`, file);
      }
    }
  }

  /** The fingerprint currently trusted for a principal, if any. */
  pinned(principal: string): string | undefined {
    const configured = this.configured[principal];
    const learned = this.entries[principal];
    if (configured === undefined) return learned?.fingerprint;
    return learned?.from === configured ? learned.fingerprint : configured;
  }

  /**
   * Returns `offered` when it is the pinned key, the first key seen, or reached from the pinned
   * key by rotations signed by each predecessor; throws KeyChangedError naming the principal
   * otherwise.
   */
  accept(principal: string, offered: PublicKey, rotations: readonly unknown[] = []): PublicKey {
    const pinned = this.pinned(principal);
    if (pinned === undefined) {
      this.save(principal, { fingerprint: offered.fingerprint, pinnedAt: new Date().toISOString() });
      return offered;
    }
    if (pinned === offered.fingerprint) return offered;
    const steps = new Map<string, string>();
    for (const statement of rotations) {
      try {
        const { old, next } = verifyRotation(statement);
        steps.set(old.fingerprint, next.fingerprint);
      } catch (e) {
        if (!(e instanceof InvalidRotationError)) throw e;
      }
    }
    let cursor = pinned;
    for (let i = 0; i < MAX_CHAIN && cursor !== offered.fingerprint; i++) {
      const next = steps.get(cursor);
      if (next === undefined) break;
      cursor = next;
    }
    if (cursor !== offered.fingerprint) throw new KeyChangedError(principal, pinned, offered.fingerprint);
    const from = this.configured[principal];
    this.save(principal, {
      fingerprint: offered.fingerprint,
      pinnedAt: new Date().toISOString(),
      ...(from ? { from } : {}),
    });
    return offered;
  }

  private save(principal: string, entry: PinEntry): void {
    this.entries[principal] = entry;
    if (!this.file) return;
    fs.mkdirSync(path.dirname(path.resolve(this.file)), { recursive: true });
    const tmp = `${this.file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(this.entries, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
    fs.renameSync(tmp, this.file);
  }
}
