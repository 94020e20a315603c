import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  BASE_IMAGE,
  IMAGE_REGISTRY,
  buildAndPushImage,
  deleteImageFromRegistry,
  deleteLocalImage,
  imageExistsInRegistry,
  pullImage,
  removeContainersByLabel,
  requireInfrastructure,
  runContainer,
} from '../helpers/docker.js';
import { startVirtuoso, type RunningVirtuoso } from '../helpers/virtuoso.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

// Checks that what `bash scripts/infra.sh up` provides is really there and usable, so a broken
// machine shows up here rather than as a puzzling failure in the client's end-to-end tests.

const LABEL = 'pht.test';
const runLabel = `infra-${crypto.randomUUID()}`;

describe('docker engine and loopback image registry', () => {
  const createdImages: string[] = [];

  beforeAll(async () => {
    await requireInfrastructure();
  });

  afterEach(async () => {
    // Containers are removed as they finish; this catches a test that failed half-way.
    expect(await removeContainersByLabel(LABEL, runLabel)).toBe(0);
  });

  afterAll(async () => {
    await removeContainersByLabel(LABEL, runLabel);
    for (const ref of createdImages) {
      await deleteLocalImage(ref);
      await deleteImageFromRegistry(ref);
    }
  });

  it('runs node from the base image and prints its version', async () => {
    const output = await runContainer(BASE_IMAGE, {
      cmd: ['-e', 'console.log(process.version)'],
      labels: { [LABEL]: runLabel },
      hostConfig: { NetworkMode: 'none' },
    });

    expect(output.exitCode).toBe(0);
    expect(output.stdout.trim()).toMatch(/^v20\.\d+\.\d+$/);
  });

  it('pulls back an image it built and pushed to the loopback registry, and runs it by digest', async () => {
    const tag = `${IMAGE_REGISTRY}/pht-test/infra-${crypto.randomUUID().slice(0, 8)}:1`;
    createdImages.push(tag);
    const greeting = `hello ${runLabel}`;

    const digestRef = await buildAndPushImage(
      tag,
      { 'main.js': `console.log(require('./message.json').greeting);`, 'message.json': JSON.stringify({ greeting }) },
      { cmd: ['/app/main.js'], labels: { [LABEL]: runLabel } },
    );
    expect(digestRef).toMatch(
      new RegExp(`^${IMAGE_REGISTRY.replace(/\./g, '\\.')}/pht-test/infra-[0-9a-f]{8}@sha256:[0-9a-f]{64}$`),
    );
    expect(await imageExistsInRegistry(tag)).toBe(true);
    expect(await imageExistsInRegistry(digestRef)).toBe(true);

    // Drop the local copy so running it needs a real pull from the registry.
    await deleteLocalImage(tag);
    await pullImage(digestRef);
    const output = await runContainer(digestRef, {
      labels: { [LABEL]: runLabel },
      hostConfig: { NetworkMode: 'none' },
    });

    expect(output).toEqual({ exitCode: 0, stdout: `${greeting}\n`, stderr: '' });
    await deleteLocalImage(digestRef);
  });

  it('reports an image that was never pushed as absent from the registry', async () => {
    expect(await imageExistsInRegistry(`${IMAGE_REGISTRY}/pht-test/never-pushed-${runLabel}:1`)).toBe(false);
  });
});

describe('virtuoso', () => {
  let virtuoso: RunningVirtuoso | undefined;
  let scratch: string | undefined;

  afterEach(async () => {
    await virtuoso?.stop();
    if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
    virtuoso = undefined;
    scratch = undefined;
  });

  it('loads a Turtle file into a named graph and answers a SELECT in SPARQL JSON', async () => {
    virtuoso = await startVirtuoso();
    scratch = makeTempDir('pht-infra-test-');
    const file = path.join(scratch, 'patients.ttl');
    fs.writeFileSync(
      file,
      `@prefix ex: <http://example.org/pht/> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
ex:p1 a ex:Patient ; ex:age "42"^^xsd:integer .
ex:p2 a ex:Patient ; ex:age "57"^^xsd:integer .
`,
    );
    const graph = 'http://example.org/pht/graph/infra-test';

    await virtuoso.loadTurtle(file, graph);
    const query = `SELECT ?patient ?age FROM <${graph}> WHERE { ?patient a <http://example.org/pht/Patient> ; <http://example.org/pht/age> ?age } ORDER BY ?age`;
    const response = await fetch(virtuoso.sparqlUrl, {
      method: 'POST',
      headers: { accept: 'application/sparql-results+json', 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ query }),
    });

    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('application/sparql-results+json');
    const body = (await response.json()) as {
      head: { vars: string[] };
      results: { bindings: Record<string, { type: string; value: string }>[] };
    };
    expect(body.head.vars).toEqual(['patient', 'age']);
    expect(body.results.bindings.map((row) => [row.patient?.value, row.age?.value])).toEqual([
      ['http://example.org/pht/p1', '42'],
      ['http://example.org/pht/p2', '57'],
    ]);
    // Virtuoso's quirk a SPARQL client must accept: typed values come back as "typed-literal".
    expect(['literal', 'typed-literal']).toContain(body.results.bindings[0]?.age?.type);
  });

  it('stops the server and removes its directory', async () => {
    const server = await startVirtuoso();
    virtuoso = server;

    await server.stop();

    expect(fs.existsSync(server.dir)).toBe(false);
    await expect(fetch(server.sparqlUrl)).rejects.toThrow();
  });
});
