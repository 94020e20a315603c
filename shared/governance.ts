/**
 * Site governance on the wire: who posted a run (researcher, organization, project) and
 * reviewers' signatures of image digests.
 *
 * A signature is Ed25519 (RFC 8032, through Node's crypto) over the bytes
 * `pht-image-signature-v1\n` + digest, where digest is `sha256:<64 hex>`: the image's manifest
 * digest, so it names exactly one image whatever tag or repository points at it. Public keys travel
 * as base64 of their SPKI DER encoding; a key's id is the SHA-256 of that DER, in hex.
 */
import crypto from 'node:crypto';
import type { FromSchema } from 'json-schema-to-ts';

export const ORGANIZATION_NAME_PATTERN = '^[a-z0-9][a-z0-9_-]{0,62}$';
export const PROJECT_NAME_PATTERN = '^[a-z0-9][a-z0-9_-]{0,62}$';
export const DIGEST_PATTERN = '^sha256:[a-f0-9]{64}$';
export const SIGNER_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._@ -]{0,127}$';

/** Who posted the task of a run, as the registry tells the site with the run. */
export const postedBySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['researcher', 'organization', 'project'],
  properties: {
    researcher: { type: 'string' },
    organization: { type: ['string', 'null'] },
    project: { type: ['string', 'null'] },
  },
} as const;
export type PostedBy = FromSchema<typeof postedBySchema>;

const digest = { type: 'string', pattern: DIGEST_PATTERN } as const;

/** A reviewer's signature of an image digest, as stored at the registry. */
export const imageSignatureSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['digest', 'keyId', 'publicKey', 'signature', 'signer', 'createdAt'],
  properties: {
    digest,
    keyId: { type: 'string', pattern: '^[a-f0-9]{64}$' },
    publicKey: { type: 'string', description: 'base64 SPKI DER of the Ed25519 public key' },
    signature: { type: 'string', description: 'base64 of the 64-byte Ed25519 signature' },
    signer: { type: 'string', description: 'The name the reviewer signed as (sites name keys in their own policy)' },
    createdAt: { type: 'string', format: 'date-time' },
  },
} as const;
export type ImageSignature = FromSchema<typeof imageSignatureSchema>;
export const imageSignatureListSchema = { type: 'array', items: imageSignatureSchema } as const;

/** Body of POST /images/signatures. */
export const postImageSignatureSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['digest', 'publicKey', 'signature', 'signer'],
  properties: {
    digest,
    publicKey: { type: 'string', minLength: 40, maxLength: 200, pattern: '^[A-Za-z0-9+/]+={0,2}$' },
    signature: { type: 'string', pattern: '^[A-Za-z0-9+/]{86}==$' },
    signer: { type: 'string', pattern: SIGNER_NAME_PATTERN },
  },
} as const;
export type PostImageSignature = FromSchema<typeof postImageSignatureSchema>;

/** Answer of POST /images/signatures. */
export const storedSignatureSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['digest', 'keyId', 'signer'],
  properties: { digest, keyId: { type: 'string' }, signer: { type: 'string' } },
} as const;

export const signatureQuerySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['digest'],
  properties: { digest },
} as const;

const CONTEXT = 'pht-image-signature-v1\n';

function message(digest: string): Buffer {
  return Buffer.from(CONTEXT + digest, 'utf8');
}

/** Reads a base64 SPKI DER public key; throws unless it is an Ed25519 key. */
export function parsePublicKey(base64: string): crypto.KeyObject {
  if (!/^[A-Za-z0-9+/]{1,200}={0,2}$/.test(base64)) throw new Error('public key is not base64');
  const key = crypto.createPublicKey({ key: Buffer.from(base64, 'base64'), format: 'der', type: 'spki' });
  if (key.asymmetricKeyType !== 'ed25519') throw new Error('public key is not an Ed25519 key');
  return key;
}

export function keyIdOf(publicKeyBase64: string): string {
  return crypto.createHash('sha256').update(Buffer.from(publicKeyBase64, 'base64')).digest('hex');
}

export function generateReviewerKeyPair(): { publicKey: string; privateKeyPem: string } {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519');
  return {
    publicKey: publicKey.export({ format: 'der', type: 'spki' }).toString('base64'),
    privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
  };
}

/** Signs a digest with a private key (PEM PKCS#8 Ed25519); returns the base64 signature. */
export function signDigest(privateKeyPem: string, digest: string): { signature: string; publicKey: string } {
  if (!new RegExp(DIGEST_PATTERN).test(digest)) throw new Error(`not an image digest: ${digest.slice(0, 80)}`);
  const key = crypto.createPrivateKey(privateKeyPem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error('the key is not an Ed25519 private key');
  const publicKey = crypto.createPublicKey(key).export({ format: 'der', type: 'spki' }).toString('base64');
  return { signature: crypto.sign(null, message(digest), key).toString('base64'), publicKey };
}

/** True only for a well-formed Ed25519 signature of exactly this digest by this key. Never throws. */
export function verifyDigestSignature(publicKeyBase64: string, digest: string, signatureBase64: string): boolean {
  try {
    if (!new RegExp(DIGEST_PATTERN).test(digest)) return false;
    if (!/^[A-Za-z0-9+/]{86}==$/.test(signatureBase64)) return false;
    return crypto.verify(
      null,
      message(digest),
      parsePublicKey(publicKeyBase64),
      Buffer.from(signatureBase64, 'base64'),
    );
  } catch {
    return false;
  }
}
