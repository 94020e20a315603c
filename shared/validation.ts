import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';

/** One Ajv instance for the whole program: schemas compile once, at module load. */
export const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
addFormats(ajv);

export interface Validator<T> {
  (value: unknown): value is T;
  readonly schema: object;
  /** Human-readable problems of the last failed call, each naming the offending field. */
  problems(): string[];
}

export function compile<T>(schema: object, subject: string): Validator<T> {
  const fn: ValidateFunction = ajv.compile(schema);
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
