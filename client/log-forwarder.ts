import { coerceError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { RegistryRefusedError } from './errors.js';
import type { SiteRegistryApi } from './registry-api.js';

const FLUSH_BYTES = 64 * 1024;

/**
 * Collects a container's output and sends it to the registry in batches. The site's own cap
 * applies before anything leaves: past it, one marker line and nothing more. If the registry is
 * unreachable the text waits (within the cap) for the next flush.
 */
export class LogForwarder {
  private pending = '';
  private sentBytes = 0;
  private capped = false;
  private closed = false;
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly api: SiteRegistryApi,
    private readonly runId: number,
    private readonly maxBytes: number,
    private readonly logger: Logger,
    private readonly onForwarded: () => void,
  ) {}

  get totalBytes(): number {
    return this.sentBytes + Buffer.byteLength(this.pending);
  }

  write(text: string): void {
    if (this.capped || this.closed) return;
    const room = this.maxBytes - this.totalBytes;
    if (Buffer.byteLength(text) > room) {
      this.pending += Buffer.from(text)
        .subarray(0, Math.max(0, room))
        .toString('utf8')
        .replace(/\uFFFD+$/, '');
      this.pending += `\n[log truncated by the site: at most ${this.maxBytes} bytes per run]\n`;
      this.capped = true;
    } else {
      this.pending += text;
    }
    if (Buffer.byteLength(this.pending) >= FLUSH_BYTES) void this.flush();
  }

  note(line: string): void {
    if (!this.closed) this.pending += `[pht] ${line}\n`;
  }

  /** Sends what is pending; failures are logged and the text is kept for the next try. */
  flush(): Promise<void> {
    this.flushing ??= this.doFlush().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  private async doFlush(): Promise<void> {
    if (!this.pending) return;
    const text = this.pending;
    this.pending = '';
    try {
      for (let i = 0; i < text.length; i += 200_000) await this.api.log(this.runId, text.slice(i, i + 200_000));
      this.sentBytes += Buffer.byteLength(text);
      this.onForwarded();
    } catch (e) {
      if (e instanceof RegistryRefusedError) {
        // The run ended at the registry (e.g. cancelled): there is nowhere to send more.
        this.closed = true;
        return;
      }
      this.pending = text + this.pending;
      this.logger.debug('log forwarding deferred', { runId: this.runId, error: coerceError(e).message });
    }
  }
}
