import { describe, expect, it } from 'vitest';
import { registry } from './helpers.js';

interface Layer {
  route?: { path: string; methods: Record<string, boolean> };
  handle: { stack?: Layer[] };
  rawPath?: string;
}

/**
 * Every (method, path) the Express app routes, read from its router stack. `rawPath` is the
 * router's record of a mounted path; a mount without one is at "/".
 */
function servedRoutes(stack: Layer[], prefix = ''): string[] {
  const out: string[] = [];
  for (const layer of stack) {
    if (layer.route) {
      for (const method of Object.keys(layer.route.methods))
        out.push(`${method.toUpperCase()} ${prefix}${layer.route.path}`);
    } else if (layer.handle.stack) {
      const mount = typeof layer.rawPath === 'string' && layer.rawPath !== '/' ? layer.rawPath : '';
      out.push(...servedRoutes(layer.handle.stack, prefix + mount));
    }
  }
  return out;
}

/** Express path syntax to OpenAPI's: ":id" and "*name" and "{/*name}" become "{id}", "/{name}". */
function toOpenApiPath(path: string): string {
  return path.replace(/\{\/\*(\w+)\}/g, '/{$1}').replace(/[:*](\w+)/g, '{$1}');
}

describe('OpenAPI document', () => {
  it('lists every route the app serves under /api/v1, and nothing else', async () => {
    const reg = await registry();
    const doc = (await (await fetch(`${reg.url}/api/v1/openapi.json`)).json()) as {
      servers: { url: string }[];
      paths: Record<string, Record<string, unknown>>;
    };
    expect(doc.servers).toEqual([{ url: '/api/v1' }]);
    const documented = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.keys(item).map((m) => `${m.toUpperCase()} /api/v1${path}`),
    );

    // The app as the server builds it, walked through its router.
    const { createApp } = await import('../../master/http/app.js');
    const { ResultFileStore } = await import('../../master/result-files.js');
    const { silentLogger } = await import('../../shared/logger.js');
    const app = createApp({
      store: reg.store,
      events: reg.events,
      files: new ResultFileStore(reg.dataDir),
      config: reg.config,
      logger: silentLogger(),
      keys: reg.keys,
    });
    const served = servedRoutes((app as unknown as { router: { stack: Layer[] } }).router.stack).map((r) => {
      const [method, path] = r.split(' ') as [string, string];
      return `${method} ${toOpenApiPath(path)}`;
    });
    // Walking the stack found the routes (a guard against an empty walk passing vacuously).
    expect(served.length).toBeGreaterThan(20);

    const api = served.filter((r) => r.includes(' /api/v1/'));
    // /healthz is outside the versioned API (load balancers probe it) and not described by it;
    // / redirects to the dashboard (/ui, static files).
    expect(served.filter((r) => !r.includes(' /api/v1/')).sort()).toEqual(['GET /', 'GET /healthz']);
    expect([...documented].sort()).toEqual([...api].sort());
  });

  it('marks only the document itself as needing no key', async () => {
    const reg = await registry();
    const doc = (await (await fetch(`${reg.url}/api/v1/openapi.json`)).json()) as {
      security: unknown[];
      paths: Record<string, Record<string, { security?: unknown[] }>>;
    };
    expect(doc.security).toEqual([{ bearer: [] }]);
    const open = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.entries(item)
        .filter(([, op]) => op.security?.length === 0)
        .map(([m]) => `${m} ${path}`),
    );
    expect(open).toEqual(['get /openapi.json']);
  });

  it('documents the request schemas the registry validates with', async () => {
    const reg = await registry();
    const doc = (await (await fetch(`${reg.url}/api/v1/openapi.json`)).json()) as {
      components: { schemas: Record<string, { additionalProperties?: boolean; required?: string[] }> };
    };
    expect(doc.components.schemas.CreateTaskRequest).toMatchObject({
      additionalProperties: false,
      required: ['image'],
    });
    expect(doc.components.schemas.FinishReport).toMatchObject({ additionalProperties: false, required: ['state'] });
  });
});

describe('the README', () => {
  it("lists in its API table exactly the document's routes", async () => {
    const fs = await import('node:fs');
    const path = await import('node:path');
    const { openApiDocument } = await import('../../master/http/openapi.js');
    const readme = fs.readFileSync(path.join(__dirname, '../../README.md'), 'utf8');
    const listed = [...readme.matchAll(/^\| [a-z]+ \| `(GET|POST|PUT|DELETE|PATCH) (\/[^`]*)` \|/gm)].map(
      (m) => `${m[1]!.toLowerCase()} ${m[2]!.replace(/:(\w+)/g, '{$1}')}`,
    );
    const doc = openApiDocument() as { paths: Record<string, Record<string, unknown>> };
    const documented = Object.entries(doc.paths).flatMap(([p, item]) => Object.keys(item).map((m) => `${m} ${p}`));
    expect(listed.length).toBeGreaterThan(0);
    expect(listed.sort()).toEqual(documented.sort());
  });
});
