import { EventEmitter, once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import winston from 'winston';
import { SparqlGateway, type GatewayOptions } from '../../client/sparql-gateway.js';
import { checkSparql } from '../../client/sparql-query-check.js';
import { startSparqlServer, type RunningSparqlServer } from '../../demo/sparql-server.js';
import { silentLogger } from '../../shared/logger.js';

/** An audit logger whose lines can be awaited (an event per line) instead of slept for. */
function captureAudit() {
  const lines: any[] = [];
  const events = new EventEmitter();
  const sink = new Writable({
    write(chunk, _enc, cb) {
      const line = JSON.parse(chunk.toString());
      lines.push(line);
      events.emit('line', line);
      cb();
    },
  });
  const logger = winston.createLogger({
    format: winston.format.json(),
    transports: [new winston.transports.Stream({ stream: sink })],
  });
  const waitFor = async (match: (l: any) => boolean): Promise<any> => {
    const found = lines.find(match);
    if (found) return found;
    for (;;) {
      const [line] = await once(events, 'line');
      if (match(line)) return line;
    }
  };
  return { lines, logger, waitFor };
}

async function startGateway(endpoint: string, audit: winston.Logger, extra: Partial<GatewayOptions> = {}) {
  const gateway = new SparqlGateway({
    endpoint,
    allowUpdates: false,
    maxResponseBytes: 2048,
    queryTimeoutMs: 5000,
    audit,
    logger: silentLogger(),
    ...extra,
  });
  await gateway.listen('127.0.0.1');
  return gateway;
}

const count = 'SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }';

describe('SPARQL gateway', () => {
  let endpoint: RunningSparqlServer;
  let gateway: SparqlGateway;
  const audit = captureAudit();

  beforeAll(async () => {
    endpoint = await startSparqlServer({
      host: '127.0.0.1',
      allowUpdate: true,
      turtle: '<urn:a> <urn:b> "x" . <urn:c> <urn:d> "y" .',
    });
    gateway = await startGateway(endpoint.url, audit.logger, { allowedGraphs: ['urn:graph:open'] });
  });

  afterAll(async () => {
    await gateway.close();
    await endpoint.close();
  });

  async function send(url: string, query: string): Promise<number> {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/sparql-query', accept: 'application/sparql-results+json' },
      body: query,
    });
    await res.arrayBuffer();
    return res.status;
  }

  it('forwards a GET and a form POST query and audits each on arrival and with its outcome', async () => {
    const { url } = gateway.registerRun(7);
    const get = await fetch(`${url}?query=${encodeURIComponent(count)}`, {
      headers: { accept: 'application/sparql-results+json' },
    });
    expect(get.status).toBe(200);
    expect(((await get.json()) as any).results.bindings[0].n.value).toBe('2');
    const post = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `query=${encodeURIComponent(count)}`,
    });
    expect(post.status).toBe(200);
    await post.arrayBuffer();
    const received = audit.lines.filter((l) => l.event === 'sparql_query_received' && l.runId === 7);
    expect(received.map((l) => l.query)).toEqual([count, count]);
    for (const r of received)
      expect(await audit.waitFor((l) => l.event === 'sparql_query' && l.queryId === r.queryId)).toMatchObject({
        outcome: 'answered',
        status: 200,
        runId: 7,
      });
  });

  it('refuses updates in every form, and the data stays unchanged', async () => {
    const { url } = gateway.registerRun(8);
    const insert = 'PREFIX x: <urn:x#>\n# comment\nINSERT DATA { <urn:e> <urn:f> "z" }';
    const attempts = [
      { 'content-type': 'application/x-www-form-urlencoded', body: `update=${encodeURIComponent(insert)}` },
      { 'content-type': 'application/sparql-update', body: insert },
      { 'content-type': 'application/sparql-query', body: insert },
      {
        'content-type': 'application/x-www-form-urlencoded',
        body: `query=${encodeURIComponent('  delete where { ?s ?p ?o }')}`,
      },
      // A comment ended by \r (legal SPARQL) hid the update from the old prologue filter.
      { 'content-type': 'application/sparql-query', body: '# harmless\rINSERT DATA { <urn:e> <urn:f> "z" }' },
    ];
    for (const a of attempts) {
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': a['content-type'] }, body: a.body });
      expect(res.status).toBe(403);
      expect(await res.text()).toContain('updates are not allowed');
    }
    const res = await fetch(`${endpoint.url}?query=${encodeURIComponent(count)}`, {
      headers: { accept: 'application/sparql-results+json' },
    });
    expect(((await res.json()) as any).results.bindings[0].n.value).toBe('2');
  });

  it('refuses SERVICE anywhere in a query and FROM / FROM NAMED graphs the site does not list', async () => {
    const { url } = gateway.registerRun(12);
    const refused = [
      'SELECT * WHERE { SERVICE <http://evil.example/sparql> { ?s ?p ?o } }',
      'SELECT * WHERE { ?s ?p ?o OPTIONAL { SERVICE SILENT <http://evil.example/x> { ?s ?q ?r } } }',
      'SELECT * WHERE { { SELECT ?s WHERE { SERVICE <http://e/> { ?s ?p ?o } } } }',
      'ASK { FILTER EXISTS { SERVICE <http://e/> { ?s ?p ?o } } }',
      'SELECT * FROM <urn:graph:secret> WHERE { ?s ?p ?o }',
      'SELECT * FROM NAMED <urn:graph:secret> WHERE { GRAPH ?g { ?s ?p ?o } }',
    ];
    for (const q of refused) expect({ q, status: await send(url, q) }).toEqual({ q, status: 403 });
    expect(await send(url, 'SELECT * FROM <urn:graph:open> WHERE { ?s ?p ?o }')).toBe(200);
    expect(await send(url, 'SELECT * WHERE { ?s ?p ?o ')).toBe(400);
  });

  it('answers 404 to an unknown or released run token', async () => {
    const reg = gateway.registerRun(9);
    gateway.unregisterRun(reg.token);
    expect((await fetch(`${reg.url}?query=${encodeURIComponent(count)}`)).status).toBe(404);
    expect((await fetch(`${reg.url.replace(/\/sparql\/.*/, '/sparql/not-a-real-token-at-all')}?query=x`)).status).toBe(
      404,
    );
  });

  it('cuts off a response larger than the cap, audits it as truncated, and keeps serving', async () => {
    const { url } = gateway.registerRun(10);
    const big =
      'SELECT ?s ?p ?o ?x WHERE { ?s ?p ?o . VALUES ?x { ' +
      Array.from({ length: 200 }, (_, i) => `"${'v'.repeat(20)}${i}"`).join(' ') +
      ' } }';
    const answer = fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/sparql-query', accept: 'application/sparql-results+json' },
      body: big,
    }).then((r) => r.text());
    // The connection is cut (no clean, silently shortened answer), and it was the cap that cut it:
    // the audit line says so, and the gateway answers the next query.
    await expect(answer).rejects.toThrow(/fetch failed|terminated/);
    expect(await audit.waitFor((l) => l.event === 'sparql_query' && l.runId === 10)).toMatchObject({
      outcome: 'truncated',
      truncated: true,
    });
    expect(await send(url, count)).toBe(200);
  });

  it('rejects methods and content types it does not speak', async () => {
    const { url } = gateway.registerRun(11);
    expect((await fetch(url, { method: 'PUT', body: 'x' })).status).toBe(405);
    expect((await fetch(url, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' })).status).toBe(
      415,
    );
    expect((await fetch(url)).status).toBe(400);
  });

  it('closes the connection after an early refusal instead of waiting for an announced body', async () => {
    const port = Number(new URL(gateway.registerRun(13).url).port);
    const socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write('POST /sparql/unknown-token-xyz HTTP/1.1\r\nHost: g\r\nContent-Length: 1000000\r\n\r\n');
    let answer = '';
    socket.on('data', (d) => (answer += d.toString()));
    await once(socket, 'close');
    expect(answer).toMatch(/^HTTP\/1.1 404/);
  });
});

describe('SPARQL gateway against a hostile container', () => {
  it('aborts the upstream query when the container hangs up, with the query audited on arrival and as aborted', async () => {
    // An endpoint that answers a large result slowly, and tells when its client went away.
    const upstreamClosed = new EventEmitter();
    const slow = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/n-triples' });
      const timer = setInterval(() => res.write('<urn:s> <urn:p> "' + 'x'.repeat(1000) + '" .\n'), 5);
      res.on('close', () => {
        clearInterval(timer);
        upstreamClosed.emit('closed');
      });
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    const audit = captureAudit();
    const gateway = await startGateway(
      `http://127.0.0.1:${(slow.address() as net.AddressInfo).port}/sparql`,
      audit.logger,
      { maxResponseBytes: 1e9 },
    );
    try {
      const { url } = gateway.registerRun(21);
      const closed = once(upstreamClosed, 'closed');
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/sparql-query' },
        body: 'CONSTRUCT WHERE { ?s ?p ?o }',
      });
      const reader = res.body!.getReader();
      await reader.read();
      expect(await audit.waitFor((l) => l.event === 'sparql_query_received' && l.runId === 21)).toMatchObject({
        query: 'CONSTRUCT WHERE { ?s ?p ?o }',
      });
      await reader.cancel();
      await closed;
      expect(await audit.waitFor((l) => l.event === 'sparql_query' && l.runId === 21)).toMatchObject({
        outcome: 'aborted',
      });
    } finally {
      await gateway.close();
      slow.closeAllConnections();
      await new Promise((r) => slow.close(r));
    }
  });

  it('caps connections per container and overall, closing the excess at once', async () => {
    const audit = captureAudit();
    const gateway = await startGateway('http://127.0.0.1:1/sparql', audit.logger, { maxConnectionsPerRun: 5 });
    const sockets: net.Socket[] = [];
    try {
      const port = gateway.port;
      const closedByServer: Promise<unknown>[] = [];
      for (let i = 0; i < 40; i++) {
        const s = net.connect(port, '127.0.0.1');
        sockets.push(s);
        await once(s, 'connect');
        closedByServer.push(once(s, 'close'));
      }
      // The 35 beyond the cap are closed by the gateway; the first 5 stay until idle.
      await Promise.all(closedByServer.slice(5));
      expect(gateway.openConnections).toBe(5);
      const refusals = audit.lines.filter((l) => l.event === 'sparql_refused');
      expect(refusals.length).toBe(10);
    } finally {
      for (const s of sockets) s.destroy();
      await gateway.close();
    }
    // The repeats beyond the first ten are summed up in one line, written at the latest on close.
    expect(audit.lines.filter((l) => l.event === 'sparql_refused_repeats')).toEqual([
      expect.objectContaining({ suppressed: 25 }),
    ]);
  });

  it('closes a connection that sits idle', async () => {
    const gateway = await startGateway('http://127.0.0.1:1/sparql', captureAudit().logger, { idleTimeoutMs: 300 });
    try {
      const s = net.connect(gateway.port, '127.0.0.1');
      await once(s, 'connect');
      // Nothing sent, never closed by the client: only the gateway's idle timeout ends it.
      await once(s, 'close');
    } finally {
      await gateway.close();
    }
  });

  it('writes at most ten audit lines a minute for the same refusal from the same container', async () => {
    const audit = captureAudit();
    const gateway = await startGateway('http://127.0.0.1:1/sparql', audit.logger);
    try {
      const base = gateway.registerRun(30).url.replace(/\/sparql\/.*/, '');
      for (let i = 0; i < 100; i++) expect((await fetch(`${base}/sparql/not-a-real-token-at-all`)).status).toBe(404);
    } finally {
      await gateway.close();
    }
    expect(audit.lines.filter((l) => l.event === 'sparql_refused')).toHaveLength(10);
    expect(audit.lines.filter((l) => l.event === 'sparql_refused_repeats')).toEqual([
      expect.objectContaining({ suppressed: 90, reason: 'unknown run token' }),
    ]);
  });
});

describe('SPARQL query check', () => {
  const options = { allowUpdates: false, allowedGraphs: [] };

  it('forwards the query as parsed, whatever comments and prologue it came with', () => {
    const check = checkSparql('PREFIX x: <urn:x#>\n# a comment\nBASE <http://e/#>  SELECT * {}', options);
    expect(check).toMatchObject({ ok: true, kind: 'query', form: 'SELECT' });
    expect(checkSparql('  # only\r  ask {}', options)).toMatchObject({ ok: true, form: 'ASK' });
  });

  it('refuses updates unless the site allows them, and never lets SERVICE through', () => {
    expect(checkSparql('PREFIX : <urn:x> INSERT DATA { :a :b :c }', options)).toMatchObject({ ok: false, status: 403 });
    expect(checkSparql('INSERT DATA { <urn:a> <urn:b> <urn:c> }', { ...options, allowUpdates: true })).toMatchObject({
      ok: true,
      kind: 'update',
    });
    expect(
      checkSparql('INSERT { ?s ?p ?o } WHERE { SERVICE <http://e/> { ?s ?p ?o } }', { ...options, allowUpdates: true }),
    ).toMatchObject({ ok: false, status: 403 });
  });
});
