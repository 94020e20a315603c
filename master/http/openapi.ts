import { createTaskSchema, finishReportSchema, logAppendSchema, progressReportSchema } from '../../shared/schemas.js';
import { RUN_STATES, TASK_STATUSES } from '../../shared/run-state.js';
import { governanceOpenApiPaths } from './governance-routes.js';

const strip = ({ $id: _id, ...schema }: { $id: string } & Record<string, unknown>) => schema;

const json = (ref: string) => ({
  content: { 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } },
});
const ok = (description: string, ref?: string) => ({ description, ...(ref ? json(ref) : {}) });
const errors = {
  '400': ok('Invalid input', 'Error'),
  '401': ok('Missing or unknown key', 'Error'),
  '403': ok('Wrong kind of principal, or disabled', 'Error'),
  '404': ok('Not found (or not yours)', 'Error'),
};
const idParam = (name: string) => ({ name, in: 'path', required: true, schema: { type: 'integer', minimum: 1 } });
const fileParam = {
  name: 'name',
  in: 'path',
  required: true,
  schema: { type: 'string' },
  description: 'Path inside the output folder',
};

/** The OpenAPI 3.1 description of /api/v1, built from the same schemas the server validates with. */
export function openApiDocument(): object {
  return {
    openapi: '3.1.0',
    info: { title: 'PHT registry', version: '1', description: 'Personal Health Train registry: tasks, runs, results.' },
    servers: [{ url: '/api/v1' }],
    security: [{ bearer: [] }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Error: {
          type: 'object',
          required: ['code', 'message'],
          properties: { code: { type: 'string' }, message: { type: 'string' }, details: {} },
        },
        CreateTaskRequest: strip(createTaskSchema),
        ProgressReport: strip(progressReportSchema),
        LogAppend: strip(logAppendSchema),
        FinishReport: strip(finishReportSchema),
        RunState: { enum: [...RUN_STATES] },
        TaskStatus: { enum: [...TASK_STATUSES] },
        Run: {
          type: 'object',
          properties: {
            id: { type: 'integer' },
            taskId: { type: 'integer' },
            site: { type: 'string' },
            status: { $ref: '#/components/schemas/RunState' },
            attempt: { type: 'integer' },
            exitCode: { type: ['integer', 'null'] },
            reason: { type: ['string', 'null'] },
            digest: { type: ['string', 'null'] },
            durationMs: { type: ['integer', 'null'] },
            progress: { type: ['object', 'null'] },
            cancelRequested: { type: 'boolean' },
            createdAt: { type: 'string' },
            startedAt: { type: ['string', 'null'] },
            finishedAt: { type: ['string', 'null'] },
            logBytes: { type: 'integer' },
          },
        },
        Task: {
          type: 'object',
          properties: {
            id: { type: 'integer' },
            name: { type: ['string', 'null'] },
            image: { type: 'string' },
            owner: { type: 'string' },
            status: { $ref: '#/components/schemas/TaskStatus' },
            createdAt: { type: 'string' },
            runs: { type: 'array', items: { $ref: '#/components/schemas/Run' } },
          },
        },
        RunAssignment: {
          type: 'object',
          properties: {
            id: { type: 'integer' },
            taskId: { type: 'integer' },
            image: { type: 'string' },
            config: {},
            attempt: { type: 'integer' },
          },
        },
        SiteRunView: {
          type: 'object',
          properties: {
            id: { type: 'integer' },
            taskId: { type: 'integer' },
            status: { $ref: '#/components/schemas/RunState' },
            cancelRequested: { type: 'boolean' },
          },
        },
        ResultFile: {
          type: 'object',
          properties: { name: { type: 'string' }, size: { type: 'integer' }, sha256: { type: 'string' } },
        },
        Site: {
          type: 'object',
          properties: {
            name: { type: 'string' },
            enabled: { type: 'boolean' },
            lastSeen: { type: ['string', 'null'] },
          },
        },
        Me: {
          type: 'object',
          properties: {
            name: { type: 'string' },
            kind: { enum: ['site', 'user'] },
            role: { enum: ['researcher', 'admin'], description: 'Users only' },
          },
        },
      },
    },
    paths: {
      '/tasks': {
        post: {
          summary: 'Post a task to sites (researcher)',
          requestBody: json('CreateTaskRequest'),
          responses: {
            '201': ok('Created', 'Task'),
            '413': ok('Config too large', 'Error'),
            '422': ok('Unknown or disabled site', 'Error'),
            ...errors,
          },
        },
        get: {
          summary: 'List your tasks (admins: all)',
          parameters: [
            { name: 'status', in: 'query', schema: { $ref: '#/components/schemas/TaskStatus' } },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 500 } },
            { name: 'offset', in: 'query', schema: { type: 'integer', minimum: 0 } },
          ],
          responses: { '200': ok('Tasks'), ...errors },
        },
      },
      '/tasks/{id}': {
        get: {
          summary: 'A task with its runs',
          parameters: [idParam('id')],
          responses: { '200': ok('Task', 'Task'), ...errors },
        },
      },
      '/tasks/{id}/wait': {
        get: {
          summary: 'Long poll until every run is final (done=true) or the timeout passes (done=false)',
          parameters: [idParam('id'), { name: 'timeout', in: 'query', schema: { type: 'number', maximum: 60 } }],
          responses: { '200': ok('Task with done flag'), ...errors },
        },
      },
      '/tasks/{id}/events': {
        get: {
          summary: 'Server-sent events: the task on every change',
          parameters: [idParam('id')],
          responses: { '200': { description: 'text/event-stream' }, ...errors },
        },
      },
      '/tasks/{id}/cancel': {
        post: {
          summary: 'Cancel a task',
          parameters: [idParam('id')],
          responses: { '200': ok('Task', 'Task'), ...errors },
        },
      },
      '/runs/{id}': {
        get: { summary: 'A run', parameters: [idParam('id')], responses: { '200': ok('Run', 'Run'), ...errors } },
      },
      '/runs/{id}/log': {
        get: {
          summary: "The run's log as text",
          parameters: [idParam('id')],
          responses: { '200': { description: 'text/plain' }, ...errors },
        },
      },
      '/runs/{id}/files': {
        get: { summary: 'Result files', parameters: [idParam('id')], responses: { '200': ok('Files'), ...errors } },
      },
      '/runs/{id}/files/{name}': {
        get: {
          summary: 'Download a result file',
          parameters: [idParam('id'), fileParam],
          responses: { '200': { description: 'The bytes' }, ...errors },
        },
      },
      '/sites': { get: { summary: 'Sites', responses: { '200': ok('Sites'), ...errors } } },
      ...governanceOpenApiPaths(ok, errors),
      '/me': {
        get: {
          summary: 'Who the token belongs to (researcher or admin)',
          responses: { '200': ok('Principal', 'Me'), ...errors },
        },
      },
      '/openapi.json': {
        get: { summary: 'This document', security: [], responses: { '200': { description: 'OpenAPI 3.1' } } },
      },
      '/site/me': {
        get: { summary: 'Which site the key belongs to', responses: { '200': ok('Site principal', 'Me'), ...errors } },
      },
      '/site/runs/next': {
        get: {
          summary: "Claim the site's next queued run (long poll with wait)",
          parameters: [{ name: 'wait', in: 'query', schema: { type: 'number', maximum: 60 } }],
          responses: { '200': ok('Assignment', 'RunAssignment'), '204': { description: 'No work' }, ...errors },
        },
      },
      '/site/runs': {
        get: { summary: "The site's assigned and running runs", responses: { '200': ok('Runs'), ...errors } },
      },
      '/site/runs/{id}': {
        get: {
          summary: 'A run as its site sees it',
          parameters: [idParam('id')],
          responses: { '200': ok('Run', 'SiteRunView'), ...errors },
        },
      },
      '/site/runs/{id}/start': {
        post: {
          summary: 'Mark the run running',
          parameters: [idParam('id')],
          responses: { '200': ok('Run', 'SiteRunView'), '409': ok('Already started or final', 'Error'), ...errors },
        },
      },
      '/site/runs/{id}/progress': {
        post: {
          summary: 'Report progress',
          parameters: [idParam('id')],
          requestBody: json('ProgressReport'),
          responses: { '200': ok('Run', 'SiteRunView'), ...errors },
        },
      },
      '/site/runs/{id}/log': {
        post: {
          summary: 'Append to the log',
          parameters: [idParam('id')],
          requestBody: json('LogAppend'),
          responses: { '200': ok('Run', 'SiteRunView'), ...errors },
        },
      },
      '/site/runs/{id}/files/{name}': {
        put: {
          summary: 'Upload a result file (raw bytes, streamed)',
          parameters: [idParam('id'), fileParam],
          requestBody: { content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } },
          responses: {
            '201': ok('Stored', 'ResultFile'),
            '413': ok('Too large', 'Error'),
            '507': ok('Registry disk full', 'Error'),
            ...errors,
          },
        },
      },
      '/site/runs/{id}/finish': {
        post: {
          summary: 'End the run',
          parameters: [idParam('id')],
          requestBody: json('FinishReport'),
          responses: { '200': ok('Run', 'SiteRunView'), '409': ok('Already ended otherwise', 'Error'), ...errors },
        },
      },
    },
  };
}
