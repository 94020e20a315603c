import { describe, expect, it } from 'vitest';
import { backoffDelay, childSignal, isAbortError, retry, sleep } from '../../shared/abortable.js';

class Transient extends Error {}

describe('sleep', () => {
  it('resolves after the delay when nothing aborts it', async () => {
    await expect(sleep(1)).resolves.toBeUndefined();
  });

  it('rejects with an AbortError as soon as its signal aborts, without waiting out the delay', async () => {
    const controller = new AbortController();
    const slept = sleep(3_600_000, controller.signal);
    controller.abort();
    const error = await slept.catch((e: unknown) => e);
    expect(isAbortError(error)).toBe(true);
  });

  it('rejects at once when the signal has already aborted, with the reason it was given', async () => {
    const reason = new Error('shutting down');
    await expect(sleep(3_600_000, AbortSignal.abort(reason))).rejects.toBe(reason);
  });

  it('removes its abort listener when it ends normally (no listeners pile up on a long-lived signal)', async () => {
    const controller = new AbortController();
    let added = 0;
    let removed = 0;
    const signal = controller.signal;
    const add = signal.addEventListener.bind(signal);
    const remove = signal.removeEventListener.bind(signal);
    signal.addEventListener = ((...args: Parameters<typeof add>) => (added++, add(...args))) as typeof add;
    signal.removeEventListener = ((...args: Parameters<typeof remove>) => (
      removed++,
      remove(...args)
    )) as typeof remove;
    for (let i = 0; i < 5; i++) await sleep(0, signal);
    expect(added).toBe(5);
    expect(removed).toBe(5);
  });
});

describe('backoffDelay', () => {
  const options = { baseMs: 100, capMs: 1000 };

  it('doubles the ceiling per attempt, keeping half of it as a floor', () => {
    expect(backoffDelay(0, options, () => 0)).toBe(50);
    expect(backoffDelay(0, options, () => 1)).toBe(100);
    expect(backoffDelay(2, options, () => 0)).toBe(200);
    expect(backoffDelay(2, options, () => 1)).toBe(400);
  });

  it('never exceeds the cap, however many attempts (no overflow to Infinity)', () => {
    for (const attempt of [4, 10, 31, 1000, Number.MAX_SAFE_INTEGER]) {
      expect(backoffDelay(attempt, options, () => 1)).toBe(1000);
      expect(backoffDelay(attempt, options, () => 0)).toBe(500);
    }
  });

  it('spreads delays with jitter: two sites failing together do not retry together', () => {
    const delays = new Set(Array.from({ length: 50 }, () => backoffDelay(3, options)));
    expect(delays.size).toBeGreaterThan(10);
    for (const d of delays) expect(d).toBeGreaterThanOrEqual(400);
  });
});

describe('retry', () => {
  const fast = { baseMs: 1, capMs: 2 };

  it('retries transient errors until the call succeeds, reporting each retry', async () => {
    let calls = 0;
    const retries: number[] = [];
    const value = await retry(
      async () => {
        if (++calls < 4) throw new Transient('registry down');
        return 'ok';
      },
      { ...fast, retryable: (e) => e instanceof Transient, onRetry: (_e, attempt) => retries.push(attempt) },
    );
    expect(value).toBe('ok');
    expect(calls).toBe(4);
    expect(retries).toEqual([0, 1, 2]);
  });

  it('throws any other error at once: a bug is not retried', async () => {
    let calls = 0;
    const bug = new TypeError('x is undefined');
    await expect(
      retry(
        async () => {
          calls++;
          throw bug;
        },
        { ...fast, retryable: (e) => e instanceof Transient },
      ),
    ).rejects.toBe(bug);
    expect(calls).toBe(1);
  });

  it('gives up after maxAttempts tries with the last error', async () => {
    let calls = 0;
    await expect(
      retry(
        async () => {
          throw new Transient(`try ${++calls}`);
        },
        { ...fast, maxAttempts: 3, retryable: () => true },
      ),
    ).rejects.toThrow('try 3');
    expect(calls).toBe(3);
  });

  it('stops waiting (an hour here) and trying as soon as its signal aborts', async () => {
    const controller = new AbortController();
    let calls = 0;
    const retrying = retry(
      async () => {
        calls++;
        throw new Transient('down');
      },
      {
        baseMs: 3_600_000,
        capMs: 3_600_000,
        signal: controller.signal,
        retryable: () => true,
        onRetry: () => queueMicrotask(() => controller.abort()),
      },
    );
    expect(isAbortError(await retrying.catch((e: unknown) => e))).toBe(true);
    expect(calls).toBe(1);
  });

  it('does not call at all once the signal has aborted', async () => {
    let calls = 0;
    await expect(
      retry(async () => calls++, { ...fast, signal: AbortSignal.abort(), retryable: () => true }),
    ).rejects.toThrow();
    expect(calls).toBe(0);
  });
});

describe('childSignal', () => {
  it('aborts with its parent and on stop(), and stop() leaves the parent alone', () => {
    const parent = new AbortController();
    const a = childSignal(parent.signal);
    const b = childSignal(parent.signal);
    b.stop();
    expect(b.signal.aborted).toBe(true);
    expect(parent.signal.aborted).toBe(false);
    parent.abort();
    expect(a.signal.aborted).toBe(true);
  });
});
