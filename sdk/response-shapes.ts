/**
 * Minimal checks that the registry's answers have the shape the SDK relies on, so that a wrong
 * URL or an incompatible server gives one clear PhtResponseError instead of a TypeError somewhere
 * in the caller's code. Extra fields pass through untouched (newer registries may add some).
 */
import { RUN_STATES, TASK_STATUSES } from '../shared/run-state.js';
import type { ResultFile, RunDetail, SiteInfo, Task, TaskList, TaskWaitResult } from '../shared/types.js';
import { PhtResponseError } from './errors.js';
import { resultFilePathProblem, SITE_NAME_PATTERN } from '../shared/names.js';

const SITE_NAME = new RegExp(SITE_NAME_PATTERN);

/** Which request an answer belongs to, for the error message. */
export interface Origin {
  method: string;
  path: string;
}

type Json = Record<string, unknown>;

function fail(origin: Origin, problem: string): never {
  throw new PhtResponseError(
    `unexpected answer from the registry to ${origin.method} ${origin.path}: ${problem}`,
    origin.method,
    origin.path,
  );
}

function object(v: unknown, origin: Origin, what: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(origin, `${what} is not an object`);
  return v as Json;
}

function array(v: unknown, origin: Origin, what: string): unknown[] {
  if (!Array.isArray(v)) fail(origin, `${what} is not a list`);
  return v;
}

function id(o: Json, key: string, origin: Origin, what: string): void {
  if (!Number.isInteger(o[key]) || (o[key] as number) < 1) fail(origin, `${what}.${key} is not an id`);
}

function string(o: Json, key: string, origin: Origin, what: string): void {
  if (typeof o[key] !== 'string') fail(origin, `${what}.${key} is not a string`);
}

function count(o: Json, key: string, origin: Origin, what: string): void {
  if (!Number.isInteger(o[key]) || (o[key] as number) < 0) fail(origin, `${what}.${key} is not a count`);
}

function oneOf(o: Json, key: string, allowed: readonly string[], origin: Origin, what: string): void {
  if (!allowed.includes(o[key] as string))
    fail(origin, `${what}.${key} is ${JSON.stringify(o[key])}, not one of ${allowed.join(', ')}`);
}

/**
 * Site and file names end up in paths and on terminals: a hostile or broken registry must not be
 * able to send "../../x", an absolute path or control characters through them.
 */
function siteName(o: Json, key: string, origin: Origin, what: string): void {
  string(o, key, origin, what);
  if (!SITE_NAME.test(o[key] as string))
    fail(origin, `${what}.${key} is not a valid site name: ${JSON.stringify((o[key] as string).slice(0, 80))}`);
}

function checkRun(v: unknown, origin: Origin, what: string): RunDetail {
  const o = object(v, origin, what);
  id(o, 'id', origin, what);
  siteName(o, 'site', origin, what);
  oneOf(o, 'status', RUN_STATES, origin, what);
  return o as unknown as RunDetail;
}

export function asRun(v: unknown, origin: Origin): RunDetail {
  const run = checkRun(v, origin, 'run');
  id(run as unknown as Json, 'taskId', origin, 'run');
  count(run as unknown as Json, 'logBytes', origin, 'run');
  return run;
}

function checkTask(v: unknown, origin: Origin, what: string): Task {
  const o = object(v, origin, what);
  id(o, 'id', origin, what);
  string(o, 'image', origin, what);
  oneOf(o, 'status', TASK_STATUSES, origin, what);
  array(o.runs, origin, `${what}.runs`).forEach((run, i) => checkRun(run, origin, `${what}.runs[${i}]`));
  return o as unknown as Task;
}

export function asTask(v: unknown, origin: Origin): Task {
  return checkTask(v, origin, 'task');
}

export function asWaitResult(v: unknown, origin: Origin): TaskWaitResult {
  const task = checkTask(v, origin, 'task') as TaskWaitResult;
  if (typeof task.done !== 'boolean') fail(origin, 'task.done is not a boolean');
  return task;
}

export function asTaskList(v: unknown, origin: Origin): TaskList {
  const o = object(v, origin, 'answer');
  array(o.tasks, origin, 'tasks').forEach((t, i) => checkTask(t, origin, `tasks[${i}]`));
  for (const key of ['total', 'limit', 'offset']) count(o, key, origin, 'answer');
  return o as unknown as TaskList;
}

export function asFileList(v: unknown, origin: Origin): ResultFile[] {
  return array(v, origin, 'answer').map((f, i) => {
    const o = object(f, origin, `files[${i}]`);
    string(o, 'name', origin, `files[${i}]`);
    const problem = resultFilePathProblem(o.name as string);
    if (problem)
      fail(
        origin,
        `files[${i}].name ${JSON.stringify((o.name as string).slice(0, 80))} is not a safe file name: ${problem}`,
      );
    count(o, 'size', origin, `files[${i}]`);
    string(o, 'sha256', origin, `files[${i}]`);
    return o as unknown as ResultFile;
  });
}

export function asSiteList(v: unknown, origin: Origin): SiteInfo[] {
  return array(v, origin, 'answer').map((s, i) => {
    const o = object(s, origin, `sites[${i}]`);
    siteName(o, 'name', origin, `sites[${i}]`);
    if (typeof o.enabled !== 'boolean') fail(origin, `sites[${i}].enabled is not a boolean`);
    return o as unknown as SiteInfo;
  });
}

export interface Me {
  name: string;
  kind: 'user' | 'site';
  role: string | null;
}

export function asMe(v: unknown, origin: Origin): Me {
  const o = object(v, origin, 'answer');
  string(o, 'name', origin, 'answer');
  string(o, 'kind', origin, 'answer');
  return o as unknown as Me;
}
