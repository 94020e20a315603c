import { describe, expect, it } from 'vitest';
import { RegistryUnavailableError } from '../../client/errors.js';
import { LOG_CHUNK_BYTES, LogForwarder } from '../../client/log-forwarder.js';
import { silentLogger } from '../../shared/logger.js';
import { LIMITS } from '../../shared/schemas.js';
import type { SiteRunView } from '../../shared/types.js';

/** The registry's log route, in memory: records each append; can hold or fail the next ones. */
class FakeLogApi {
  readonly appends: string[] = [];
  /** Each call takes the next entry: 'fail' throws a retryable error, 'hold' waits for release(). */
  script: ('ok' | 'fail' | 'hold')[] = [];
  private held: (() => void)[] = [];
  private holding: (() => void) | null = null;
  /** Resolves when a call is being held. */
  readonly heldCall = new Promise<void>((resolve) => (this.holding = resolve));

  async log(_runId: number, text: string): Promise<SiteRunView> {
    const step = this.script.shift() ?? 'ok';
    if (step === 'fail') throw new RegistryUnavailableError('registry answered 503', 503);
    if (step === 'hold') {
      await new Promise<void>((resolve) => {
        this.held.push(resolve);
        this.holding?.();
      });
    }
    this.appends.push(text);
    return {} as SiteRunView;
  }

  release(): void {
    for (const r of this.held.splice(0)) r();
  }

  get received(): string {
    return this.appends.join('');
  }
}

function forwarder(api: FakeLogApi, maxBytes = 10_000_000): LogForwarder {
  return new LogForwarder(api, 1, maxBytes, silentLogger(), () => undefined);
}

describe('log forwarder', () => {
  it('the final flush also sends what was noted while an earlier flush was in flight (the "run ended" line)', async () => {
    const api = new FakeLogApi();
    api.script = ['hold'];
    const f = forwarder(api);
    f.write('x'.repeat(70_000)); // past the batch size: a flush starts by itself and is held
    await api.heldCall;
    f.note('run ended: completed');
    const final = f.flush();
    api.release();
    await final;
    expect(api.received).toBe(`${'x'.repeat(70_000)}[pht] run ended: completed\n`);
  });

  it('after a partial failure sends only the unsent rest: a 250,000-character log arrives as 250,000', async () => {
    const api = new FakeLogApi();
    const log = 'abcdefghij\n'.repeat(25_000).slice(0, 250_000);
    api.script = ['ok', 'fail']; // the first chunk gets through, the second does not
    const f = forwarder(api);
    f.write(log); // past the batch size: sends by itself, and the second chunk fails
    await f.flush(); // the registry is back
    expect(api.script).toEqual([]); // the failure did happen
    expect(api.received.length).toBe(250_000);
    expect(api.received).toBe(log);
  });

  it('counts text being sent against the cap: the log never exceeds it', async () => {
    const api = new FakeLogApi();
    api.script = ['hold'];
    const cap = 100_000;
    const f = forwarder(api, cap);
    f.write('a'.repeat(90_000)); // flushes by itself; held on its way
    await api.heldCall;
    f.write('b'.repeat(90_000)); // only 10,000 bytes of room are left
    api.release();
    await f.flush();
    const marker = `\n[log truncated by the site: at most ${cap} bytes per run]\n`;
    expect(api.received).toBe('a'.repeat(90_000) + 'b'.repeat(10_000) + marker);
    expect(Buffer.byteLength(api.received) - Buffer.byteLength(marker)).toBeLessThanOrEqual(cap);
  });

  it("cuts chunks by UTF-8 bytes between characters, under the registry's limit per append", async () => {
    const api = new FakeLogApi();
    const f = forwarder(api);
    const log = '€'.repeat(200_000) + 'é'; // 600,002 bytes
    f.write(log);
    await f.flush();
    expect(api.appends.length).toBeGreaterThan(3);
    for (const chunk of api.appends) {
      expect(Buffer.byteLength(chunk)).toBeLessThanOrEqual(LOG_CHUNK_BYTES);
      expect(Buffer.byteLength(chunk)).toBeLessThanOrEqual(LIMITS.logAppendBytes);
      expect(chunk).not.toContain('\uFFFD');
    }
    expect(api.received).toBe(log);
  });
});
