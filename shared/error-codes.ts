/** Error codes of REST error bodies `{ code, message }`. Clients switch on these, never on messages. */
export const ERROR_CODES = {
  badRequest: 'bad_request',
  invalidJson: 'invalid_json',
  validation: 'validation_failed',
  unauthorized: 'unauthorized',
  forbidden: 'forbidden',
  notFound: 'not_found',
  conflict: 'conflict',
  payloadTooLarge: 'payload_too_large',
  nestingTooDeep: 'nesting_too_deep',
  tooManyOpenTasks: 'too_many_open_tasks',
  configQuotaExceeded: 'config_quota_exceeded',
  taskNotFinal: 'task_not_final',
  unsupportedMediaType: 'unsupported_media_type',
  storageFull: 'storage_full',
  /** The registry's database cannot be reached right now (503): retry later. */
  unavailable: 'unavailable',
  checksumMismatch: 'checksum_mismatch',
  keyRevoked: 'key_revoked',
  unknownSite: 'unknown_site',
  noSites: 'no_sites',
  /** 410: retention removed this finished run's log (the run itself stays). */
  logExpired: 'log_expired',
  /** 410: retention removed this finished run's result files. */
  filesExpired: 'files_expired',
  /** A sealed task names a site with no registered, unrevoked public key (422; details.sites names them). */
  siteWithoutKey: 'site_without_key',
  internal: 'internal_error',
} as const;
export type ErrorCode = (typeof ERROR_CODES)[keyof typeof ERROR_CODES];
