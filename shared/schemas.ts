/**
 * JSON schemas of every request body and query the REST API accepts. The registry validates with
 * them; the OpenAPI document embeds them; the SDK's types mirror them (shared/types.ts).
 */
import { IMAGE_REFERENCE_MAX_LENGTH, IMAGE_REFERENCE_PATTERN, SITE_NAME_PATTERN } from './names.js';
import type { CreateTaskRequest, FinishReport, LogAppend, ProgressReport } from './types.js';
import { PROJECT_NAME_PATTERN } from './governance.js';
import { compile } from './validation.js';
import { TASK_STATUSES } from './run-state.js';

export const LIMITS = {
  taskNameLength: 200,
  reasonLength: 4000,
  progressMessageLength: 1000,
  /** One log append; the run's total log is capped separately by the registry. */
  logAppendBytes: 256 * 1024,
  sitesPerTask: 10_000,
  maxWaitSeconds: 60,
  maxPageSize: 500,
} as const;

const imageReference = {
  type: 'string',
  minLength: 1,
  maxLength: IMAGE_REFERENCE_MAX_LENGTH,
  pattern: IMAGE_REFERENCE_PATTERN,
} as const;

const siteName = { type: 'string', pattern: SITE_NAME_PATTERN } as const;

export const createTaskSchema = {
  $id: 'CreateTaskRequest',
  type: 'object',
  additionalProperties: false,
  required: ['image'],
  properties: {
    image: imageReference,
    config: { description: 'Any JSON value; opaque to the registry and handed to the container as a file.' },
    sites: { type: 'array', minItems: 1, maxItems: LIMITS.sitesPerTask, uniqueItems: true, items: siteName },
    name: { type: 'string', minLength: 1, maxLength: LIMITS.taskNameLength },
    project: { type: 'string', pattern: PROJECT_NAME_PATTERN },
  },
} as const;

export const progressReportSchema = {
  $id: 'ProgressReport',
  type: 'object',
  additionalProperties: false,
  required: ['current'],
  properties: {
    current: { type: 'number', minimum: 0, maximum: 1e15 },
    total: { type: ['number', 'null'], minimum: 0, maximum: 1e15 },
    message: { type: ['string', 'null'], maxLength: LIMITS.progressMessageLength },
  },
} as const;

export const logAppendSchema = {
  $id: 'LogAppend',
  type: 'object',
  additionalProperties: false,
  required: ['text'],
  properties: { text: { type: 'string', maxLength: LIMITS.logAppendBytes } },
} as const;

export const finishReportSchema = {
  $id: 'FinishReport',
  type: 'object',
  additionalProperties: false,
  required: ['state'],
  properties: {
    state: { enum: ['completed', 'failed', 'rejected', 'timed_out', 'cancelled'] },
    exitCode: { type: ['integer', 'null'], minimum: -2147483648, maximum: 2147483647 },
    reason: { type: ['string', 'null'], maxLength: LIMITS.reasonLength },
    digest: {
      type: ['string', 'null'],
      maxLength: IMAGE_REFERENCE_MAX_LENGTH + 80,
      pattern: '^[^\\s]*@?sha256:[a-f0-9]{64}$',
    },
    durationMs: { type: ['integer', 'null'], minimum: 0 },
  },
} as const;

/** Empty bodies on action routes (start, cancel) may be omitted or `{}`. */
export const emptyBodySchema = {
  $id: 'EmptyBody',
  type: 'object',
  additionalProperties: false,
  properties: {},
} as const;

export const taskListQuerySchema = {
  $id: 'TaskListQuery',
  type: 'object',
  additionalProperties: false,
  properties: {
    status: { enum: [...TASK_STATUSES] },
    limit: { type: 'string', pattern: '^[0-9]{1,4}$' },
    offset: { type: 'string', pattern: '^[0-9]{1,12}$' },
  },
} as const;

export const waitQuerySchema = {
  $id: 'WaitQuery',
  type: 'object',
  additionalProperties: false,
  properties: {
    wait: { type: 'string', pattern: '^[0-9]{1,3}(\\.[0-9]{1,3})?$' },
    timeout: { type: 'string', pattern: '^[0-9]{1,3}(\\.[0-9]{1,3})?$' },
  },
} as const;

export const emptyQuerySchema = {
  $id: 'EmptyQuery',
  type: 'object',
  additionalProperties: false,
  properties: {},
} as const;

export const validateCreateTask = compile<CreateTaskRequest>(createTaskSchema, 'body');
export const validateProgressReport = compile<ProgressReport>(progressReportSchema, 'body');
export const validateLogAppend = compile<LogAppend>(logAppendSchema, 'body');
export const validateFinishReport = compile<FinishReport>(finishReportSchema, 'body');
export const validateEmptyBody = compile<Record<string, never>>(emptyBodySchema, 'body');
export const validateTaskListQuery = compile<{ status?: string; limit?: string; offset?: string }>(
  taskListQuerySchema,
  'query',
);
export const validateWaitQuery = compile<{ wait?: string; timeout?: string }>(waitQuerySchema, 'query');
export const validateEmptyQuery = compile<Record<string, never>>(emptyQuerySchema, 'query');
