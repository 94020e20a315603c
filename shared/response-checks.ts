import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import { describeErrors } from './validation.js';

/**
 * Checks of the registry's answers, compiled from the same schemas as the OpenAPI document. They
 * are lenient in one way only: fields this program does not know are allowed (a newer registry
 * may add some), so `additionalProperties: false` is dropped before compiling.
 */
const responseAjv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
addFormats(responseAjv);

export interface ResponseCheck<T> {
  /** The answer as T, or the problems found, each naming the field (e.g. `answer.runs[0].status`). */
  (value: unknown): { ok: true; value: T } | { ok: false; problems: string[] };
}

function allowUnknownFields(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(allowUnknownFields);
  if (typeof node !== 'object' || node === null) return node;
  return Object.fromEntries(
    Object.entries(node)
      .filter(([k, v]) => !(k === 'additionalProperties' && v === false))
      .map(([k, v]) => [k, allowUnknownFields(v)]),
  );
}

/** A wrong answer about a 10,000-run task would otherwise make an error message of megabytes. */
const MAX_PROBLEMS_LISTED = 10;

function firstProblems(problems: string[]): string[] {
  if (problems.length <= MAX_PROBLEMS_LISTED) return problems;
  return [...problems.slice(0, MAX_PROBLEMS_LISTED), `and ${problems.length - MAX_PROBLEMS_LISTED} more`];
}

export function responseCheck<T>(schema: object): ResponseCheck<T> {
  const validate = responseAjv.compile(allowUnknownFields(schema) as object);
  return (value) =>
    validate(value)
      ? { ok: true, value: value as T }
      : { ok: false, problems: firstProblems(describeErrors(validate.errors ?? [], 'answer')) };
}
