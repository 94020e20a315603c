/**
 * Checks that the registry's answers have the shape the SDK relies on, so that a wrong URL or an
 * incompatible server gives one clear PhtResponseError instead of a TypeError somewhere in the
 * caller's code. The checks are compiled from the wire schemas (shared/schemas.ts), the same ones
 * the registry's OpenAPI document is built from; fields the SDK does not know pass through.
 */
import { responseCheck, type ResponseCheck } from '../shared/response-checks.js';
import {
  resultFileListSchema,
  runDetailSchema,
  siteListSchema,
  taskDeletedSchema,
  taskListSchema,
  taskSchema,
  taskWaitResultSchema,
  userMeSchema,
} from '../shared/schemas.js';
import type {
  ResultFile,
  RunDetail,
  SiteInfo,
  Task,
  TaskDeleted,
  TaskList,
  TaskWaitResult,
  UserMe,
} from '../shared/types.js';
import { PhtResponseError } from './errors.js';

/** Which request an answer belongs to, for the error message. */
export interface Origin {
  method: string;
  path: string;
}

/** Who a token belongs to. */
export type Me = UserMe;

function checker<T>(schema: object): (v: unknown, origin: Origin) => T {
  const check: ResponseCheck<T> = responseCheck<T>(schema);
  return (v, origin) => {
    const result = check(v);
    if (result.ok) return result.value;
    throw new PhtResponseError(
      `unexpected answer from the registry to ${origin.method} ${origin.path}: ${result.problems.join('; ')}`,
      origin.method,
      origin.path,
    );
  };
}

export const asRun = checker<RunDetail>(runDetailSchema);
export const asTask = checker<Task>(taskSchema);
export const asWaitResult = checker<TaskWaitResult>(taskWaitResultSchema);
export const asTaskList = checker<TaskList>(taskListSchema);
export const asTaskDeleted = checker<TaskDeleted>(taskDeletedSchema);
export const asFileList = checker<ResultFile[]>(resultFileListSchema);
export const asSiteList = checker<SiteInfo[]>(siteListSchema);
export const asMe = checker<Me>(userMeSchema);
