/**
 * A small read-only SPARQL endpoint for a demo site: an in-process oxigraph store served over
 * node:http following the SPARQL 1.1 Protocol (https://www.w3.org/TR/sparql11-protocol/).
 *
 * - Queries: GET ?query=…, POST application/x-www-form-urlencoded `query=…`, POST
 *   application/sparql-query. `default-graph-uri` / `named-graph-uri` are honoured.
 * - SELECT and ASK answer application/sparql-results+json unless the Accept header prefers XML,
 *   CSV or TSV; CONSTRUCT and DESCRIBE answer Turtle (or N-Triples / RDF/XML when asked).
 * - Updates (POST `update=…` or application/sparql-update) are refused with 403 unless the server
 *   was started with `allowUpdate`: a site's endpoint is there to be read by algorithms.
 *
 * oxigraph evaluates queries synchronously, so one long query holds the event loop; that is fine
 * for a demo endpoint with a few thousand triples, not for a production one.
 *
 * CLI: `node dist/demo/sparql-server.js --data FILE [--data FILE…] [--port N] [--host H] [--allow-update]`
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { integerOption, listOption, runCommandLine, stringOption } from '../shared/command-line.js';
import { namedNode, Store, type NamedNode } from 'oxigraph';

export interface SparqlServerOptions {
  /** Turtle to load at start; several documents are loaded one after the other. */
  turtle?: string | readonly string[];
  /** Bind address: 127.0.0.1 for tests, a Docker network's gateway IP for containers. */
  host?: string;
  /** 0 (the default) picks a free port. */
  port?: number;
  /** Accept SPARQL updates. Off by default: the endpoint is read-only. */
  allowUpdate?: boolean;
  /** Largest request body accepted, in bytes. */
  maxBodyBytes?: number;
}

export interface RunningSparqlServer {
  /** The endpoint URL, e.g. http://127.0.0.1:40123/sparql */
  url: string;
  host: string;
  port: number;
  /** The store behind the endpoint (to inspect or change data from the same process). */
  store: Store;
  /** Stops accepting connections and closes idle ones. Idempotent. */
  close(): Promise<void>;
}

export const SPARQL_PATH = '/sparql';
const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/** Results formats oxigraph writes, by media type; the first is the default. */
const SOLUTION_FORMATS = [
  'application/sparql-results+json',
  'application/sparql-results+xml',
  'text/csv',
  'text/tab-separated-values',
] as const;
const GRAPH_FORMATS = ['text/turtle', 'application/n-triples', 'application/rdf+xml'] as const;

/** A failure that becomes an HTTP status with a plain-text message. */
class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export type QueryForm = 'SELECT' | 'ASK' | 'CONSTRUCT' | 'DESCRIBE';

/**
 * The form of a query, read past its prologue (comments, BASE and PREFIX declarations). We need it
 * before evaluating, to pick a results format oxigraph can write. Returns null when the text does
 * not start like any query; oxigraph's parser then gives the real syntax error.
 */
export function queryForm(query: string): QueryForm | null {
  let rest = query;
  const prologueItem = /^(?:\s+|#[^\n]*(?:\n|$)|BASE\s*<[^>]*>|PREFIX\s+[A-Za-z0-9_.-]*:\s*<[^>]*>)/i;
  for (let m = prologueItem.exec(rest); m && m[0].length > 0; m = prologueItem.exec(rest)) {
    rest = rest.slice(m[0].length);
  }
  const keyword = /^(SELECT|ASK|CONSTRUCT|DESCRIBE)\b/i.exec(rest);
  return keyword ? (keyword[1]!.toUpperCase() as QueryForm) : null;
}

/**
 * Picks the media type to answer with from an Accept header: the supported type with the highest
 * q-value, or the default. Unmatched headers get the default rather than a 406, since SPARQL
 * clients often send only what they hope for.
 */
export function negotiate(accept: string | undefined, supported: readonly string[]): string {
  if (!accept) return supported[0]!;
  let best: { type: string; q: number } | null = null;
  for (const part of accept.split(',')) {
    const [rawType, ...params] = part.trim().split(';');
    const type = rawType!.trim().toLowerCase();
    const qParam = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    const q = qParam ? Number(qParam.slice(2)) : 1;
    if (!(q > 0)) continue;
    const match =
      type === '*/*' || type === 'application/*'
        ? supported[0]
        : type === 'application/json'
          ? supported.find((s) => s.endsWith('+json'))
          : supported.find((s) => s === type);
    if (match && (!best || q > best.q)) best = { type: match, q };
  }
  return best?.type ?? supported[0]!;
}

interface SparqlRequest {
  query?: string;
  update?: string;
  defaultGraphs: string[];
  namedGraphs: string[];
}

function readBody(req: http.IncomingMessage, limit: number): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (declared > limit) return Promise.reject(new ProtocolError(413, `request body is larger than ${limit} bytes`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    // Past the limit we keep reading but drop the bytes, so the client still gets its 413
    // instead of a reset connection.
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    });
    req.on('end', () => {
      if (size > limit) reject(new ProtocolError(413, `request body is larger than ${limit} bytes`));
      else resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', reject);
  });
}

function fromParams(params: URLSearchParams, into: SparqlRequest): void {
  const query = params.getAll('query');
  const update = params.getAll('update');
  if (query.length > 1 || update.length > 1) throw new ProtocolError(400, 'give one query or one update');
  if (query[0] !== undefined) into.query = query[0];
  if (update[0] !== undefined) into.update = update[0];
  into.defaultGraphs.push(...params.getAll('default-graph-uri'), ...params.getAll('using-graph-uri'));
  into.namedGraphs.push(...params.getAll('named-graph-uri'), ...params.getAll('using-named-graph-uri'));
}

/** Reads a protocol request in any of its three shapes into one form. */
async function parseRequest(req: http.IncomingMessage, url: URL, maxBodyBytes: number): Promise<SparqlRequest> {
  const parsed: SparqlRequest = { defaultGraphs: [], namedGraphs: [] };
  if (req.method === 'GET' || req.method === 'HEAD') {
    fromParams(url.searchParams, parsed);
    if (parsed.update !== undefined) throw new ProtocolError(400, 'updates must be sent with POST');
    return parsed;
  }
  if (req.method !== 'POST') throw new ProtocolError(405, `method ${req.method} is not allowed`);
  const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  const body = await readBody(req, maxBodyBytes);
  if (contentType === 'application/x-www-form-urlencoded') {
    fromParams(new URLSearchParams(body), parsed);
  } else if (contentType === 'application/sparql-query' || contentType === 'application/sparql-update') {
    // The graph parameters of direct POSTs travel in the URL.
    fromParams(url.searchParams, parsed);
    if (parsed.query !== undefined || parsed.update !== undefined) {
      throw new ProtocolError(400, 'a direct POST carries its operation in the body, not the URL');
    }
    if (contentType === 'application/sparql-query') parsed.query = body;
    else parsed.update = body;
  } else {
    throw new ProtocolError(
      415,
      'POST needs Content-Type application/x-www-form-urlencoded, application/sparql-query or application/sparql-update',
    );
  }
  return parsed;
}

function sendText(
  res: http.ServerResponse,
  status: number,
  text: string,
  headers: http.OutgoingHttpHeaders = {},
): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', ...headers });
  res.end(text.endsWith('\n') ? text : text + '\n');
}

function graphTerms(iris: string[]): NamedNode[] | undefined {
  return iris.length > 0 ? iris.map((iri) => namedNode(iri)) : undefined;
}

/** Evaluates a query; oxigraph's own errors are the client's fault (syntax, unknown graph IRI). */
function evaluate(
  store: Store,
  request: SparqlRequest & { query: string },
  accept: string | undefined,
): { mediaType: string; body: string } {
  const form = queryForm(request.query);
  const formats = form === 'CONSTRUCT' || form === 'DESCRIBE' ? GRAPH_FORMATS : SOLUTION_FORMATS;
  const mediaType = negotiate(accept, formats);
  try {
    const body = store.query(request.query, {
      results_format: mediaType,
      default_graph: graphTerms(request.defaultGraphs),
      named_graphs: graphTerms(request.namedGraphs),
    });
    return { mediaType, body: String(body) };
  } catch (thrown) {
    throw new ProtocolError(400, `query failed: ${thrown instanceof Error ? thrown.message : String(thrown)}`);
  }
}

/** Creates the endpoint on a store. Exported separately so a test or a site can bring its own store. */
export function createSparqlHandler(
  store: Store,
  options: { allowUpdate?: boolean; maxBodyBytes?: number } = {},
): http.RequestListener {
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://endpoint');
    if (url.pathname !== SPARQL_PATH) {
      sendText(res, 404, `not found: the SPARQL endpoint is at ${SPARQL_PATH}`);
      return;
    }
    parseRequest(req, url, maxBodyBytes)
      .then((request) => {
        if (request.update !== undefined) {
          if (request.query !== undefined) throw new ProtocolError(400, 'give either query or update, not both');
          if (!options.allowUpdate) throw new ProtocolError(403, 'this SPARQL endpoint is read-only');
          try {
            store.update(request.update);
          } catch (thrown) {
            throw new ProtocolError(400, `update failed: ${thrown instanceof Error ? thrown.message : String(thrown)}`);
          }
          res.writeHead(204).end();
          return;
        }
        if (request.query === undefined) throw new ProtocolError(400, 'missing query parameter');
        const { mediaType, body } = evaluate(store, { ...request, query: request.query }, req.headers.accept);
        res.writeHead(200, {
          'content-type': `${mediaType}; charset=utf-8`,
          'content-length': Buffer.byteLength(body),
          vary: 'Accept',
        });
        res.end(req.method === 'HEAD' ? undefined : body);
      })
      .catch((thrown: unknown) => {
        if (res.headersSent) {
          res.destroy();
          return;
        }
        if (thrown instanceof ProtocolError) {
          const headers: http.OutgoingHttpHeaders = thrown.status === 405 ? { allow: 'GET, HEAD, POST' } : {};
          // A body we stopped reading would otherwise keep the connection half-open.
          if (thrown.status === 413) headers.connection = 'close';
          sendText(res, thrown.status, thrown.message, headers);
        } else {
          sendText(res, 500, 'internal error');
        }
      });
  };
}

/** Loads Turtle into a fresh store. Throws the parser's message (with line and column) on bad input. */
export function loadTurtleStore(turtle: string | readonly string[]): Store {
  const store = new Store();
  for (const doc of typeof turtle === 'string' ? [turtle] : turtle) store.load(doc, { format: 'text/turtle' });
  return store;
}

/** Starts an endpoint on host:port and resolves once it listens. */
export async function startSparqlServer(options: SparqlServerOptions = {}): Promise<RunningSparqlServer> {
  const store = loadTurtleStore(options.turtle ?? []);
  const host = options.host ?? '127.0.0.1';
  const server = http.createServer(
    createSparqlHandler(store, { allowUpdate: options.allowUpdate, maxBodyBytes: options.maxBodyBytes }),
  );
  // Algorithms make one request each; a short keep-alive keeps close() from waiting on them.
  server.keepAliveTimeout = 2_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | null = null;
  return {
    url: `http://${urlHost}:${port}${SPARQL_PATH}`,
    host,
    port,
    store,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}

const USAGE = `Usage: node dist/demo/sparql-server.js [--data FILE.ttl]... [--port N] [--host ADDR] [--allow-update]
  Serves the Turtle files over the SPARQL 1.1 protocol (default 127.0.0.1:7878) until SIGINT/SIGTERM.`;

export function main(argv: string[]): Promise<number> {
  return runCommandLine(
    argv,
    { usage: USAGE, options: { data: 'list', port: 'value', host: 'value', 'allow-update': 'boolean' } },
    async (args) => {
      const port = integerOption(args, 'port', 7878, 65535);
      const turtle = listOption(args, 'data').map((file) => fs.readFileSync(file, 'utf8'));
      return serve(turtle, stringOption(args, 'host', '127.0.0.1'), port, args.values['allow-update'] === true);
    },
  );
}

async function serve(turtle: string[], host: string, port: number, allowUpdate: boolean): Promise<number> {
  const server = await startSparqlServer({ turtle, host, port, allowUpdate });
  process.stdout.write(`SPARQL endpoint ${server.url} (${server.store.size} triples)\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await server.close();
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (thrown: unknown) => {
      process.stderr.write(`${thrown instanceof Error ? thrown.message : String(thrown)}\n`);
      process.exitCode = 1;
    },
  );
}
