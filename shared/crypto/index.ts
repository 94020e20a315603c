/**
 * The project's one crypto module: X25519 key pairs (with an Ed25519 companion for signed
 * rotations), key files, fingerprints, and sealed multi-recipient envelopes (whole and streaming).
 * Everything is built on node:crypto; every failure is a CryptoError subclass.
 */
export * from './errors.js';
export * from './keys.js';
export * from './envelope.js';
export * from './pins.js';
export * from './sealed-task.js';
export * from './key-directory.js';
