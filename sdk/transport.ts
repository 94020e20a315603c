import { Agent, request, type Dispatcher } from 'undici';
import { errorCode } from '../shared/errors.js';
import { PhtApiError, PhtConnectionError, PhtError, PhtResponseError, PhtTimeoutError } from './errors.js';

export interface RequestOptions {
  query?: Record<string, string | number | undefined>;
  /** A JSON request body. */
  json?: unknown;
  signal?: AbortSignal;
  /** How long the registry may hold the request on purpose (a long poll): added to the timeout. */
  holdMs?: number;
  /** How long a streamed body may stay silent; defaults to the client's timeout, 0 means forever. */
  bodyTimeoutMs?: number;
}

/** A successful response whose body the caller must consume or destroy. */
export type OpenResponse = Dispatcher.ResponseData;

// Errors that mean "the connection failed", as opposed to a bug in how the request was made.
const CONNECTION_CODES = new Set([
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
]);
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/**
 * HTTP to the registry's /api/v1: adds the token, turns error answers into PhtApiError and every
 * network failure into a PhtError subclass. A request the caller aborts rejects with the
 * signal's reason, as fetch does.
 */
export class RegistryTransport {
  readonly apiBase: string;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;

  constructor(
    url: string,
    private readonly token: string,
    readonly timeoutMs: number,
    dispatcher?: Dispatcher,
  ) {
    // Accept the registry's root URL with or without the API prefix.
    this.apiBase = url.replace(/\/+$/, '').replace(/\/api\/v1$/, '') + '/api/v1';
    this.ownsDispatcher = dispatcher === undefined;
    this.dispatcher =
      dispatcher ?? new Agent({ connectTimeout: Math.min(timeoutMs, 10_000), keepAliveTimeout: 10_000 });
  }

  /** Sends a request and returns the successful response with its body unread. */
  async open(method: 'GET' | 'POST' | 'DELETE', path: string, options: RequestOptions = {}): Promise<OpenResponse> {
    const url = this.apiBase + path + queryString(options.query);
    let response: OpenResponse;
    try {
      response = await request(url, {
        method,
        dispatcher: this.dispatcher,
        signal: options.signal,
        headersTimeout: this.timeoutMs + (options.holdMs ?? 0),
        bodyTimeout: options.bodyTimeoutMs ?? this.timeoutMs,
        headers: {
          authorization: `Bearer ${this.token}`,
          accept: 'application/json',
          ...(options.json !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        body: options.json !== undefined ? JSON.stringify(options.json) : undefined,
      });
    } catch (e) {
      throw this.networkError(e, method, path, options);
    }
    if (response.statusCode >= 200 && response.statusCode < 300) return response;
    const text = await response.body.text().catch(() => '');
    throw apiError(response.statusCode, text, method, path);
  }

  /** A JSON answer, parsed (its shape is the caller's to check). */
  async json(method: 'GET' | 'POST' | 'DELETE', path: string, options: RequestOptions = {}): Promise<unknown> {
    const text = await this.text(method, path, options);
    try {
      return JSON.parse(text);
    } catch {
      throw new PhtResponseError(
        `the registry answered ${method} ${path} with a body that is not JSON: ${snippet(text)}`,
        method,
        path,
      );
    }
  }

  async text(method: 'GET' | 'POST' | 'DELETE', path: string, options: RequestOptions = {}): Promise<string> {
    const response = await this.open(method, path, options);
    try {
      return await response.body.text();
    } catch (e) {
      throw this.networkError(e, method, path, options);
    }
  }

  /** Maps whatever undici or the socket threw to an SDK error (or the caller's abort reason). */
  networkError(thrown: unknown, method: string, path: string, options: RequestOptions = {}): unknown {
    if (options.signal?.aborted) return options.signal.reason;
    if (thrown instanceof PhtError) return thrown;
    const code = errorCode(thrown) ?? errorCode((thrown as { cause?: unknown } | null)?.cause);
    const what = `${method} ${path}`;
    if (code !== undefined && TIMEOUT_CODES.has(code)) {
      const ms =
        code === 'UND_ERR_HEADERS_TIMEOUT'
          ? this.timeoutMs + (options.holdMs ?? 0)
          : (options.bodyTimeoutMs ?? this.timeoutMs);
      return new PhtTimeoutError(`the registry did not answer ${what} within ${ms} ms`, ms);
    }
    const origin = new URL(this.apiBase).origin;
    if (code !== undefined && (CONNECTION_CODES.has(code) || /^E[A-Z]+$/.test(code))) {
      return new PhtConnectionError(`cannot reach the registry at ${origin} (${code}) during ${what}`, origin, code, {
        cause: thrown,
      });
    }
    const message = thrown instanceof Error ? thrown.message : String(thrown);
    return new PhtError(`request ${what} to ${origin} failed: ${message}`, { cause: thrown });
  }

  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.close();
  }
}

function queryString(query: RequestOptions['query']): string {
  if (!query) return '';
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value));
  const s = params.toString();
  return s ? `?${s}` : '';
}

function apiError(status: number, text: string, method: string, path: string): PhtApiError {
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    // Not the registry's JSON error body (a proxy's HTML page, say): report the status instead.
  }
  if (
    body &&
    typeof body === 'object' &&
    typeof (body as { code?: unknown }).code === 'string' &&
    typeof (body as { message?: unknown }).message === 'string'
  ) {
    const { code, message, details } = body as { code: string; message: string; details?: unknown };
    return new PhtApiError(status, code, message, method, path, details);
  }
  return new PhtApiError(
    status,
    'unknown',
    `HTTP ${status} for ${method} ${path}${text ? `: ${snippet(text)}` : ''}`,
    method,
    path,
  );
}

function snippet(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length > 200 ? `${oneLine.slice(0, 200)}…` : oneLine;
}
