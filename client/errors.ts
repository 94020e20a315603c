import { errorCode } from '../shared/errors.js';

/**
 * The registry could not be reached or answered 5xx/429: worth retrying with backoff.
 * Everything a site does with the registry distinguishes this from a refusal.
 */
export class RegistryUnavailableError extends Error {
  override readonly name = 'RegistryUnavailableError';
  constructor(
    message: string,
    readonly status: number | null,
  ) {
    super(message);
  }
}

/** The registry answered with a 4xx: retrying the same request will not help. */
export class RegistryRefusedError extends Error {
  override readonly name = 'RegistryRefusedError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** A run cannot proceed for a reason that will not go away (bad image, not allowed, not found). */
export class PermanentRunError extends Error {
  override readonly name = 'PermanentRunError';
}

/** Docker itself is unreachable or overloaded; the run may succeed later. */
export class DockerUnavailableError extends Error {
  override readonly name = 'DockerUnavailableError';
}

const RETRYABLE_NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
]);

export function isRetryableNetworkError(e: unknown): boolean {
  const code = errorCode(e) ?? errorCode((e as { cause?: unknown })?.cause);
  return code !== undefined && RETRYABLE_NETWORK_CODES.has(code);
}

/**
 * The failures worth retrying a run's step for: the registry unreachable (network, 5xx, 429) or
 * the Docker daemon unreachable. Anything else (a bug, a hostile container's output, a disk
 * error) will not go away by trying again, so the run ends failed with the reason.
 */
export function isTransientError(e: unknown): boolean {
  return e instanceof RegistryUnavailableError || e instanceof DockerUnavailableError;
}

/** close() waited its whole deadline and some steps had still not ended. */
export class ShutdownDeadlineError extends Error {
  override readonly name = 'ShutdownDeadlineError';
  constructor(
    readonly deadlineMs: number,
    readonly runIds: readonly number[],
  ) {
    super(`shutdown took longer than ${deadlineMs} ms; runs still busy: ${runIds.join(', ') || 'none'}`);
  }
}
