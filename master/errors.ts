import { ERROR_CODES, type ErrorCode } from '../shared/error-codes.js';

/**
 * A failure that the REST layer answers with a 4xx/5xx and a `{ code, message }` body. Domain
 * operations throw these; anything else that escapes a handler is an internal error.
 */
export class RegistryError extends Error {
  override readonly name: string = 'RegistryError';
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

/** Thrown when a resource does not exist or is not visible to the caller (never reveal which). */
export class NotFoundError extends RegistryError {
  override readonly name = 'NotFoundError';
  constructor(what: string) {
    super(404, ERROR_CODES.notFound, `${what} not found`);
  }
}

/** Thrown when a request is valid but the resource's current state forbids it. */
export class ConflictError extends RegistryError {
  override readonly name = 'ConflictError';
  constructor(message: string, details?: unknown) {
    super(409, ERROR_CODES.conflict, message, details);
  }
}

/** Thrown when a request body or parameter fails validation. */
export class BadRequestError extends RegistryError {
  override readonly name = 'BadRequestError';
  constructor(message: string, code: ErrorCode = ERROR_CODES.validation, details?: unknown) {
    super(400, code, message, details);
  }
}
