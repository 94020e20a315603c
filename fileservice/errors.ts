import type { ErrorCode } from '../shared/error-codes.js';

/** A request the file service refuses: carries the HTTP status and the wire error code. */
export class FileServiceError extends Error {
  override readonly name = 'FileServiceError';
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** A command line the file service cannot act on (exit code 2). */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
