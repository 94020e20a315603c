/**
 * The parts of an OpenAPI 3.1 document that the registry's (master/http/openapi.ts) and the file
 * service's (fileservice/openapi.ts) route tables build the same way: named wire schemas as
 * components, path parameters, operation ids, answers and the document's envelope. Each service
 * keeps its own route table, its own statuses by kind of caller and its own request bodies.
 */

/** What one status answers with: a named JSON schema, another media type, or no body. */
export type Answer<Name extends string> =
  { description: string; json: Name } | { description: string; media: string } | { description: string };

export type PathParamTable = Record<string, { description: string; schema: object }>;

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

/** Builds operations and the document for one set of named wire schemas. */
export class OpenApiBuilder<Name extends string> {
  constructor(
    private readonly schemas: Readonly<Record<Name, object>>,
    private readonly pathParamTable: PathParamTable,
  ) {}

  /** A schema as the document shows it: a named schema used inside another becomes a $ref. */
  docSchema(node: unknown, top: object | null = null): unknown {
    if (Array.isArray(node)) return node.map((n) => this.docSchema(n));
    if (typeof node !== 'object' || node === null) return node;
    if (node !== top) {
      const name = (Object.keys(this.schemas) as Name[]).find((k) => this.schemas[k] === node);
      if (name) return ref(name);
    }
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, this.docSchema(v)]));
  }

  /** A JSON request body of a named schema. */
  jsonBody(name: Name, required: boolean): object {
    return { required, content: { 'application/json': { schema: ref(name) } } };
  }

  /** The path parameters of `path`, each described in the table (a missing one is a bug here). */
  pathParameters(path: string): object[] {
    return pathParams(path).map((name) => {
      const param = this.pathParamTable[name];
      if (!param) throw new Error(`describe the path parameter "${name}" of ${path} in PATH_PARAMS`);
      return { name, in: 'path', required: true, ...param };
    });
  }

  /** The operation fields every route shares; `extra` adds its parameters and request body. */
  operation(
    route: { method: string; path: string; summary: string; who: string },
    statuses: Record<string, Answer<Name>>,
    extra: { parameters: object[]; requestBody?: object },
  ): object {
    return {
      operationId: operationId(route.method, route.path),
      summary: route.summary,
      tags: [route.who === 'anyone' ? 'meta' : route.who],
      ...(route.who === 'anyone' ? { security: [] } : {}),
      ...(extra.parameters.length ? { parameters: extra.parameters } : {}),
      ...(extra.requestBody ? { requestBody: extra.requestBody } : {}),
      responses: Object.fromEntries(
        Object.entries(statuses)
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([status, answer]) => [status, answerDoc(answer)]),
      ),
    };
  }

  /** The whole document: bearer security, the schemas as components, one operation per route. */
  document(
    info: { title: string; description: string },
    tags: { name: string; description: string }[],
    operations: { method: string; path: string; doc: object }[],
  ): object {
    const paths: Record<string, Record<string, object>> = {};
    for (const op of operations) (paths[op.path] ??= {})[op.method] = op.doc;
    return {
      openapi: '3.1.0',
      info: { ...info, version: '1', license: { name: 'Apache-2.0', identifier: 'Apache-2.0' } },
      servers: [{ url: '/api/v1' }],
      security: [{ bearer: [] }],
      tags,
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
        schemas: Object.fromEntries(
          (Object.entries(this.schemas) as [Name, object][]).map(([name, schema]) => [
            name,
            this.docSchema(schema, schema),
          ]),
        ),
      },
      paths,
    };
  }
}

/** The names of a path's parameters, e.g. ["id"] for "/tasks/{id}". */
export const pathParams = (path: string): string[] => [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);

/** A raw-bytes request body. */
export const BINARY_BODY = {
  required: true,
  content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
};

/** "get" + "/tasks/{id}/files.json" → "getTasksIdFilesJson": unique per route, a valid identifier. */
function operationId(method: string, path: string): string {
  return (
    method +
    path.replace(/\.json$/, 'Json').replace(/[/{}-]+(\w)?/g, (_m, c: string | undefined) => (c ?? '').toUpperCase())
  );
}

function answerDoc<Name extends string>(answer: Answer<Name>): object {
  if ('json' in answer)
    return { description: answer.description, content: { 'application/json': { schema: ref(answer.json) } } };
  if ('media' in answer) {
    const schema =
      answer.media === 'application/octet-stream' ? { type: 'string', format: 'binary' } : { type: 'string' };
    return { description: answer.description, content: { [answer.media]: { schema } } };
  }
  return { description: answer.description };
}
