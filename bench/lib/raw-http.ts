import net from 'node:net';
import { wallMs } from './stats.js';

export interface RawResponse {
  status: number;
  body: Buffer;
  /** wallMs() when the response's first bytes arrived. */
  firstByteAt: number;
}

/**
 * One keep-alive HTTP/1.1 connection with a minimal client: a request is written as text, the
 * answer parsed from its status line and Content-Length. A broadcast benchmark holds 1,000 of them
 * in one process; undici's fetch costs the benchmark's process a few hundred microseconds per
 * answer, which on this small machine showed up as hand-out latency the registry never caused.
 * Only what the registry sends is understood (Content-Length bodies, no chunked encoding).
 */
export class RawHttpConnection {
  private buffered: Buffer = Buffer.alloc(0);
  private pending: {
    resolve: (r: RawResponse) => void;
    reject: (e: Error) => void;
    firstByteAt: number;
  } | null = null;
  private failure: Error | null = null;

  private constructor(private readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => this.fail(new Error('connection closed')));
  }

  static open(port: number, host = '127.0.0.1'): Promise<RawHttpConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, host, () => {
        socket.off('error', reject);
        resolve(new RawHttpConnection(socket));
      });
      socket.once('error', reject);
    });
  }

  /** Sends one request and resolves with its answer; one request at a time. */
  request(method: string, path: string, headers: Record<string, string>, body = ''): Promise<RawResponse> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.pending) return Promise.reject(new Error('one request at a time'));
    const lines = [`${method} ${path} HTTP/1.1`, 'Host: 127.0.0.1'];
    for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
    if (body || method !== 'GET') lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject, firstByteAt: NaN };
      this.socket.write(`${lines.join('\r\n')}\r\n\r\n${body}`);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    const pending = this.pending;
    if (!pending) return this.fail(new Error('data without a request'));
    if (Number.isNaN(pending.firstByteAt)) pending.firstByteAt = wallMs();
    this.buffered = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk;
    const end = this.buffered.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = this.buffered.subarray(0, end).toString('latin1');
    const status = /^HTTP\/1\.1 (\d{3})/.exec(head);
    if (!status) return this.fail(new Error(`not an HTTP/1.1 answer: ${head.slice(0, 80)}`));
    if (/\r\ntransfer-encoding:/i.test(head)) return this.fail(new Error('chunked answers are not understood'));
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
    if (this.buffered.length < end + 4 + length) return;
    const body = this.buffered.subarray(end + 4, end + 4 + length);
    this.buffered = this.buffered.subarray(end + 4 + length);
    this.pending = null;
    pending.resolve({ status: Number(status[1]), body, firstByteAt: pending.firstByteAt });
  }

  private fail(e: Error): void {
    this.failure ??= e;
    const pending = this.pending;
    this.pending = null;
    pending?.reject(e);
  }
}
