import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { negotiate, queryForm, startSparqlServer, type RunningSparqlServer } from '../../demo/sparql-server.js';

const TURTLE = `
@prefix pht: <https://w3id.org/pht/demo#> .
@prefix patient: <https://w3id.org/pht/demo/site-t/patient/> .
patient:1 a pht:Patient ; pht:age 63 ; pht:sex "F" ; pht:bmi 27.4 ; pht:survived2y 1 .
patient:2 a pht:Patient ; pht:age 48 ; pht:sex "M" ; pht:survived2y 0 .
`;
const SELECT_AGES = `PREFIX pht: <https://w3id.org/pht/demo#>
SELECT ?p ?age WHERE { ?p a pht:Patient ; pht:age ?age } ORDER BY ?age`;
const COUNT = 'PREFIX pht: <https://w3id.org/pht/demo#> SELECT (COUNT(*) AS ?n) WHERE { ?p a pht:Patient }';

const servers: RunningSparqlServer[] = [];
async function start(options: Parameters<typeof startSparqlServer>[0] = {}): Promise<RunningSparqlServer> {
  const server = await startSparqlServer({ turtle: TURTLE, host: '127.0.0.1', port: 0, ...options });
  servers.push(server);
  return server;
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

function form(body: Record<string, string>): RequestInit {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(body).toString(),
  };
}

async function patientCount(server: RunningSparqlServer): Promise<number> {
  const res = await fetch(`${server.url}?query=${encodeURIComponent(COUNT)}`);
  const json = (await res.json()) as { results: { bindings: Array<{ n: { value: string } }> } };
  return Number(json.results.bindings[0]!.n.value);
}

describe('demo SPARQL server', () => {
  it('answers a GET SELECT with standard SPARQL JSON results', async () => {
    const server = await start();
    const res = await fetch(`${server.url}?query=${encodeURIComponent(SELECT_AGES)}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/sparql-results\+json/);
    expect(await res.json()).toEqual({
      head: { vars: ['p', 'age'] },
      results: {
        bindings: [
          {
            p: { type: 'uri', value: 'https://w3id.org/pht/demo/site-t/patient/2' },
            age: { type: 'literal', value: '48', datatype: 'http://www.w3.org/2001/XMLSchema#integer' },
          },
          {
            p: { type: 'uri', value: 'https://w3id.org/pht/demo/site-t/patient/1' },
            age: { type: 'literal', value: '63', datatype: 'http://www.w3.org/2001/XMLSchema#integer' },
          },
        ],
      },
    });
  });

  it('answers a form-encoded POST and a direct application/sparql-query POST alike', async () => {
    const server = await start();
    const viaForm = await fetch(server.url, form({ query: SELECT_AGES }));
    const direct = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/sparql-query; charset=utf-8' },
      body: SELECT_AGES,
    });
    expect(viaForm.status).toBe(200);
    expect(direct.status).toBe(200);
    expect(await direct.json()).toEqual(await viaForm.json());
  });

  it('answers ASK with {"boolean": ...}', async () => {
    const server = await start();
    const yes = await fetch(server.url, form({ query: 'ASK { ?p <https://w3id.org/pht/demo#age> 63 }' }));
    const no = await fetch(server.url, form({ query: 'ASK { ?p <https://w3id.org/pht/demo#age> 64 }' }));
    expect(yes.headers.get('content-type')).toMatch(/^application\/sparql-results\+json/);
    expect(await yes.json()).toEqual({ head: {}, boolean: true });
    expect(await no.json()).toEqual({ head: {}, boolean: false });
  });

  it('refuses updates with 403 in every protocol shape and leaves the data unchanged', async () => {
    const server = await start();
    const update = 'DELETE WHERE { ?s ?p ?o }';
    const viaForm = await fetch(server.url, form({ update }));
    const direct = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/sparql-update' },
      body: update,
    });
    const viaGet = await fetch(`${server.url}?update=${encodeURIComponent(update)}`);
    expect(viaForm.status).toBe(403);
    expect(await viaForm.text()).toMatch(/read-only/);
    expect(direct.status).toBe(403);
    expect(viaGet.status).toBe(400);
    // An update smuggled in as a query is a syntax error, not an update.
    expect((await fetch(server.url, form({ query: update }))).status).toBe(400);
    expect(await patientCount(server)).toBe(2);
  });

  it('applies updates when started with allowUpdate', async () => {
    const server = await start({ allowUpdate: true });
    const res = await fetch(
      server.url,
      form({ update: 'DELETE WHERE { ?p a <https://w3id.org/pht/demo#Patient> ; ?x ?y }' }),
    );
    expect(res.status).toBe(204);
    expect(await patientCount(server)).toBe(0);
  });

  it('honours default-graph-uri', async () => {
    const server = await start({ allowUpdate: true });
    const insert = 'INSERT DATA { GRAPH <urn:g> { <urn:p> a <https://w3id.org/pht/demo#Patient> } }';
    expect((await fetch(server.url, form({ update: insert }))).status).toBe(204);
    const inGraph = await fetch(server.url, form({ query: COUNT, 'default-graph-uri': 'urn:g' }));
    const json = (await inGraph.json()) as { results: { bindings: Array<{ n: { value: string } }> } };
    expect(json.results.bindings[0]!.n.value).toBe('1');
    expect(await patientCount(server)).toBe(2);
  });

  it('answers 400 with the parser message for a malformed query and for a missing one', async () => {
    const server = await start();
    const bad = await fetch(server.url, form({ query: 'SELEC ?x WHERE {}' }));
    expect(bad.status).toBe(400);
    expect(bad.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await bad.text()).toMatch(/query failed/);
    expect((await fetch(server.url)).status).toBe(400);
  });

  it('answers 415 to an unknown body type, 405 to other methods and 404 off the endpoint path', async () => {
    const server = await start();
    const json = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(json.status).toBe(415);
    const put = await fetch(server.url, { method: 'PUT', body: 'x' });
    expect(put.status).toBe(405);
    expect(put.headers.get('allow')).toBe('GET, HEAD, POST');
    expect((await fetch(server.url.replace('/sparql', '/other'))).status).toBe(404);
  });

  it('answers 413 to a body over the size limit', async () => {
    const server = await start({ maxBodyBytes: 1000 });
    const declared = await fetch(server.url, form({ query: `${COUNT} #${'x'.repeat(5000)}` }));
    expect(declared.status).toBe(413);
    // Without a Content-Length the limit is found while reading.
    const chunk = new TextEncoder().encode(`query=${encodeURIComponent(COUNT)}%20%23${'x'.repeat(600)}`);
    const streamed = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(chunk);
          controller.enqueue(new TextEncoder().encode('x'.repeat(600)));
          controller.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    expect(streamed.status).toBe(413);
    // The server stays up and keeps answering.
    expect(await patientCount(server)).toBe(2);
  });

  it('negotiates CSV for SELECT and Turtle for CONSTRUCT', async () => {
    const server = await start();
    const csv = await fetch(server.url, {
      ...form({ query: SELECT_AGES }),
      headers: { ...form({}).headers, accept: 'text/csv' },
    });
    expect(csv.headers.get('content-type')).toMatch(/^text\/csv/);
    expect((await csv.text()).split(/\r?\n/)[0]).toBe('p,age');
    const construct = await fetch(
      server.url,
      form({ query: 'CONSTRUCT WHERE { ?s <https://w3id.org/pht/demo#age> ?o }' }),
    );
    expect(construct.status).toBe(200);
    expect(construct.headers.get('content-type')).toMatch(/^text\/turtle/);
    expect(await construct.text()).toContain('63');
  });

  it('listens on the host it is given and frees its port on close, twice without error', async () => {
    const server = await startSparqlServer({ turtle: TURTLE, host: '127.0.0.1', port: 0 });
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/sparql`);
    await fetch(`${server.url}?query=${encodeURIComponent(COUNT)}`);
    await server.close();
    await server.close();
    // Nothing listens there any more: binding the same port succeeds.
    await new Promise<void>((resolve, reject) => {
      const probe = net.createServer();
      probe.once('error', reject);
      probe.listen(server.port, '127.0.0.1', () => probe.close(() => resolve()));
    });
  });

  it('rejects Turtle it cannot parse at start', async () => {
    await expect(startSparqlServer({ turtle: '<a> <b> .', port: 0 })).rejects.toThrow();
  });
});

describe('queryForm', () => {
  it('finds the form past comments, BASE and PREFIX declarations whose IRIs contain #', () => {
    expect(queryForm('# a comment\nPREFIX pht: <https://w3id.org/pht/demo#>\nBASE <http://x/>\n  select * {}')).toBe(
      'SELECT',
    );
    expect(queryForm('PREFIX : <urn:x#> ASK {}')).toBe('ASK');
    expect(queryForm('construct where { ?s ?p ?o }')).toBe('CONSTRUCT');
    expect(queryForm('DESCRIBE <urn:x>')).toBe('DESCRIBE');
    expect(queryForm('INSERT DATA {}')).toBeNull();
    expect(queryForm('')).toBeNull();
  });
});

describe('negotiate', () => {
  const formats = ['application/sparql-results+json', 'text/csv'] as const;
  it('takes the supported type with the highest q and falls back to the first', () => {
    expect(negotiate(undefined, formats)).toBe('application/sparql-results+json');
    expect(negotiate('text/csv;q=0.9, application/sparql-results+json;q=0.5', formats)).toBe('text/csv');
    expect(negotiate('application/json', formats)).toBe('application/sparql-results+json');
    expect(negotiate('text/html', formats)).toBe('application/sparql-results+json');
    expect(negotiate('text/csv;q=0, */*;q=0.1', formats)).toBe('application/sparql-results+json');
  });
});
