import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { request } from 'undici';
import { coerceError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { checkSparql } from './sparql-query-check.js';

export interface GatewayOptions {
  endpoint: string;
  allowUpdates: boolean;
  maxResponseBytes: number;
  queryTimeoutMs: number;
  /** Open connections from one container (one source address), and from all of them together. */
  maxConnectionsPerRun?: number;
  maxConnections?: number;
  /** A connection without a request in progress is closed after this long. */
  idleTimeoutMs?: number;
  /** IRIs a query may name in FROM / FROM NAMED. */
  allowedGraphs?: string[];
  audit: Logger;
  logger: Logger;
}

const MAX_REQUEST_BYTES = 1024 * 1024;
/** Refusals of one kind from one source written to the audit log per window; the rest are counted. */
const REFUSALS_PER_WINDOW = 10;
const REFUSAL_WINDOW_MS = 60_000;

/**
 * The only thing a container on the site's internal network can reach: a read-only SPARQL
 * forwarder. Each run gets its own secret path, so every query in the audit log carries the run
 * that made it, and a container cannot speak for another run.
 *
 * Every query is audited twice: when it arrives (before anything is forwarded) and with its
 * outcome. The upstream request is aborted as soon as the container's connection closes.
 * Connections are capped per source address (each container has its own) and overall, with short
 * timeouts on idle connections and slow request bodies.
 */
export class SparqlGateway {
  private server: http.Server | null = null;
  private readonly runs = new Map<string, number>();
  private readonly perAddress = new Map<string, number>();
  private readonly refusals: RefusalAudit;
  private baseUrl = '';
  private open = 0;

  constructor(private readonly options: GatewayOptions) {
    this.refusals = new RefusalAudit(options.audit);
  }

  private get maxPerRun(): number {
    return this.options.maxConnectionsPerRun ?? 16;
  }

  private get idleTimeoutMs(): number {
    return this.options.idleTimeoutMs ?? 10_000;
  }

  async listen(host: string, port = 0): Promise<string> {
    const server = http.createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => {
        this.options.logger.error('sparql gateway failed a request', { error: coerceError(e).message });
        if (!res.headersSent) res.writeHead(502, { connection: 'close' }).end('gateway error\n');
        else res.destroy();
      });
    });
    // Node closes connections beyond this at once, so a flood never holds descriptors.
    server.maxConnections = this.options.maxConnections ?? 256;
    server.headersTimeout = Math.min(10_000, this.idleTimeoutMs);
    server.requestTimeout = this.idleTimeoutMs;
    server.keepAliveTimeout = Math.min(5_000, this.idleTimeoutMs);
    server.on('connection', (socket: Socket) => this.admit(socket));
    server.on('drop', (data?: { remoteAddress?: string }) =>
      this.refusals.refuse(data?.remoteAddress ?? '?', 'connection limit', {
        event: 'sparql_refused',
        reason: `more than ${server.maxConnections} connections to the gateway`,
        from: data?.remoteAddress,
      }),
    );
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    this.server = server;
    const address = server.address() as AddressInfo;
    this.baseUrl = `http://${host}:${address.port}`;
    return this.baseUrl;
  }

  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  /** Connections open right now (for tests and the hostile suite). */
  get openConnections(): number {
    return this.open;
  }

  /** A URL for this run's container; valid until unregisterRun. */
  registerRun(runId: number, existingToken: string | null = null): { token: string; url: string } {
    const token = existingToken ?? crypto.randomBytes(18).toString('base64url');
    this.runs.set(token, runId);
    return { token, url: `${this.baseUrl}/sparql/${token}` };
  }

  unregisterRun(token: string): void {
    this.runs.delete(token);
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    this.refusals.flush();
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  /** Counts the connection against its source address; over the per-run cap it is closed at once. */
  private admit(socket: Socket): void {
    const from = socket.remoteAddress ?? '?';
    const count = (this.perAddress.get(from) ?? 0) + 1;
    if (count > this.maxPerRun) {
      socket.destroy();
      this.refusals.refuse(from, 'connection limit', {
        event: 'sparql_refused',
        reason: `more than ${this.maxPerRun} connections from one container`,
        from,
      });
      return;
    }
    this.perAddress.set(from, count);
    this.open++;
    // Idle (no request in progress) for too long: closed. Cleared while a request is handled.
    socket.setTimeout(this.idleTimeoutMs, () => socket.destroy());
    socket.once('close', () => {
      this.open--;
      const left = (this.perAddress.get(from) ?? 1) - 1;
      if (left <= 0) this.perAddress.delete(from);
      else this.perAddress.set(from, left);
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const socket = req.socket;
    socket.setTimeout(0);
    res.once('finish', () => {
      if (!socket.destroyed) socket.setTimeout(this.idleTimeoutMs, () => socket.destroy());
    });
    const from = socket.remoteAddress ?? '?';
    const url = new URL(req.url ?? '/', 'http://gateway');
    const match = /^\/sparql\/([A-Za-z0-9_-]{10,64})$/.exec(url.pathname);
    const runId = match ? this.runs.get(match[1]!) : undefined;
    if (runId === undefined) {
      this.refusals.refuse(from, 'unknown run token', {
        event: 'sparql_refused',
        reason: 'unknown run token',
        path: url.pathname.slice(0, 100),
        from,
      });
      return refuse(res, 404, 'not found');
    }
    const parsed = await readSparqlRequest(req, url);
    if ('error' in parsed) {
      this.refusals.refuse(`${runId}`, parsed.error, { event: 'sparql_refused', runId, reason: parsed.error });
      return refuse(res, parsed.status, parsed.error);
    }
    const queryId = crypto.randomBytes(6).toString('hex');
    // Recorded before anything else happens to it, so even a query that never finishes is known.
    this.options.audit.info('sparql query received', {
      event: 'sparql_query_received',
      runId,
      queryId,
      query: parsed.text.slice(0, 4000),
    });
    const check = checkSparql(parsed.text, {
      allowUpdates: this.options.allowUpdates,
      allowedGraphs: this.options.allowedGraphs ?? [],
    });
    if (!check.ok) {
      this.options.audit.warn('sparql query refused', {
        event: 'sparql_query',
        outcome: 'refused',
        runId,
        queryId,
        status: check.status,
        reason: check.reason,
      });
      return refuse(res, check.status, check.reason);
    }
    await this.forward(req, res, runId, queryId, check.kind, check.text);
  }

  private async forward(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    runId: number,
    queryId: string,
    kind: 'query' | 'update',
    text: string,
  ): Promise<void> {
    const started = Date.now();
    const aborter = new AbortController();
    // The container hung up (or the connection died): stop the upstream request at once.
    const onClose = () => {
      if (!res.writableFinished) aborter.abort();
    };
    res.once('close', onClose);
    let status = 0;
    let bytes = 0;
    let outcome: 'answered' | 'truncated' | 'aborted' | 'upstream error' = 'answered';
    let error: string | undefined;
    try {
      const upstream = await request(this.options.endpoint, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          accept:
            typeof req.headers.accept === 'string' && req.headers.accept
              ? req.headers.accept.slice(0, 1000)
              : 'application/sparql-results+json',
        },
        body: new URLSearchParams({ [kind]: text }).toString(),
        headersTimeout: this.options.queryTimeoutMs,
        bodyTimeout: this.options.queryTimeoutMs,
        signal: aborter.signal,
      });
      status = upstream.statusCode;
      if (!res.destroyed)
        res.writeHead(upstream.statusCode, {
          'content-type': String(upstream.headers['content-type'] ?? 'application/octet-stream'),
        });
      for await (const chunk of upstream.body) {
        if (aborter.signal.aborted || res.destroyed) break;
        bytes += (chunk as Buffer).length;
        if (bytes > this.options.maxResponseBytes) {
          outcome = 'truncated';
          break;
        }
        if (!res.write(chunk))
          await new Promise<void>((resolve) => {
            const done = () => {
              res.off('drain', done);
              res.off('close', done);
              resolve();
            };
            res.once('drain', done);
            res.once('close', done);
          });
      }
      if (aborter.signal.aborted || (res.destroyed && !res.writableFinished)) outcome = 'aborted';
      if (outcome !== 'answered') upstream.body.destroy();
    } catch (e) {
      outcome = aborter.signal.aborted ? 'aborted' : 'upstream error';
      error = coerceError(e).message;
    } finally {
      res.off('close', onClose);
    }
    this.options.audit.info('sparql query', {
      event: 'sparql_query',
      outcome,
      runId,
      queryId,
      status,
      bytes,
      truncated: outcome === 'truncated',
      durationMs: Date.now() - started,
      ...(error ? { error } : {}),
    });
    if (outcome === 'answered') res.end();
    else if (outcome === 'upstream error' && !res.headersSent)
      res.writeHead(502, { 'content-type': 'text/plain', connection: 'close' }).end('SPARQL endpoint failed\n');
    // Cut the connection instead of ending cleanly, so the container sees a failed query rather
    // than a silently shortened result.
    else res.destroy();
  }
}

/** Answers an early refusal and closes the connection, so no unread body keeps it open. */
function refuse(res: http.ServerResponse, status: number, message: string): void {
  res.shouldKeepAlive = false;
  res.writeHead(status, { 'content-type': 'text/plain', connection: 'close' }).end(message + '\n');
}

/**
 * Writes refused requests to the audit log, at most REFUSALS_PER_WINDOW per source and reason per
 * minute; the rest are counted and summed up in one line, so a container hammering the gateway
 * cannot fill the site's audit log.
 */
class RefusalAudit {
  private readonly windows = new Map<string, { start: number; count: number; sample: Record<string, unknown> }>();

  constructor(private readonly audit: Logger) {}

  refuse(source: string, kind: string, entry: Record<string, unknown>): void {
    const key = `${source}\u0000${kind}`;
    const now = Date.now();
    let window = this.windows.get(key);
    if (window && now - window.start >= REFUSAL_WINDOW_MS) {
      this.summarise(window);
      window = undefined;
    }
    if (!window) {
      if (this.windows.size > 10_000) this.flush();
      window = { start: now, count: 0, sample: entry };
      this.windows.set(key, window);
    }
    window.count++;
    if (window.count <= REFUSALS_PER_WINDOW) this.audit.warn('sparql request refused', entry);
  }

  /** Writes the summary of every window with suppressed refusals. */
  flush(): void {
    for (const window of this.windows.values()) this.summarise(window);
    this.windows.clear();
  }

  private summarise(window: { start: number; count: number; sample: Record<string, unknown> }): void {
    if (window.count <= REFUSALS_PER_WINDOW) return;
    this.audit.warn('sparql requests refused (repeats not written one by one)', {
      ...window.sample,
      event: 'sparql_refused_repeats',
      suppressed: window.count - REFUSALS_PER_WINDOW,
      since: new Date(window.start).toISOString(),
    });
  }
}

type ParsedRequest = { kind: 'query' | 'update'; text: string } | { error: string; status: number };

async function readSparqlRequest(req: http.IncomingMessage, url: URL): Promise<ParsedRequest> {
  if (req.method === 'GET') {
    const query = url.searchParams.get('query');
    return query ? { kind: 'query', text: query } : { error: 'missing query parameter', status: 400 };
  }
  if (req.method !== 'POST') return { error: `method ${String(req.method).slice(0, 20)} not allowed`, status: 405 };
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (!['application/sparql-query', 'application/sparql-update', 'application/x-www-form-urlencoded'].includes(type))
    return { error: `unsupported content type "${type.slice(0, 100)}"`, status: 415 };
  const announced = Number(req.headers['content-length'] ?? 0);
  if (announced > MAX_REQUEST_BYTES) return { error: 'request too large', status: 413 };
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_REQUEST_BYTES) return { error: 'request too large', status: 413 };
    chunks.push(chunk as Buffer);
  }
  const body = Buffer.concat(chunks).toString('utf8');
  if (type === 'application/sparql-query') return { kind: 'query', text: body };
  if (type === 'application/sparql-update') return { kind: 'update', text: body };
  const form = new URLSearchParams(body);
  const update = form.get('update');
  if (update) return { kind: 'update', text: update };
  const query = form.get('query') ?? url.searchParams.get('query');
  return query ? { kind: 'query', text: query } : { error: 'missing query parameter', status: 400 };
}
