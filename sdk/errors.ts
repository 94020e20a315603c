/**
 * The errors the SDK throws. Every failure reaches the caller as one of these (or, when the
 * caller's own AbortSignal fires, as that signal's `reason`), never as a raw undici or socket
 * error. Catch `PhtError` to handle them all.
 */
import type { Task } from '../shared/types.js';

/** Base class of every SDK error. */
export class PhtError extends Error {
  override readonly name: string = 'PhtError';
}

/**
 * Thrown when the registry answers with an HTTP error. `code` is the registry's error code
 * (shared/error-codes.ts, e.g. `not_found`, `unknown_site`), or `unknown` when the answer carried
 * no `{code, message}` body (a proxy in between, for instance); `message` is the registry's.
 */
export class PhtApiError extends PhtError {
  override readonly name = 'PhtApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly method: string,
    readonly path: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

/**
 * Thrown when something took longer than allowed: the registry stayed silent for longer than the
 * client's `timeoutMs`, or a task was not finished within `waitForTask`'s `timeoutMs`. In the
 * second case `task` holds the task as last seen (it keeps running at the registry).
 */
export class PhtTimeoutError extends PhtError {
  override readonly name = 'PhtTimeoutError';
  constructor(
    message: string,
    readonly timeoutMs: number,
    readonly task?: Task,
  ) {
    super(message);
  }
}

/** Thrown when the registry cannot be reached, or the connection broke mid-answer. */
export class PhtConnectionError extends PhtError {
  override readonly name = 'PhtConnectionError';
  constructor(
    message: string,
    readonly url: string,
    /** The system or undici error code, e.g. ECONNREFUSED, when there is one. */
    readonly systemCode: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Thrown when the registry answered, but not with what the API promises: a body of the wrong
 * shape, a body that is not JSON, or a result file whose bytes do not match its listed checksum.
 * Usually the URL points at something that is not a PHT registry, or at an incompatible version.
 */
export class PhtResponseError extends PhtError {
  override readonly name = 'PhtResponseError';
  constructor(
    message: string,
    readonly method: string,
    readonly path: string,
  ) {
    super(message);
  }
}

/** Thrown by readJsonResult (and runTask) when a run's result file is not valid JSON. */
export class PhtResultError extends PhtError {
  override readonly name = 'PhtResultError';
  constructor(
    message: string,
    readonly runId: number,
    readonly file: string,
  ) {
    super(message);
  }
}
