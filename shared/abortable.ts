/**
 * Waiting and retrying, once for the whole project: one abortable sleep, one capped and jittered
 * backoff, one retry helper that retries only what its caller calls transient. Every wait in the
 * project goes through `sleep`, so a shutdown signal ends every wait the same way: at once, with
 * the signal's reason.
 */

/** Waits `ms`; rejects with the signal's reason as soon as `signal` aborts (at once if it already has). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal!));
    };
    const timer = setTimeout(
      () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      },
      Math.max(0, ms),
    );
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The error an aborted signal stands for: its reason, or a DOMException "AbortError" when it has none. */
export function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

/** True for the error `sleep`, fetch, undici and `AbortSignal.abort()` reject with when aborted. */
export function isAbortError(e: unknown): boolean {
  return e instanceof Error && (e.name === 'AbortError' || (e as { code?: unknown }).code === 'ABORT_ERR');
}

export interface BackoffOptions {
  /** The first delay's ceiling; each attempt doubles it. */
  baseMs: number;
  /** No delay is longer than this. */
  capMs: number;
}

/**
 * Capped exponential backoff with "equal jitter": attempt 0 waits between baseMs/2 and baseMs,
 * attempt n between c/2 and c where c = min(capMs, baseMs·2ⁿ). Half the delay is random, so many
 * sites that lost the registry at the same moment do not come back at the same moment; the other
 * half keeps a floor, so a retry is never immediate.
 */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const ceiling = Math.min(options.capMs, options.baseMs * 2 ** Math.min(Math.max(0, attempt), 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

export interface RetryOptions extends BackoffOptions {
  /** Decides which errors are transient. Anything else is thrown at once: a bug is not retried. */
  retryable: (error: unknown) => boolean;
  /** Ends the waiting (and the retrying) at once, rejecting with the signal's reason. */
  signal?: AbortSignal;
  /** Tries at most this many times in all (default: no limit); the last error is then thrown. */
  maxAttempts?: number;
  /** Called before each wait, e.g. to log the first failure. `attempt` counts from 0. */
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
  random?: () => number;
}

/**
 * Calls `fn` until it resolves, waiting a backoff between tries, as long as each error is
 * `retryable` and fewer than `maxAttempts` tries were made. Checks the signal before every try.
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const maxAttempts = options.maxAttempts ?? Infinity;
  for (let attempt = 0; ; attempt++) {
    if (options.signal?.aborted) throw abortReason(options.signal);
    try {
      return await fn(attempt);
    } catch (e) {
      if (options.signal?.aborted || !options.retryable(e) || attempt + 1 >= maxAttempts) throw e;
      const delay = backoffDelay(attempt, options, options.random);
      options.onRetry?.(e, attempt, delay);
      await sleep(delay, options.signal);
    }
  }
}

/**
 * A signal that aborts when `parent` does or when `stop()` is called: lets a method end the side
 * requests it started (a log poll, an event stream) without touching the caller's signal.
 */
export function childSignal(parent?: AbortSignal): { signal: AbortSignal; stop: () => void } {
  const controller = new AbortController();
  const onAbort = () => controller.abort(parent!.reason);
  if (parent?.aborted) onAbort();
  else parent?.addEventListener('abort', onAbort, { once: true });
  return {
    signal: controller.signal,
    stop: () => {
      parent?.removeEventListener('abort', onAbort);
      if (!controller.signal.aborted) controller.abort();
    },
  };
}
