import { coerceError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { LIMITS } from '../shared/schemas.js';
import { RegistryRefusedError } from './errors.js';
import type { SiteRegistryApi } from './registry-api.js';

/** Text pending past this size is sent without waiting for the next periodic flush. */
const FLUSH_BYTES = 64 * 1024;
/**
 * One request carries at most this many bytes of UTF-8 (cut at character boundaries): below the
 * registry's limit per append whether it counts characters or bytes.
 */
export const LOG_CHUNK_BYTES = Math.min(192 * 1024, LIMITS.logAppendBytes);

/**
 * Collects a container's output and sends it to the registry in order. The site's own cap applies
 * before anything leaves, counting what was sent, what is being sent and what waits: past it, one
 * marker line and nothing more. If the registry is unreachable the text waits (within the cap) for
 * the next flush; a chunk the registry has confirmed is never sent again.
 */
export class LogForwarder {
  private pending = '';
  private sentBytes = 0;
  /** Bytes of the chunk on its way to the registry: neither pending nor confirmed yet. */
  private sendingBytes = 0;
  private capped = false;
  private closed = false;
  /** Flushes run one after another; each sends everything pending when its turn comes. */
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly api: Pick<SiteRegistryApi, 'log'>,
    private readonly runId: number,
    private readonly maxBytes: number,
    private readonly logger: Logger,
    private readonly onForwarded: () => void,
    private readonly signal?: AbortSignal,
  ) {}

  /** Bytes of log accepted so far (sent, being sent and pending). */
  get totalBytes(): number {
    return this.sentBytes + this.sendingBytes + Buffer.byteLength(this.pending);
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

  /**
   * Sends everything written before this call (and anything written while it runs), after any
   * flush already under way. Never rejects: failures are logged and the unsent text waits.
   */
  flush(): Promise<void> {
    this.queue = this.queue.then(() => this.send());
    return this.queue;
  }

  private async send(): Promise<void> {
    while (this.pending && !this.closed) {
      const chunk = leadingChunk(this.pending, LOG_CHUNK_BYTES);
      this.pending = this.pending.slice(chunk.length);
      this.sendingBytes = Buffer.byteLength(chunk);
      try {
        await this.api.log(this.runId, chunk, this.signal);
        this.sentBytes += this.sendingBytes;
      } catch (e) {
        if (e instanceof RegistryRefusedError) {
          // The run ended at the registry (e.g. cancelled): there is nowhere to send more.
          this.closed = true;
          this.pending = '';
          return;
        }
        // Only this chunk failed: it goes back in front; what was confirmed stays sent.
        this.pending = chunk + this.pending;
        this.logger.debug('log forwarding deferred', { runId: this.runId, error: coerceError(e).message });
        return;
      } finally {
        this.sendingBytes = 0;
      }
    }
    if (!this.closed) this.onForwarded();
  }
}

/** The longest prefix of `text` whose UTF-8 encoding fits in `maxBytes`, cut between characters. */
function leadingChunk(text: string, maxBytes: number): string {
  if (text.length * 3 <= maxBytes || Buffer.byteLength(text) <= maxBytes) return text;
  const bytes = Buffer.from(text);
  let end = maxBytes;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--; // not inside a multi-byte character
  return bytes.subarray(0, end).toString('utf8');
}
