/**
 * A served OpenAPI document as the contract tests use it (test/master/contract.test.ts,
 * test/fileservice/contract.test.ts): linted with redocly's recommended-strict rules, then used to
 * check real answers (status documented, content type, body against the schema).
 */
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { createConfig, lintFromString } from '@redocly/openapi-core';
import { expect } from 'vitest';

interface Operation {
  responses: Record<string, { content?: Record<string, { schema: object }> }>;
}
interface Doc {
  paths: Record<string, Record<string, Operation>>;
}

/** One answer as the server sent it. */
export interface ServedAnswer {
  status: number;
  contentType: string | undefined;
  text: string;
  /** The parsed JSON body (called only when the document says JSON). */
  json(): unknown;
}

export class ServedDocument {
  private constructor(
    private readonly doc: Doc,
    readonly ajv: Ajv2020,
  ) {}

  /** Parses and lints the document's text (no lint problem allowed) and prepares its schemas. */
  static async lint(text: string): Promise<ServedDocument> {
    const doc = JSON.parse(text) as Doc;
    const ajv = new Ajv2020({ strict: false, allErrors: true, formats: { binary: true } });
    addFormats(ajv);
    ajv.addSchema(doc, 'openapi.json');
    // The document's own $refs point into the document: resolve them against its id.
    const resolve = (schema: object) => JSON.parse(JSON.stringify(schema).replaceAll('"#/', '"openapi.json#/'));
    for (const item of Object.values(doc.paths))
      for (const op of Object.values(item))
        for (const r of Object.values(op.responses))
          for (const media of Object.values(r.content ?? {})) media.schema = resolve(media.schema);

    const config = await createConfig({
      extends: ['recommended-strict'],
      // The document itself is the one route that cannot fail with a 4xx.
      rules: { 'operation-4xx-response': 'off' },
    });
    const problems = await lintFromString({ source: text, absoluteRef: '/api/v1/openapi.json', config });
    expect(problems.map((p) => `${p.ruleId}: ${p.message} at ${p.location[0]?.pointer ?? ''}`)).toEqual([]);
    return new ServedDocument(doc, ajv);
  }

  /** Every documented "method path status". */
  statuses(): string[] {
    return Object.entries(this.doc.paths).flatMap(([path, item]) =>
      Object.entries(item).flatMap(([method, op]) => Object.keys(op.responses).map((s) => `${method} ${path} ${s}`)),
    );
  }

  /** The answer's status, content type and body are what the document lists for `method template`. */
  check(method: string, template: string, answer: ServedAnswer, what: string): void {
    const operation = this.doc.paths[template]?.[method];
    expect(operation, `${method} ${template} is documented`).toBeDefined();
    const documented = operation!.responses[String(answer.status)];
    expect(documented, `${what}: status documented`).toBeDefined();
    if (documented!.content) {
      const mediaType = answer.contentType?.split(';')[0]?.trim();
      expect(Object.keys(documented!.content), `${what}: content type`).toContain(mediaType);
      if (mediaType === 'application/json') {
        const validate = this.ajv.compile(documented!.content[mediaType]!.schema);
        expect(validate(answer.json()) ? [] : validate.errors, `${what}: body matches the document`).toEqual([]);
      }
    } else {
      expect(answer.text, `${what}: no body documented`).toBe('');
    }
  }
}
