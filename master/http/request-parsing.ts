import type { NextFunction, Request, Response } from 'express';
import { ERROR_CODES } from '../../shared/error-codes.js';
import { parseId, resultFilePathProblem } from '../../shared/names.js';
import type { Validator } from '../../shared/validation.js';
import { BadRequestError, RegistryError } from '../errors.js';

/** A numeric id from the URL, or a 400 that names the parameter. */
export function idParam(req: Request, name: string): number {
  const raw = req.params[name];
  const id = typeof raw === 'string' ? parseId(raw) : null;
  if (id === null)
    throw new BadRequestError(
      `${name} must be a positive integer, got "${String(raw).slice(0, 40)}"`,
      ERROR_CODES.badRequest,
    );
  return id;
}

/**
 * The JSON body, validated. Action routes accept no body at all as `{}`; a body that is not
 * declared as JSON is refused rather than guessed at.
 */
export function jsonBody<T>(req: Request, validate: Validator<T>, allowEmpty = false): T {
  let body: unknown = req.body;
  if (body === undefined) {
    const length = Number(req.headers['content-length'] ?? 0);
    const chunked = req.headers['transfer-encoding'] !== undefined;
    if (length > 0 || chunked) {
      throw new RegistryError(
        415,
        ERROR_CODES.unsupportedMediaType,
        'request body must be JSON (Content-Type: application/json)',
      );
    }
    if (!allowEmpty) throw new BadRequestError('request body is missing: send a JSON object');
    body = {};
  }
  if (!validate(body))
    throw new BadRequestError(validate.problems().join('; '), ERROR_CODES.validation, validate.problems());
  return body;
}

/** The query, converted to its schema's types with defaults filled in, or a 400 naming each problem. */
export function query<T>(req: Request, validate: Validator<T>): T {
  const q: unknown = { ...(req.query as object) };
  if (!validate(q))
    throw new BadRequestError(validate.problems().join('; '), ERROR_CODES.validation, validate.problems());
  return q;
}

/** Express 5 hands a `*name` wildcard over as its segments. */
export function filePathParam(req: Request): string {
  const raw = (req.params as Record<string, unknown>).name;
  const name = Array.isArray(raw) ? raw.join('/') : String(raw ?? '');
  const problem = resultFilePathProblem(name);
  if (problem) throw new BadRequestError(`invalid file name: ${problem}`, ERROR_CODES.badRequest);
  return name;
}

/** How deep a JSON request body may nest (a task config of real use is a few levels deep). */
export const MAX_JSON_DEPTH = 64;

/**
 * Refuses a parsed JSON body nested deeper than `max` levels with 400 nesting_too_deep. Measured
 * without recursion: a config nested 100,000 levels deep overflowed the stack of the code that
 * validated and serialised it, which answered 500.
 */
export function limitJsonDepth(max: number = MAX_JSON_DEPTH) {
  return (req: Request, _res: Response, next: NextFunction): void => {
    if (jsonDepth(req.body, max) > max)
      throw new BadRequestError(`request body is nested deeper than ${max} levels`, ERROR_CODES.nestingTooDeep);
    next();
  };
}

/** The nesting depth of a parsed JSON value, counting no further than `max + 1`. */
export function jsonDepth(value: unknown, max: number): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    const here = depth + 1;
    if (here > deepest) deepest = here;
    if (deepest > max) return deepest;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, here]);
  }
  return deepest;
}
