import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { coerceError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';

export interface GatewayOptions {
  endpoint: string;
  allowUpdates: boolean;
  maxResponseBytes: number;
  queryTimeoutMs: number;
  audit: Logger;
  logger: Logger;
}

const MAX_REQUEST_BYTES = 1024 * 1024;
// Read-only means one of the four query forms. Anything else after the prologue (INSERT, DELETE,
// LOAD, DROP, or something a parser might read differently) is treated as an update: an allowlist,
// because some servers (Virtuoso) execute updates sent as `query=`.
const QUERY_FORMS = /^(SELECT|ASK|CONSTRUCT|DESCRIBE)\b/i;

/**
 * The only thing a container on the site's internal network can reach: a read-only SPARQL
 * forwarder. Each run gets its own secret path, so every query in the audit log carries the run
 * that made it, and a container cannot speak for another run.
 */
export class SparqlGateway {
  private server: http.Server | null = null;
  private readonly runs = new Map<string, number>();
  private baseUrl = '';

  constructor(private readonly options: GatewayOptions) {}

  async listen(host: string, port = 0): Promise<string> {
    const server = http.createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => {
        this.options.logger.error('sparql gateway failed a request', { error: coerceError(e).message });
        if (!res.headersSent) res.writeHead(502).end('gateway error\n');
        else res.destroy();
      });
    });
    server.headersTimeout = 10_000;
    server.requestTimeout = this.options.queryTimeoutMs + 10_000;
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
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://gateway');
    const match = /^\/sparql\/([A-Za-z0-9_-]{10,64})$/.exec(url.pathname);
    const runId = match ? this.runs.get(match[1]!) : undefined;
    if (runId === undefined) {
      this.options.audit.warn('sparql request refused', {
        event: 'sparql_refused',
        reason: 'unknown run token',
        path: url.pathname.slice(0, 100),
        from: req.socket.remoteAddress,
      });
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    const parsed = await readSparqlRequest(req, url);
    if ('error' in parsed) {
      this.options.audit.warn('sparql request refused', { event: 'sparql_refused', runId, reason: parsed.error });
      res.writeHead(parsed.status, { 'content-type': 'text/plain' }).end(parsed.error + '\n');
      return;
    }
    const isUpdate = parsed.kind === 'update' || !QUERY_FORMS.test(skipPrologue(parsed.text));
    if (isUpdate && !this.options.allowUpdates) {
      this.options.audit.warn('sparql update refused', {
        event: 'sparql_update_refused',
        runId,
        query: parsed.text.slice(0, 4000),
      });
      res.writeHead(403, { 'content-type': 'text/plain' }).end('SPARQL updates are not allowed at this site\n');
      return;
    }
    const started = Date.now();
    const form = new URLSearchParams({ [isUpdate ? 'update' : 'query']: parsed.text });
    const upstream = await request(this.options.endpoint, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        accept:
          typeof req.headers.accept === 'string' && req.headers.accept
            ? req.headers.accept
            : 'application/sparql-results+json',
      },
      body: form.toString(),
      headersTimeout: this.options.queryTimeoutMs,
      bodyTimeout: this.options.queryTimeoutMs,
    });
    res.writeHead(upstream.statusCode, {
      'content-type': String(upstream.headers['content-type'] ?? 'application/octet-stream'),
    });
    let bytes = 0;
    let truncated = false;
    for await (const chunk of upstream.body) {
      bytes += (chunk as Buffer).length;
      if (bytes > this.options.maxResponseBytes) {
        truncated = true;
        upstream.body.destroy();
        break;
      }
      if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve));
    }
    this.options.audit.info('sparql query', {
      event: 'sparql_query',
      runId,
      status: upstream.statusCode,
      bytes,
      truncated,
      durationMs: Date.now() - started,
      query: parsed.text.slice(0, 4000),
    });
    // Cut the connection instead of ending cleanly, so the container sees a failed query rather
    // than a silently shortened result.
    if (truncated) res.destroy();
    else res.end();
  }
}

type ParsedRequest = { kind: 'query' | 'update'; text: string } | { error: string; status: number };

async function readSparqlRequest(req: http.IncomingMessage, url: URL): Promise<ParsedRequest> {
  if (req.method === 'GET') {
    const query = url.searchParams.get('query');
    return query ? { kind: 'query', text: query } : { error: 'missing query parameter', status: 400 };
  }
  if (req.method !== 'POST') return { error: `method ${req.method} not allowed`, status: 405 };
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_REQUEST_BYTES) return { error: 'request too large', status: 413 };
    chunks.push(chunk as Buffer);
  }
  const body = Buffer.concat(chunks).toString('utf8');
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/sparql-query') return { kind: 'query', text: body };
  if (type === 'application/sparql-update') return { kind: 'update', text: body };
  if (type === 'application/x-www-form-urlencoded') {
    const form = new URLSearchParams(body);
    const update = form.get('update');
    if (update) return { kind: 'update', text: update };
    const query = form.get('query') ?? url.searchParams.get('query');
    return query ? { kind: 'query', text: query } : { error: 'missing query parameter', status: 400 };
  }
  return { error: `unsupported content type "${type}"`, status: 415 };
}

/** Skips whitespace, comments, BASE and PREFIX declarations, returning the text from the operation's first keyword. */
export function skipPrologue(text: string): string {
  let i = 0;
  for (;;) {
    while (i < text.length && /\s/.test(text[i]!)) i++;
    if (text[i] === '#') {
      while (i < text.length && text[i] !== '\n') i++;
      continue;
    }
    const rest = text.slice(i);
    const declaration = /^(?:PREFIX\s+[^\s:<>]*:\s*<[^<>\s]*>|BASE\s*<[^<>\s]*>)/i.exec(rest);
    if (!declaration) return rest;
    i += declaration[0].length;
  }
}
