import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';

/** One Ajv instance for bodies: schemas compile once, at module load. */
export const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
addFormats(ajv);

/** Queries: defaults are filled in, so that one schema states both the bounds and the defaults. */
const queryAjv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true, useDefaults: true });
addFormats(queryAjv);

/**
 * Plain decimals only. Ajv's own type coercion would also take "1e1", "0x10", " 5" and even
 * "Infinity" (which then passed `maximum`), so numbers are converted here and anything else is left
 * a string for the schema to refuse.
 */
const DECIMAL = /^-?[0-9]{1,15}(\.[0-9]{1,6})?$/;

export interface Validator<T> {
  (value: unknown): value is T;
  readonly schema: object;
  /** Human-readable problems of the last failed call, each naming the offending field. */
  problems(): string[];
}

function wrap<T>(fn: ValidateFunction, schema: object, subject: string): Validator<T> {
  let last: ErrorObject[] = [];
  const validator = ((value: unknown): value is T => {
    const ok = fn(value) as boolean;
    last = ok ? [] : (fn.errors ?? []);
    return ok;
  }) as Validator<T>;
  Object.defineProperty(validator, 'schema', { value: schema });
  validator.problems = () => describeErrors(last, subject);
  return validator;
}

export function compile<T>(schema: object, subject: string): Validator<T> {
  return wrap<T>(ajv.compile(schema), schema, subject);
}

/**
 * A validator of a query object (values are strings): it converts the values of numeric fields
 * and fills in defaults, in place.
 */
export function compileQuery<T>(schema: { properties: Record<string, object> }): Validator<T> {
  const numeric = Object.entries(schema.properties)
    .filter(([, p]) => ['number', 'integer'].includes(String((p as { type?: unknown }).type)))
    .map(([name]) => name);
  const inner = wrap<T>(queryAjv.compile(schema), schema, 'query');
  const validator = ((value: unknown): value is T => {
    if (typeof value === 'object' && value !== null) {
      const q = value as Record<string, unknown>;
      for (const name of numeric) {
        const raw = q[name];
        if (typeof raw === 'string' && DECIMAL.test(raw)) q[name] = Number(raw);
      }
    }
    return inner(value);
  }) as Validator<T>;
  Object.defineProperty(validator, 'schema', { value: schema });
  validator.problems = inner.problems;
  return validator;
}

/** Turns Ajv errors into one sentence per problem, e.g. `body.sites[1]: must match pattern ...`. */
export function describeErrors(errors: readonly ErrorObject[], subject: string): string[] {
  const out = new Set<string>();
  for (const e of errors) {
    const where = subject + pointerToPath(e.instancePath);
    if (e.keyword === 'additionalProperties') {
      out.add(`${where}: unknown field "${String((e.params as { additionalProperty: string }).additionalProperty)}"`);
    } else if (e.keyword === 'required') {
      out.add(
        `${where}: missing required field "${String((e.params as { missingProperty: string }).missingProperty)}"`,
      );
    } else if (e.keyword === 'enum') {
      out.add(
        `${where}: must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`,
      );
    } else if (e.keyword === 'if') {
      continue;
    } else {
      out.add(`${where}: ${e.message ?? 'is invalid'}`);
    }
  }
  return [...out];
}

function pointerToPath(pointer: string): string {
  if (!pointer) return '';
  return pointer
    .split('/')
    .slice(1)
    .map((seg) => seg.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((seg) => (/^[0-9]+$/.test(seg) ? `[${seg}]` : `.${seg}`))
    .join('');
}
