/**
 * Typed failures of the crypto module. Callers switch on the class (or `code`), never on the
 * message; every message says what was wrong without echoing key material.
 */
export type CryptoErrorCode =
  | 'not_an_envelope'
  | 'unsupported_version'
  | 'malformed_envelope'
  | 'wrong_key'
  | 'tampered'
  | 'truncated'
  | 'key_file'
  | 'insecure_key_file'
  | 'invalid_key'
  | 'invalid_rotation'
  | 'key_changed';

export abstract class CryptoError extends Error {
  abstract readonly code: CryptoErrorCode;
}

/** The bytes do not start with the envelope's magic: they were never sealed by this module. */
export class NotAnEnvelopeError extends CryptoError {
  override readonly name = 'NotAnEnvelopeError';
  readonly code = 'not_an_envelope';
}

/** The envelope names a format version this code does not know (a newer writer, or garbage). */
export class UnsupportedVersionError extends CryptoError {
  override readonly name = 'UnsupportedVersionError';
  readonly code = 'unsupported_version';
  constructor(readonly version: number) {
    super(`envelope format version ${version} is not supported (this program reads version 1)`);
  }
}

/** The header is not what a writer of this format produces (bad JSON, bad field, over a limit). */
export class MalformedEnvelopeError extends CryptoError {
  override readonly name = 'MalformedEnvelopeError';
  readonly code = 'malformed_envelope';
}

/** None of the envelope's recipients is the key that tries to open it. */
export class WrongKeyError extends CryptoError {
  override readonly name = 'WrongKeyError';
  readonly code = 'wrong_key';
  constructor(
    readonly keyFingerprints: readonly string[],
    readonly recipientFingerprints: readonly string[],
  ) {
    super(
      `the envelope is not sealed for this key (${keyFingerprints.join(', ')}); it is sealed for ${recipientFingerprints.length} other key(s)`,
    );
  }
}

/** Authentication failed: a wrapped key, the header or a chunk was altered (or is cut mid-chunk). */
export class TamperedError extends CryptoError {
  override readonly name = 'TamperedError';
  readonly code = 'tampered';
}

/** The envelope ends before its final chunk (cut at a chunk boundary, or inside the header). */
export class TruncatedError extends CryptoError {
  override readonly name = 'TruncatedError';
  readonly code = 'truncated';
}

/** A key file is missing, unreadable, or not a key file of this module. */
export class KeyFileError extends CryptoError {
  override readonly name = 'KeyFileError';
  readonly code = 'key_file';
  constructor(
    message: string,
    readonly file: string,
  ) {
    super(message);
  }
}

/** A private key file that other users may read (or write) is refused: it may already be leaked. */
export class InsecureKeyFileError extends CryptoError {
  override readonly name = 'InsecureKeyFileError';
  readonly code = 'insecure_key_file';
  constructor(
    readonly file: string,
    readonly mode: number,
  ) {
    super(
      `private key file ${file} has mode ${(mode & 0o777).toString(8).padStart(3, '0')}: others may read it; run chmod 600 ${file}`,
    );
  }
}

/** A public key (from a file, a config or a registry answer) is not a valid key of this module. */
export class InvalidKeyError extends CryptoError {
  override readonly name = 'InvalidKeyError';
  readonly code = 'invalid_key';
}

/** A key rotation statement is malformed, not signed by the old key, or names another key. */
export class InvalidRotationError extends CryptoError {
  override readonly name = 'InvalidRotationError';
  readonly code = 'invalid_rotation';
}

/**
 * A principal's key differs from the pinned one and no valid rotation signed by the pinned key
 * explains it: whoever relays keys (the registry) may be trying to swap it.
 */
export class KeyChangedError extends CryptoError {
  override readonly name = 'KeyChangedError';
  readonly code = 'key_changed';
  constructor(
    readonly principal: string,
    readonly pinned: string,
    readonly offered: string,
  ) {
    super(
      `the public key of ${principal} changed from the pinned ${pinned} to ${offered} without a rotation signed by the pinned key; refusing it (if the change is genuine, pin the new fingerprint)`,
    );
  }
}
