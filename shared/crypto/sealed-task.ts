/**
 * Sealed tasks: what travels through the registry when a researcher asks for encryption.
 *
 * The task's config is replaced by `{"format": "pht-sealed-config", "version": 1, "envelope": …}`:
 * one envelope sealed for every target site, holding the real config together with the names of
 * the principals the results must be sealed for, all signed by the researcher's Ed25519 key. A
 * site checks the signature against the owner's pinned key, so a registry can neither read the
 * config nor forge one that sends results to a key of its choosing.
 *
 * Logs and progress messages are sealed piece by piece as text lines `pht-sealed:<base64>`.
 */
import crypto from 'node:crypto';
import { CryptoError, MalformedEnvelopeError, TamperedError } from './errors.js';
import { open, seal, type OpeningKey, type Recipients } from './envelope.js';
import type { PrivateKey, PublicKey } from './keys.js';

export const SEALED_CONFIG_FORMAT = 'pht-sealed-config';
export const SEALED_TEXT_PREFIX = 'pht-sealed:';
/** A principal as the sealing names it: "user:alice", "site:hospital-a", "ttp:ttp-one". */
export const PRINCIPAL_REF = /^(site|user|ttp):[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;

export interface SealedConfig {
  format: typeof SEALED_CONFIG_FORMAT;
  version: 1;
  /** base64 of the envelope. */
  envelope: string;
}

/** What the researcher signs and the site reads. */
export interface TaskSealing {
  /** The researcher who posted the task (the signer). */
  owner: string;
  /** The config as the container must see it (any JSON value; a string is handed over byte for byte). */
  config: unknown;
  /** Principals every result file, log line and progress message is sealed for ("user:alice"). */
  resultRecipients: string[];
  /** The TTP the site's outbox files go to, if any. */
  ttp: string | null;
  issuedAt: string;
}

const SIGNING_CONTEXT = Buffer.from('pht-task-config-v1\0');

export function isSealedConfig(value: unknown): value is SealedConfig {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    (value as Record<string, unknown>).format === SEALED_CONFIG_FORMAT
  );
}

/** Seals a task's config for its target sites, signed by the researcher. */
export function sealTaskConfig(
  owner: PrivateKey,
  sealing: Omit<TaskSealing, 'issuedAt'>,
  siteKeys: Recipients,
): SealedConfig {
  for (const r of sealing.resultRecipients)
    if (!PRINCIPAL_REF.test(r)) throw new RangeError(`result recipient "${r}" must look like user:NAME`);
  const payload = Buffer.from(JSON.stringify({ ...sealing, issuedAt: new Date().toISOString() }));
  const signature = crypto.sign(null, Buffer.concat([SIGNING_CONTEXT, payload]), owner.ed25519);
  const inner = Buffer.from(
    JSON.stringify({ payload: payload.toString('base64'), signature: signature.toString('base64url') }),
  );
  return { format: SEALED_CONFIG_FORMAT, version: 1, envelope: seal(siteKeys, inner).toString('base64') };
}

/**
 * Opens a sealed config with the site's key. Returns what it says and a check of the signature
 * against the owner's (pinned) key, which the caller must run before trusting any of it.
 */
export function openTaskConfig(
  key: OpeningKey,
  sealed: unknown,
): { sealing: TaskSealing; verify(ownerKey: PublicKey): void } {
  if (!isSealedConfig(sealed) || sealed.version !== 1 || typeof sealed.envelope !== 'string')
    throw new MalformedEnvelopeError('the task config is not a version 1 sealed config');
  const inner = open(key, Buffer.from(sealed.envelope, 'base64'));
  let payload: Buffer;
  let signature: Buffer;
  let sealing: TaskSealing;
  try {
    const parsed = JSON.parse(inner.toString('utf8')) as { payload: string; signature: string };
    payload = Buffer.from(parsed.payload, 'base64');
    signature = Buffer.from(parsed.signature, 'base64url');
    sealing = JSON.parse(payload.toString('utf8')) as TaskSealing;
  } catch {
    throw new MalformedEnvelopeError('the sealed config does not hold a signed payload');
  }
  if (
    typeof sealing?.owner !== 'string' ||
    !Array.isArray(sealing.resultRecipients) ||
    !sealing.resultRecipients.every((r) => typeof r === 'string' && PRINCIPAL_REF.test(r)) ||
    (sealing.ttp !== null && typeof sealing.ttp !== 'string')
  )
    throw new MalformedEnvelopeError('the sealed config names its owner or recipients wrongly');
  return {
    sealing,
    verify(ownerKey: PublicKey) {
      if (!crypto.verify(null, Buffer.concat([SIGNING_CONTEXT, payload]), ownerKey.ed25519, signature))
        throw new TamperedError(`the sealed config is not signed by ${sealing.owner}'s key (${ownerKey.fingerprint})`);
    },
  };
}

/** One sealed line of text (a log piece, a progress message). */
export function sealText(recipients: Recipients, text: string): string {
  return SEALED_TEXT_PREFIX + seal(recipients, Buffer.from(text, 'utf8')).toString('base64') + '\n';
}

/**
 * Opens a log made of sealed lines. Lines that are not sealed (the registry's own notices) stay
 * as they are; a sealed line that does not open is replaced by a notice saying why.
 */
export function openSealedText(key: OpeningKey, text: string): string {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(SEALED_TEXT_PREFIX)) {
      if (line) out.push(line + '\n');
      continue;
    }
    try {
      out.push(open(key, Buffer.from(line.slice(SEALED_TEXT_PREFIX.length), 'base64')).toString('utf8'));
    } catch (e) {
      if (!(e instanceof CryptoError)) throw e;
      out.push(`[a sealed part of this log could not be opened: ${e.message}]\n`);
    }
  }
  return out.join('');
}
