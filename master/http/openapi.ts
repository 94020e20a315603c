/**
 * The OpenAPI 3.1 description of /api/v1, generated from the wire schemas (shared/schemas.ts) and
 * the route table below. test/master/contract.test.ts sends requests for every route and status
 * listed here and checks each answer against the served document, so the two cannot drift apart.
 */
import {
  claimQuerySchema,
  emptyQuerySchema,
  siteActivityQuerySchema,
  taskListQuerySchema,
  taskSummaryQuerySchema,
  taskWaitQuerySchema,
  WIRE_SCHEMAS,
} from '../../shared/schemas.js';
import { KEY_KINDS } from '../../shared/key-schemas.js';
import { BINARY_BODY, OpenApiBuilder, pathParams, type PathParamTable } from '../../shared/openapi-builder.js';
import { GOVERNANCE_ROUTES } from './governance-routes.js';

type SchemaName = keyof typeof WIRE_SCHEMAS;
/** Who may call a route: its 401/403 answers and its tag follow from this. */
type Who = 'researcher' | 'admin' | 'site' | 'anyone';

/** What one status answers with: a named JSON schema, another media type, or no body. */
type Answer =
  | { description: string; json: SchemaName }
  | { description: string; media: 'text/plain' | 'text/event-stream' | 'application/octet-stream' }
  | { description: string };

export interface RouteDoc {
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** OpenAPI path below /api/v1, e.g. "/tasks/{id}". */
  path: string;
  summary: string;
  who: Who;
  /** A query schema whose properties are the query parameters. */
  query?: { properties: Record<string, object> };
  /** A JSON body (optional: the route also takes no body at all), or raw bytes. */
  body?: { json: SchemaName; optional?: boolean } | { binary: true };
  /** The route's own statuses; those every route of its kind shares are added by `statusesOf`. */
  answers: Record<string, Answer>;
}

/** Every path parameter of the API, by name: the same name means the same thing everywhere. */
const PATH_PARAMS: PathParamTable = {
  id: { description: 'An id: an integer of at least 1.', schema: { type: 'integer', minimum: 1 } },
  name: {
    description: 'Path of the file inside the output folder, e.g. "tables/summary.csv"',
    schema: { type: 'string', minLength: 1 },
  },
  kind: { description: 'site, user or ttp', schema: { type: 'string', enum: KEY_KINDS } },
  principal: { description: 'The name of the site, researcher or TTP', schema: { type: 'string', minLength: 1 } },
  site: { description: 'A site name', schema: { type: 'string', minLength: 1 } },
};

/** Every route of /api/v1. */
export const ROUTES: readonly RouteDoc[] = [
  {
    method: 'post',
    path: '/tasks',
    summary: 'Post a task to sites',
    who: 'researcher',
    body: { json: 'CreateTaskRequest' },
    answers: {
      '201': { description: 'Created, with one queued run per target site', json: 'Task' },
      '413': {
        description: "Body or config over the limit, or the researcher's stored config bytes over the quota",
        json: 'Error',
      },
      '429': { description: 'The researcher has the most unfinished tasks allowed', json: 'Error' },
      '422': {
        description:
          'Unknown or disabled site, no enabled site at all, or a sealed task aimed at a site with no active public key (site_without_key, details.sites names them)',
        json: 'Error',
      },
    },
  },
  {
    method: 'get',
    path: '/tasks',
    summary: 'List your tasks (admins: all), newest first',
    who: 'researcher',
    query: taskListQuerySchema,
    answers: { '200': { description: 'One page of tasks', json: 'TaskList' } },
  },
  {
    method: 'get',
    path: '/tasks/{id}',
    summary: 'A task with its runs',
    who: 'researcher',
    query: emptyQuerySchema,
    answers: { '200': { description: 'The task', json: 'Task' } },
  },
  {
    method: 'delete',
    path: '/tasks/{id}',
    summary: 'Delete a finished task with its runs, logs and result files (owner or admin)',
    who: 'researcher',
    answers: {
      '200': { description: 'Deleted; how many runs and files went with it', json: 'TaskDeleted' },
      '409': { description: 'The task is not finished yet (cancel it first)', json: 'Error' },
    },
  },
  {
    method: 'get',
    path: '/tasks/{id}/wait',
    summary: 'Long poll until every run is final (done=true) or the timeout passes (done=false)',
    who: 'researcher',
    query: taskWaitQuerySchema,
    answers: { '200': { description: 'The task and whether it is done', json: 'TaskWaitResult' } },
  },
  {
    method: 'get',
    path: '/tasks/{id}/events',
    summary: 'Server-sent events: one `task` event (data: a Task as JSON) now and on every change',
    who: 'researcher',
    answers: { '200': { description: 'An event stream that ends when the task is final', media: 'text/event-stream' } },
  },
  {
    method: 'post',
    path: '/tasks/{id}/cancel',
    summary: 'Cancel a task (a final task is answered unchanged)',
    who: 'researcher',
    body: { json: 'EmptyBody', optional: true },
    answers: {
      '200': { description: 'The task after cancelling', json: 'Task' },
      '413': { description: 'Body over the limit', json: 'Error' },
    },
  },
  {
    method: 'get',
    path: '/runs/{id}',
    summary: 'A run',
    who: 'researcher',
    answers: { '200': { description: 'The run', json: 'Run' } },
  },
  {
    method: 'get',
    path: '/runs/{id}/log',
    summary: "The run's log as text",
    who: 'researcher',
    answers: {
      '200': { description: 'UTF-8 text', media: 'text/plain' },
      '410': { description: 'Retention removed the log (code log_expired); the run stays', json: 'Error' },
    },
  },
  {
    method: 'get',
    path: '/runs/{id}/files',
    summary: "The run's result files",
    who: 'researcher',
    answers: {
      '200': { description: 'Name, size and SHA-256 of each file', json: 'ResultFileList' },
      '410': { description: 'Retention removed the files (code files_expired); the run stays', json: 'Error' },
    },
  },
  {
    method: 'get',
    path: '/runs/{id}/files/{name}',
    summary: 'Download a result file (its SHA-256 in X-Content-SHA256)',
    who: 'researcher',
    answers: {
      '200': { description: 'The bytes', media: 'application/octet-stream' },
      '410': { description: 'Retention removed the files (code files_expired); the run stays', json: 'Error' },
    },
  },
  {
    method: 'get',
    path: '/sites',
    summary: 'The registered sites',
    who: 'researcher',
    answers: { '200': { description: 'Every site', json: 'SiteList' } },
  },
  {
    method: 'get',
    path: '/me',
    summary: 'Who the token belongs to',
    who: 'researcher',
    answers: { '200': { description: 'The researcher or admin', json: 'UserMe' } },
  },
  {
    method: 'get',
    path: '/task-summaries',
    summary: 'Your tasks (admins: all), newest first, filtered, each with run counts per state instead of its runs',
    who: 'researcher',
    query: taskSummaryQuerySchema,
    answers: { '200': { description: 'One page of task summaries', json: 'TaskSummaryList' } },
  },
  {
    method: 'get',
    path: '/sites/activity',
    summary: "A page of sites by name, with an online flag and run counts (a researcher's: of their own tasks)",
    who: 'researcher',
    query: siteActivityQuerySchema,
    answers: { '200': { description: 'One page of the sites matching the filter', json: 'SiteActivityList' } },
  },
  {
    method: 'get',
    path: '/admin/users',
    summary: 'Researchers and admins',
    who: 'admin',
    query: emptyQuerySchema,
    answers: { '200': { description: 'Every researcher and admin', json: 'UserList' } },
  },
  {
    method: 'post',
    path: '/admin/users',
    summary: 'Create a researcher or admin; the token is in the answer, once',
    who: 'admin',
    body: { json: 'CreateUserRequest' },
    answers: {
      '201': { description: 'Created', json: 'CreatedUser' },
      '409': { description: 'A user of that name exists', json: 'Error' },
      '413': { description: 'Body over the limit', json: 'Error' },
    },
  },
  {
    method: 'post',
    path: '/admin/sites',
    summary: 'Create a site; its API key is in the answer, once',
    who: 'admin',
    body: { json: 'CreateSiteRequest' },
    answers: {
      '201': { description: 'Created', json: 'CreatedSite' },
      '409': { description: 'A site of that name exists', json: 'Error' },
      '413': { description: 'Body over the limit', json: 'Error' },
    },
  },
  {
    method: 'post',
    path: '/admin/sites/{site}/disable',
    summary: 'Disable a site: its key stops working at once and its unfinished runs fail',
    who: 'admin',
    body: { json: 'EmptyBody', optional: true },
    answers: {
      '200': { description: 'The site', json: 'SiteEnabled' },
      '413': { description: 'Body over the limit', json: 'Error' },
    },
  },
  {
    method: 'post',
    path: '/admin/sites/{site}/enable',
    summary: 'Enable a site again',
    who: 'admin',
    body: { json: 'EmptyBody', optional: true },
    answers: {
      '200': { description: 'The site', json: 'SiteEnabled' },
      '413': { description: 'Body over the limit', json: 'Error' },
    },
  },
  {
    method: 'get',
    path: '/openapi.json',
    summary: 'This document',
    who: 'anyone',
    answers: { '200': { description: 'OpenAPI 3.1' } },
  },
  {
    method: 'post',
    path: '/public-key',
    summary: "Register the researcher's public key (a change needs a rotation signed by the registered key)",
    who: 'researcher',
    body: { json: 'RegisterKeyRequest' },
    answers: {
      '200': { description: 'Already registered: nothing changed', json: 'KeyRecord' },
      '201': { description: 'Registered', json: 'KeyRecord' },
      '409': { description: 'Another key is registered and no valid rotation was sent', json: 'Error' },
      '413': { description: 'Body over the limit', json: 'Error' },
    },
  },
  {
    method: 'get',
    path: '/keys/{kind}/{principal}',
    summary: 'The public key of a site, researcher or TTP, with its signed rotations (clients pin it)',
    who: 'researcher',
    answers: {
      '200': { description: 'The key', json: 'KeyRecord' },
      '410': { description: 'The key was revoked', json: 'Error' },
    },
  },
  {
    method: 'post',
    path: '/site/public-key',
    summary: "Register the site's public key (a change needs a rotation signed by the registered key)",
    who: 'site',
    body: { json: 'RegisterKeyRequest' },
    answers: {
      '200': { description: 'Already registered: nothing changed', json: 'KeyRecord' },
      '201': { description: 'Registered', json: 'KeyRecord' },
      '409': { description: 'Another key is registered and no valid rotation was sent', json: 'Error' },
      '413': { description: 'Body over the limit', json: 'Error' },
    },
  },
  {
    method: 'get',
    path: '/site/keys/{kind}/{principal}',
    summary: 'The public key of a researcher, TTP or site, with its signed rotations (clients pin it)',
    who: 'site',
    answers: {
      '200': { description: 'The key', json: 'KeyRecord' },
      '410': { description: 'The key was revoked', json: 'Error' },
    },
  },
  {
    method: 'get',
    path: '/site/me',
    summary: 'Which site the key belongs to',
    who: 'site',
    answers: { '200': { description: 'The site', json: 'SiteMe' } },
  },
  {
    method: 'get',
    path: '/site/runs/next',
    summary: "Claim the site's next queued run (long poll with wait)",
    who: 'site',
    query: claimQuerySchema,
    answers: {
      '200': { description: 'The run, now assigned to this site', json: 'RunAssignment' },
      '204': { description: 'No work within the wait' },
    },
  },
  {
    method: 'get',
    path: '/site/runs',
    summary: "The site's assigned and running runs (what a restarted client reconciles)",
    who: 'site',
    answers: { '200': { description: 'Unfinished runs', json: 'SiteRunList' } },
  },
  {
    method: 'get',
    path: '/site/runs/{id}',
    summary: 'A run as its site sees it',
    who: 'site',
    answers: { '200': { description: 'The run', json: 'SiteRunView' } },
  },
  {
    method: 'post',
    path: '/site/runs/{id}/start',
    summary: 'Mark the run running',
    who: 'site',
    body: { json: 'EmptyBody', optional: true },
    answers: {
      '200': { description: 'The run', json: 'SiteRunView' },
      '409': { description: 'Already started, or final', json: 'Error' },
      '413': { description: 'Body over the limit', json: 'Error' },
    },
  },
  {
    method: 'post',
    path: '/site/runs/{id}/progress',
    summary: 'Report progress',
    who: 'site',
    body: { json: 'ProgressReport' },
    answers: {
      '200': { description: 'The run', json: 'SiteRunView' },
      '409': { description: 'The run is not running (e.g. already final)', json: 'Error' },
      '413': { description: 'Body over the limit', json: 'Error' },
    },
  },
  {
    method: 'post',
    path: '/site/runs/{id}/log',
    summary: "Append to the log (past the run's log limit, the rest is dropped and marked)",
    who: 'site',
    body: { json: 'LogAppend' },
    answers: {
      '200': { description: 'The run', json: 'SiteRunView' },
      '409': { description: 'The run is not running (e.g. already final)', json: 'Error' },
      '413': { description: 'Body, or text, over the limit of one append', json: 'Error' },
    },
  },
  {
    method: 'put',
    path: '/site/runs/{id}/files/{name}',
    summary: 'Upload a result file (raw bytes, streamed; an identical re-upload to a final run is accepted)',
    who: 'site',
    body: { binary: true },
    answers: {
      '201': { description: 'Stored', json: 'ResultFile' },
      '409': { description: 'The run is not running, or final with a different file', json: 'Error' },
      '413': { description: "File over the limit, the run's byte total or its file count", json: 'Error' },
      '507': { description: 'The registry is out of disk space; retry later', json: 'Error' },
    },
  },
  {
    method: 'post',
    path: '/site/runs/{id}/finish',
    summary: 'End the run (repeating the same end is accepted)',
    who: 'site',
    body: { json: 'FinishReport' },
    answers: {
      '200': { description: 'The run', json: 'SiteRunView' },
      '409': { description: 'The run already ended otherwise, or cannot end so from its state', json: 'Error' },
      '413': { description: 'Body over the limit', json: 'Error' },
    },
  },
  ...GOVERNANCE_ROUTES,
];

/** Every status a route answers: its own, and those of its kind (auth, bad input, not found). */
export function statusesOf(route: RouteDoc): Record<string, Answer> {
  const out: Record<string, Answer> = { ...route.answers };
  const error = (description: string): Answer => ({ description, json: 'Error' });
  if (route.query || route.body || pathParams(route.path).length > 0)
    out['400'] ??= error('Invalid input: malformed id, query, file name or body; details name each problem');
  if (route.who !== 'anyone') {
    out['401'] ??= error('Missing or unknown key');
    out['403'] ??= error(
      {
        site: 'Not a site key, or the site is disabled',
        researcher: 'Not a researcher token, or disabled',
        admin: 'Not an admin token, or disabled',
      }[route.who],
    );
  }
  if (pathParams(route.path).length > 0) out['404'] ??= error('Not found, or not yours');
  if (route.body && 'json' in route.body) out['415'] ??= error('A body that is not declared as JSON');
  return out;
}

const builder = new OpenApiBuilder<SchemaName>(WIRE_SCHEMAS, PATH_PARAMS);

function operationDoc(route: RouteDoc): object {
  const parameters = [
    ...builder.pathParameters(route.path),
    ...Object.entries(route.query?.properties ?? {}).map(([name, schema]) => {
      // The description belongs to the parameter; a named schema (e.g. TaskStatus) stays a $ref.
      const { description, ...rest } = schema as { description?: string };
      return {
        name,
        in: 'query',
        required: false,
        ...(description ? { description, schema: builder.docSchema(rest) } : { schema: builder.docSchema(schema) }),
      };
    }),
  ];
  const requestBody = !route.body
    ? undefined
    : 'binary' in route.body
      ? BINARY_BODY
      : builder.jsonBody(route.body.json, !route.body.optional);
  return builder.operation(route, statusesOf(route), { parameters, requestBody });
}

/** The OpenAPI 3.1 document, built from the same schemas the server validates with. */
export function openApiDocument(): object {
  return builder.document(
    { title: 'PHT registry', description: 'Personal Health Train registry: tasks, runs, results.' },
    [
      { name: 'researcher', description: 'Researchers and admins: tasks, runs, results' },
      { name: 'admin', description: 'Admins only' },
      { name: 'site', description: 'Site clients: claim, run and report' },
      { name: 'meta', description: 'About the API itself' },
    ],
    ROUTES.map((route) => ({ method: route.method, path: route.path, doc: operationDoc(route) })),
  );
}
