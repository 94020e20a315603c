/**
 * Wire shapes of the file service (a TTP's inbox, `node fileservice`): defined once here, like the
 * registry's in shared/schemas.ts. Its OpenAPI document (fileservice/openapi.ts) is generated
 * from them, a TTP's client checks the answers it reads with them (client/ttp.ts), and
 * test/fileservice/contract.test.ts holds every real answer against the served document.
 */
import type { FromSchema } from 'json-schema-to-ts';
import { FINGERPRINT_PATTERN } from './crypto/keys.js';
import { publicKeySchema, rotationStatementSchema } from './key-schemas.js';
import { SITE_NAME_PATTERN } from './names.js';
import { apiErrorSchema } from './schemas.js';
import { compile } from './validation.js';

/** Task ids are the registry's (positive integers), kept as text by the file service. */
export const FILE_TASK_ID_PATTERN = '^[1-9][0-9]{0,14}$';
/**
 * An uploaded file's name: one path segment of letters, digits, ".", "_", "-", not starting with
 * "." (so never "." or ".." or a hidden file), at most 255 characters.
 */
export const UPLOAD_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$';
export const SHA256_HEX_PATTERN = '^[a-f0-9]{64}$';

/** One received file, as listed to readers and answered to the sender that uploaded it. */
export const fileEntrySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['sender', 'name', 'size', 'sha256'],
  properties: {
    sender: { type: 'string', pattern: SITE_NAME_PATTERN },
    name: { type: 'string', pattern: UPLOAD_NAME_PATTERN },
    size: { type: 'integer', minimum: 0 },
    sha256: { type: 'string', pattern: SHA256_HEX_PATTERN },
  },
} as const;

export const fileEntryListSchema = { type: 'array', items: fileEntrySchema } as const;

/** The TTP's public key as its file service serves it (clients pin it; rotations let a pin follow). */
export const ttpPublicKeySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['publicKey', 'fingerprint', 'rotations'],
  properties: {
    publicKey: publicKeySchema,
    fingerprint: { type: 'string', pattern: FINGERPRINT_PATTERN },
    rotations: { type: 'array', maxItems: 1000, items: rotationStatementSchema },
  },
} as const;

/**
 * The named schemas: OpenAPI components under these names; a named schema reused inside another
 * is written as a `$ref` to its name.
 */
export const FILE_SERVICE_SCHEMAS = {
  Error: apiErrorSchema,
  PublicKey: publicKeySchema,
  KeyRotation: rotationStatementSchema,
  TtpPublicKey: ttpPublicKeySchema,
  FileEntry: fileEntrySchema,
  FileEntryList: fileEntryListSchema,
} as const;

export type FileEntry = FromSchema<typeof fileEntrySchema>;
export type TtpPublicKey = FromSchema<typeof ttpPublicKeySchema>;

/** Checks of what a file service answers, for its clients. */
export const validateFileEntryList = compile<FileEntry[]>(fileEntryListSchema, 'answer');
export const validateTtpPublicKey = compile<TtpPublicKey>(ttpPublicKeySchema, 'answer');
