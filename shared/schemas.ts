/**
 * The wire of the REST API (/api/v1), defined once: a JSON schema for every request body, query and
 * response. Everything else is derived from these objects:
 * - the TypeScript types (shared/types.ts, via json-schema-to-ts's FromSchema),
 * - the registry's validation of bodies and queries (the validators at the end of this file),
 * - the SDK's and the site client's response checks (shared/response-checks.ts),
 * - the OpenAPI document the registry serves (master/http/openapi.ts), whose components are the
 *   WIRE_SCHEMAS below under the same names.
 *
 * How to add a route:
 * 1. Define its body, query and answer schemas here, `as const`, with `additionalProperties: false`
 *    and every always-present field in `required`; add each to WIRE_SCHEMAS. Reuse a schema object
 *    by reference (not a copy): the document then refers to it by name.
 * 2. Export its type from shared/types.ts as `FromSchema<typeof yourSchema>`.
 * 3. Validate the body with `jsonBody(req, validateX)` and the query with `query(req, validateXQuery)`
 *    (master/http/request-parsing.ts), from a `compile`/`compileQuery` validator exported here.
 * 4. Describe the route in ROUTES of master/http/openapi.ts: who may call it (researcher, admin,
 *    site, anyone), its query and body, and every status of its own, each with its schema (400,
 *    401, 403, 404 and 415 are added from the route's kind); a new path parameter goes in
 *    PATH_PARAMS there. SDK and client check answers with `responseCheck(schema)`
 *    (shared/response-checks.ts).
 * 5. Add its requests to test/master/contract.test.ts: it fails until every documented status of
 *    every route has been seen, and checks each answer against the served document. Add its row
 *    to the README's API table (test/master/openapi.test.ts compares the two).
 */
import type { FromSchema } from 'json-schema-to-ts';
import { ERROR_CODES } from './error-codes.js';
import {
  imageSignatureListSchema,
  imageSignatureSchema,
  postedBySchema,
  postImageSignatureSchema,
  PROJECT_NAME_PATTERN,
  storedSignatureSchema,
} from './governance.js';
import {
  IMAGE_REFERENCE_MAX_LENGTH,
  IMAGE_REFERENCE_PATTERN,
  MAX_FILE_PATH_LENGTH,
  RESULT_FILE_PATH_PATTERN,
  SITE_NAME_PATTERN,
  USER_NAME_PATTERN,
} from './names.js';
import { FINISH_STATES, RUN_STATES, TASK_STATUSES } from './run-state.js';
import type { CreateTaskRequest, EmptyBody, FinishReport, LogAppend, ProgressReport } from './types.js';
import { compile, compileQuery } from './validation.js';
import { keyRecordSchema, publicKeySchema, registerKeySchema, rotationStatementSchema } from './key-schemas.js';

export const LIMITS = {
  taskNameLength: 200,
  reasonLength: 4000,
  progressMessageLength: 1000,
  /** One log append, in UTF-8 bytes; the run's total log is capped separately by the registry. */
  logAppendBytes: 256 * 1024,
  sitesPerTask: 10_000,
  /** Longest long poll (`timeout` of a task wait, `wait` of a site's claim), in seconds. */
  maxWaitSeconds: 60,
  defaultPageSize: 50,
  maxPageSize: 500,
  maxOffset: 999_999_999_999,
} as const;

// ---------------------------------------------------------------------------------------------
// Building blocks

const id = { type: 'integer', minimum: 1 } as const;
const count = { type: 'integer', minimum: 0 } as const;
const timestamp = { type: 'string', format: 'date-time' } as const;
const nullableTimestamp = { type: ['string', 'null'], format: 'date-time' } as const;

const imageReference = {
  type: 'string',
  minLength: 1,
  maxLength: IMAGE_REFERENCE_MAX_LENGTH,
  pattern: IMAGE_REFERENCE_PATTERN,
} as const;

const siteName = { type: 'string', pattern: SITE_NAME_PATTERN } as const;

export const runStateSchema = { type: 'string', enum: RUN_STATES } as const;
export const taskStatusSchema = { type: 'string', enum: TASK_STATUSES } as const;

// ---------------------------------------------------------------------------------------------
// Request bodies

export const createTaskSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['image'],
  properties: {
    image: imageReference,
    config: { description: 'Any JSON value; opaque to the registry and handed to the container as a file.' },
    sites: {
      description: 'Target site names; omitted means every enabled site.',
      type: 'array',
      minItems: 1,
      maxItems: LIMITS.sitesPerTask,
      uniqueItems: true,
      items: siteName,
    },
    name: { type: 'string', minLength: 1, maxLength: LIMITS.taskNameLength },
    project: {
      description: "The project the task runs under; omitted: the researcher's only project (when projects exist).",
      type: 'string',
      pattern: PROJECT_NAME_PATTERN,
    },
  },
} as const;

export const progressReportSchema = {
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
  type: 'object',
  additionalProperties: false,
  required: ['text'],
  properties: {
    text: {
      type: 'string',
      // A character is at least one UTF-8 byte: this bound is a cheap first cut, the byte count is
      // checked by the route (LIMITS.logAppendBytes).
      maxLength: LIMITS.logAppendBytes,
      description: `At most ${LIMITS.logAppendBytes} bytes of UTF-8.`,
    },
  },
} as const;

export const finishReportSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['state'],
  properties: {
    state: { type: 'string', enum: FINISH_STATES },
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
  type: 'object',
  additionalProperties: false,
  properties: {},
} as const;

// ---------------------------------------------------------------------------------------------
// Queries (values arrive as strings and are converted to the schema's type before checking)

export const taskListQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    status: taskStatusSchema,
    limit: { type: 'integer', minimum: 1, maximum: LIMITS.maxPageSize, default: LIMITS.defaultPageSize },
    offset: { type: 'integer', minimum: 0, maximum: LIMITS.maxOffset, default: 0 },
  },
} as const;

export const taskWaitQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    timeout: {
      description: 'Seconds to wait for the task to end before answering with done=false.',
      type: 'number',
      minimum: 0,
      maximum: LIMITS.maxWaitSeconds,
      default: 30,
    },
  },
} as const;

export const claimQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    wait: {
      description:
        'Longest time in seconds to wait for a run to be queued before answering 204. A maximum: with nothing queued the registry answers after between 0.8 and 1 times this, at random, so that sites that parked together do not all poll again together.',
      type: 'number',
      minimum: 0,
      maximum: LIMITS.maxWaitSeconds,
      default: 0,
    },
  },
} as const;

export const emptyQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {},
} as const;

// ---------------------------------------------------------------------------------------------
// Responses

export const apiErrorSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['code', 'message'],
  properties: {
    code: { type: 'string', enum: Object.values(ERROR_CODES) },
    message: { type: 'string' },
    details: { description: 'Structured detail, e.g. every validation problem or the unknown sites.' },
  },
} as const;

export const runProgressSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['current', 'total', 'message'],
  properties: {
    current: { type: 'number' },
    total: { type: ['number', 'null'] },
    message: { type: ['string', 'null'] },
  },
} as const;

export const runDetailSchema = {
  type: 'object',
  additionalProperties: false,
  required: [
    'id',
    'taskId',
    'site',
    'status',
    'attempt',
    'exitCode',
    'reason',
    'digest',
    'durationMs',
    'progress',
    'cancelRequested',
    'createdAt',
    'startedAt',
    'finishedAt',
    'logBytes',
  ],
  properties: {
    id,
    taskId: id,
    site: siteName,
    status: runStateSchema,
    attempt: count,
    exitCode: { type: ['integer', 'null'] },
    reason: { type: ['string', 'null'] },
    digest: { type: ['string', 'null'] },
    durationMs: { type: ['integer', 'null'] },
    progress: { anyOf: [{ type: 'null' }, runProgressSchema] },
    cancelRequested: { type: 'boolean' },
    createdAt: timestamp,
    startedAt: nullableTimestamp,
    finishedAt: nullableTimestamp,
    logBytes: count,
    // Not required: a registry from before retention does not send them, and the SDK must still read
    // its answers (a consortium upgrades its registry and its researchers' SDKs at different times).
    logExpiredAt: {
      ...nullableTimestamp,
      description: 'When retention removed the log (reading it then answers 410 log_expired); null while it is kept.',
    },
    filesExpiredAt: {
      ...nullableTimestamp,
      description:
        'When retention removed the result files (reading them then answers 410 files_expired); null while they are kept.',
    },
  },
} as const;

export const taskSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'name', 'image', 'owner', 'status', 'createdAt', 'runs'],
  properties: {
    id,
    name: { type: ['string', 'null'] },
    image: { type: 'string' },
    owner: { type: 'string' },
    status: taskStatusSchema,
    createdAt: timestamp,
    runs: { type: 'array', items: runDetailSchema },
  },
} as const;

export const taskListSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['tasks', 'total', 'limit', 'offset'],
  properties: {
    tasks: { type: 'array', items: taskSchema },
    total: count,
    limit: count,
    offset: count,
  },
} as const;

export const taskWaitResultSchema = {
  ...taskSchema,
  required: [...taskSchema.required, 'done'],
  properties: {
    ...taskSchema.properties,
    done: { type: 'boolean', description: 'True when every run is final; false when the wait timed out first.' },
  },
} as const;

export const taskDeletedSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'runs', 'files'],
  properties: {
    id,
    runs: { ...count, description: 'Runs deleted with the task (with their logs).' },
    files: { ...count, description: 'Result files deleted with the task.' },
  },
} as const;

export const resultFileSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'size', 'sha256'],
  properties: {
    name: { type: 'string', maxLength: MAX_FILE_PATH_LENGTH, pattern: RESULT_FILE_PATH_PATTERN },
    size: count,
    sha256: { type: 'string', pattern: '^[a-f0-9]{64}$' },
  },
} as const;

export const resultFileListSchema = { type: 'array', items: resultFileSchema } as const;

export const siteInfoSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'enabled', 'lastSeen'],
  properties: {
    name: siteName,
    enabled: { type: 'boolean' },
    lastSeen: nullableTimestamp,
  },
} as const;

export const siteListSchema = { type: 'array', items: siteInfoSchema } as const;

export const userMeSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'kind', 'role'],
  properties: {
    name: { type: 'string' },
    kind: { type: 'string', const: 'user' },
    role: { type: 'string', enum: ['researcher', 'admin'] },
  },
} as const;

export const siteMeSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'kind'],
  properties: {
    name: { type: 'string' },
    kind: { type: 'string', const: 'site' },
  },
} as const;

export const runAssignmentSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'taskId', 'image', 'config', 'attempt'],
  properties: {
    id,
    taskId: id,
    image: { type: 'string' },
    config: { description: "The task's config as posted." },
    attempt: id,
    postedBy: postedBySchema,
  },
} as const;

export const siteRunViewSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'taskId', 'status', 'cancelRequested'],
  properties: {
    id,
    taskId: id,
    status: runStateSchema,
    cancelRequested: { type: 'boolean' },
  },
} as const;

export const siteRunListSchema = { type: 'array', items: siteRunViewSchema } as const;

// ---------------------------------------------------------------------------------------------
// The dashboard's overviews (researchers and admins) and the admin routes

export const taskSummaryQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    status: taskStatusSchema,
    site: { ...siteName, description: 'Only tasks with a run at this site.' },
    q: {
      type: 'string',
      minLength: 1,
      maxLength: LIMITS.taskNameLength,
      description: 'Only tasks whose name or image contains this text.',
    },
    limit: { type: 'integer', minimum: 1, maximum: LIMITS.maxPageSize, default: LIMITS.defaultPageSize },
    offset: { type: 'integer', minimum: 0, maximum: LIMITS.maxOffset, default: 0 },
  },
} as const;

export const runCountsSchema = {
  description: 'Runs per state; a state with no run is left out.',
  type: 'object',
  additionalProperties: false,
  properties: {
    queued: count,
    assigned: count,
    running: count,
    awaiting_approval: count,
    completed: count,
    failed: count,
    rejected: count,
    cancelled: count,
    timed_out: count,
  },
} as const;

export const taskSummarySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'name', 'image', 'owner', 'status', 'createdAt', 'runCounts', 'runTotal'],
  properties: {
    id,
    name: { type: ['string', 'null'] },
    image: { type: 'string' },
    owner: { type: 'string' },
    status: taskStatusSchema,
    createdAt: timestamp,
    runCounts: runCountsSchema,
    runTotal: count,
  },
} as const;

export const taskSummaryListSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['tasks', 'total', 'limit', 'offset'],
  properties: {
    tasks: { type: 'array', items: taskSummarySchema },
    total: count,
    limit: count,
    offset: count,
  },
} as const;

export const siteActivitySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'organization', 'enabled', 'lastSeen', 'online', 'runs'],
  properties: {
    name: { type: 'string' },
    organization: {
      type: ['string', 'null'],
      description: 'The organization the site belongs to (node master set-org); null when none.',
    },
    enabled: { type: 'boolean' },
    lastSeen: nullableTimestamp,
    online: { type: 'boolean', description: 'Enabled and seen by the registry within the last 90 seconds.' },
    runs: {
      description: "Run counts (a researcher's: of their own tasks). failed includes rejected and timed out.",
      type: 'object',
      additionalProperties: false,
      required: ['completed', 'failed', 'current', 'queued'],
      properties: { completed: count, failed: count, current: count, queued: count },
    },
  },
} as const;

export const siteActivityQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    q: {
      type: 'string',
      minLength: 1,
      maxLength: LIMITS.taskNameLength,
      description: 'Only sites whose name or organization contains this text (ignoring case).',
    },
    limit: { type: 'integer', minimum: 1, maximum: LIMITS.maxPageSize, default: LIMITS.defaultPageSize },
    offset: { type: 'integer', minimum: 0, maximum: LIMITS.maxOffset, default: 0 },
  },
} as const;

/** One page of sites by name, with how many match the filter and how many of those are online. */
export const siteActivityListSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['sites', 'total', 'online', 'limit', 'offset'],
  properties: {
    sites: { type: 'array', items: siteActivitySchema },
    total: { ...count, description: 'Sites matching the filter, on every page.' },
    online: { ...count, description: 'Of those, the sites online now.' },
    limit: count,
    offset: count,
  },
} as const;

export const createSiteSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: { name: siteName },
} as const;

export const createUserSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'role'],
  properties: {
    name: { type: 'string', pattern: USER_NAME_PATTERN },
    role: { type: 'string', enum: ['researcher', 'admin'] },
  },
} as const;

export const createdSiteSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'apiKey'],
  properties: {
    name: { type: 'string' },
    apiKey: { type: 'string', description: 'Shown once: the registry keeps only its hash.' },
  },
} as const;

export const createdUserSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'role', 'token'],
  properties: {
    name: { type: 'string' },
    role: { type: 'string', enum: ['researcher', 'admin'] },
    token: { type: 'string', description: 'Shown once: the registry keeps only its hash.' },
  },
} as const;

export const siteEnabledSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'enabled'],
  properties: {
    name: { type: 'string' },
    enabled: { type: 'boolean' },
    apiKey: {
      type: 'string',
      description: 'When a disabled site is enabled: its new key, shown once (the old one stays revoked).',
    },
  },
} as const;

export const userInfoSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'role', 'enabled', 'createdAt', 'lastSeen'],
  properties: {
    name: { type: 'string' },
    role: { type: 'string', enum: ['researcher', 'admin'] },
    enabled: { type: 'boolean' },
    createdAt: timestamp,
    lastSeen: nullableTimestamp,
  },
} as const;

export const userListSchema = { type: 'array', items: userInfoSchema } as const;

/**
 * The named schemas: OpenAPI components under these names. Every schema object that appears here
 * is written as a `$ref` to its name wherever it is reused in another schema.
 */
export const WIRE_SCHEMAS = {
  Error: apiErrorSchema,
  RunState: runStateSchema,
  TaskStatus: taskStatusSchema,
  CreateTaskRequest: createTaskSchema,
  ProgressReport: progressReportSchema,
  LogAppend: logAppendSchema,
  FinishReport: finishReportSchema,
  EmptyBody: emptyBodySchema,
  RunProgress: runProgressSchema,
  Run: runDetailSchema,
  Task: taskSchema,
  TaskList: taskListSchema,
  TaskWaitResult: taskWaitResultSchema,
  TaskDeleted: taskDeletedSchema,
  ResultFile: resultFileSchema,
  ResultFileList: resultFileListSchema,
  Site: siteInfoSchema,
  SiteList: siteListSchema,
  UserMe: userMeSchema,
  SiteMe: siteMeSchema,
  RunAssignment: runAssignmentSchema,
  SiteRunView: siteRunViewSchema,
  SiteRunList: siteRunListSchema,
  TaskSummary: taskSummarySchema,
  TaskSummaryList: taskSummaryListSchema,
  SiteActivity: siteActivitySchema,
  SiteActivityList: siteActivityListSchema,
  CreateSiteRequest: createSiteSchema,
  CreateUserRequest: createUserSchema,
  CreatedSite: createdSiteSchema,
  CreatedUser: createdUserSchema,
  SiteEnabled: siteEnabledSchema,
  UserInfo: userInfoSchema,
  UserList: userListSchema,
  PostedBy: postedBySchema,
  ImageSignature: imageSignatureSchema,
  ImageSignatureList: imageSignatureListSchema,
  PostImageSignature: postImageSignatureSchema,
  StoredImageSignature: storedSignatureSchema,
  PublicKey: publicKeySchema,
  KeyRotation: rotationStatementSchema,
  RegisterKeyRequest: registerKeySchema,
  KeyRecord: keyRecordSchema,
} as const;

// ---------------------------------------------------------------------------------------------
// The registry's validators of what it receives

export const validateCreateTask = compile<CreateTaskRequest>(createTaskSchema, 'body');
export const validateProgressReport = compile<ProgressReport>(progressReportSchema, 'body');
export const validateLogAppend = compile<LogAppend>(logAppendSchema, 'body');
export const validateFinishReport = compile<FinishReport>(finishReportSchema, 'body');
export const validateEmptyBody = compile<EmptyBody>(emptyBodySchema, 'body');
export const validateTaskListQuery = compileQuery<FromSchema<typeof taskListQuerySchema>>(taskListQuerySchema);
export const validateTaskWaitQuery = compileQuery<FromSchema<typeof taskWaitQuerySchema>>(taskWaitQuerySchema);
export const validateClaimQuery = compileQuery<FromSchema<typeof claimQuerySchema>>(claimQuerySchema);
export const validateEmptyQuery = compileQuery<Record<string, never>>(emptyQuerySchema);
export const validateTaskSummaryQuery = compileQuery<FromSchema<typeof taskSummaryQuerySchema>>(taskSummaryQuerySchema);
export const validateSiteActivityQuery =
  compileQuery<FromSchema<typeof siteActivityQuerySchema>>(siteActivityQuerySchema);
export const validateCreateSite = compile<FromSchema<typeof createSiteSchema>>(createSiteSchema, 'body');
export const validateCreateUser = compile<FromSchema<typeof createUserSchema>>(createUserSchema, 'body');
