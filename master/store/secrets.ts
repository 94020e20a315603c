import crypto from 'node:crypto';

/** 256 random bits, prefixed so a leaked key is recognisable in logs and secret scanners. */
export function generateSecret(kind: 'site' | 'user'): string {
  return `pht_${kind}_${crypto.randomBytes(32).toString('base64url')}`;
}

/** Secrets are high-entropy, so a fast hash is enough to make a stolen database useless. */
export function hashSecret(secret: string): string {
  return crypto.createHash('sha256').update(secret).digest('hex');
}
