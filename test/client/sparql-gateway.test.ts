import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SparqlGateway } from '../../client/sparql-gateway.js';
import { startSparqlServer, type RunningSparqlServer } from '../../demo/sparql-server.js';
import { silentLogger } from '../../shared/logger.js';
import winston from 'winston';
import { Writable } from 'node:stream';

describe('SPARQL gateway', () => {
  let endpoint: RunningSparqlServer;
  let gateway: SparqlGateway;
  const auditLines: any[] = [];

  beforeAll(async () => {
    endpoint = await startSparqlServer({
      host: '127.0.0.1',
      allowUpdate: true,
      turtle: '<urn:a> <urn:b> "x" . <urn:c> <urn:d> "y" .',
    });
    const sink = new Writable({
      write(chunk, _enc, cb) {
        auditLines.push(JSON.parse(chunk.toString()));
        cb();
      },
    });
    const audit = winston.createLogger({
      format: winston.format.json(),
      transports: [new winston.transports.Stream({ stream: sink })],
    });
    gateway = new SparqlGateway({
      endpoint: endpoint.url,
      allowUpdates: false,
      maxResponseBytes: 2048,
      queryTimeoutMs: 5000,
      audit,
      logger: silentLogger(),
    });
    await gateway.listen('127.0.0.1');
  });

  afterAll(async () => {
    await gateway.close();
    await endpoint.close();
  });

  const count = 'SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }';

  it('forwards a GET and a form POST query and audits them with the run id', async () => {
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
    await new Promise((r) => setTimeout(r, 50));
    const queries = auditLines.filter((l) => l.event === 'sparql_query' && l.runId === 7);
    expect(queries).toHaveLength(2);
    expect(queries[0].query).toBe(count);
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
    ];
    for (const a of attempts) {
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': a['content-type'] }, body: a.body });
      expect(res.status).toBe(403);
    }
    const res = await fetch(`${endpoint.url}?query=${encodeURIComponent(count)}`, {
      headers: { accept: 'application/sparql-results+json' },
    });
    expect(((await res.json()) as any).results.bindings[0].n.value).toBe('2');
  });

  it('answers 404 to an unknown or released run token', async () => {
    const reg = gateway.registerRun(9);
    gateway.unregisterRun(reg.token);
    expect((await fetch(`${reg.url}?query=${encodeURIComponent(count)}`)).status).toBe(404);
    expect((await fetch(`${reg.url.replace(/\/sparql\/.*/, '/sparql/not-a-real-token-at-all')}?query=x`)).status).toBe(
      404,
    );
  });

  it('cuts off a response larger than the cap instead of passing it on', async () => {
    const { url } = gateway.registerRun(10);
    const big =
      'SELECT ?s ?p ?o ?x WHERE { ?s ?p ?o . VALUES ?x { ' +
      Array.from({ length: 200 }, (_, i) => `"${'v'.repeat(20)}${i}"`).join(' ') +
      ' } }';
    await expect(
      fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/sparql-query', accept: 'application/sparql-results+json' },
        body: big,
      }).then((r) => r.text()),
    ).rejects.toThrow();
  });

  it('rejects methods and content types it does not speak', async () => {
    const { url } = gateway.registerRun(11);
    expect((await fetch(url, { method: 'PUT', body: 'x' })).status).toBe(405);
    expect((await fetch(url, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' })).status).toBe(
      415,
    );
    expect((await fetch(url)).status).toBe(400);
  });
});

describe('SPARQL prologue', () => {
  it('finds the operation after comments and declarations, whatever they contain', async () => {
    const { skipPrologue } = await import('../../client/sparql-gateway.js');
    expect(skipPrologue('PREFIX x: <urn:x#>\n# a comment\nBASE <http://e/#>  SELECT * {}')).toBe('SELECT * {}');
    expect(skipPrologue('  # only\n  ask {}')).toBe('ask {}');
    expect(skipPrologue('PREFIX : <urn:x> INSERT DATA {}')).toBe('INSERT DATA {}');
  });
});
