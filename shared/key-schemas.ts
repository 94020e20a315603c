/**
 * Wire shapes of public-key registration and relay (/api/v1/public-key, /site/public-key,
 * /keys/{kind}/{name}). The registry only relays these; clients check them with shared/crypto.
 */
import { FINGERPRINT_PATTERN } from './crypto/keys.js';
import { compile } from './validation.js';

const rawKey = { type: 'string', pattern: '^[A-Za-z0-9_-]{43}$' } as const;

export const publicKeySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['format', 'version', 'x25519', 'ed25519'],
  properties: {
    format: { const: 'pht-public-key' },
    version: { const: 1 },
    x25519: rawKey,
    ed25519: rawKey,
  },
} as const;

export const rotationStatementSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['format', 'version', 'old', 'new', 'issuedAt', 'signature'],
  properties: {
    format: { const: 'pht-key-rotation' },
    version: { const: 1 },
    old: publicKeySchema,
    new: publicKeySchema,
    issuedAt: { type: 'string', maxLength: 40 },
    signature: { type: 'string', pattern: '^[A-Za-z0-9_-]{86}$' },
  },
} as const;

export const registerKeySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['publicKey'],
  properties: {
    publicKey: publicKeySchema,
    /** Required to replace a registered key: the old key's signature over the new one. */
    rotation: rotationStatementSchema,
  },
} as const;

export const KEY_KINDS = ['site', 'user', 'ttp'] as const;
export type KeyKind = (typeof KEY_KINDS)[number];

export const keyRecordSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['kind', 'name', 'publicKey', 'fingerprint', 'rotations', 'url'],
  properties: {
    kind: { type: 'string', enum: KEY_KINDS },
    name: { type: 'string', minLength: 1, maxLength: 128 },
    publicKey: publicKeySchema,
    fingerprint: { type: 'string', pattern: FINGERPRINT_PATTERN },
    rotations: { type: 'array', maxItems: 1000, items: rotationStatementSchema },
    /** A TTP's file service; null for sites and researchers. */
    url: { type: ['string', 'null'], maxLength: 2048 },
  },
} as const;

export interface PublicKeyBody {
  format: 'pht-public-key';
  version: 1;
  x25519: string;
  ed25519: string;
}

export interface RegisterKeyRequest {
  publicKey: PublicKeyBody;
  rotation?: unknown;
}

export interface KeyRecord {
  kind: KeyKind;
  name: string;
  publicKey: PublicKeyBody;
  fingerprint: string;
  rotations: unknown[];
  url: string | null;
}

export const validateRegisterKey = compile<RegisterKeyRequest>(registerKeySchema, 'body');
export const validateKeyRecord = compile<KeyRecord>(keyRecordSchema, 'answer');
