/**
 * The OpenAPI 3.1 description of the file service's /api/v1, generated from its wire schemas
 * (shared/fileservice-schemas.ts) and the route table below, as the registry's is
 * (master/http/openapi.ts). test/fileservice/contract.test.ts sends requests for every route and
 * status listed here and checks each answer against the served document.
 */
import { FILE_SERVICE_SCHEMAS, FILE_TASK_ID_PATTERN, UPLOAD_NAME_PATTERN } from '../shared/fileservice-schemas.js';
import { SITE_NAME_PATTERN } from '../shared/names.js';
import { BINARY_BODY, OpenApiBuilder, pathParams, type PathParamTable } from '../shared/openapi-builder.js';

type SchemaName = keyof typeof FILE_SERVICE_SCHEMAS;
/** Who may call a route: its 401/403 answers and its tag follow from this. */
type Who = 'sender' | 'reader' | 'anyone';

type Answer =
  | { description: string; json: SchemaName }
  | { description: string; media: 'application/octet-stream' }
  | { description: string };

export interface FileServiceRouteDoc {
  method: 'get' | 'put' | 'delete';
  /** OpenAPI path below /api/v1. */
  path: string;
  summary: string;
  who: Who;
  /** Raw bytes in the body (an upload). */
  binaryBody?: true;
  /** Request headers the route reads. */
  headers?: { name: string; description: string; schema: object }[];
  /** The route's own statuses; those every route of its kind shares are added by `statusesOf`. */
  answers: Record<string, Answer>;
}

/** Every path parameter, by name: the same name means the same thing everywhere. */
const PATH_PARAMS: PathParamTable = {
  taskId: {
    description: "The registry's task id the files belong to",
    schema: { type: 'string', pattern: FILE_TASK_ID_PATTERN },
  },
  name: {
    description: 'The file name: letters, digits, ".", "_", "-", not starting with "."; at most 255',
    schema: { type: 'string', pattern: UPLOAD_NAME_PATTERN },
  },
  sender: { description: 'The sending site', schema: { type: 'string', pattern: SITE_NAME_PATTERN } },
};

const notFound = (description: string): Answer => ({ description, json: 'Error' });

/** Every route of the file service's /api/v1. */
export const FILE_SERVICE_ROUTES: readonly FileServiceRouteDoc[] = [
  {
    method: 'get',
    path: '/public-key',
    summary: "The TTP's public key (X25519 + Ed25519), its fingerprint and signed rotations",
    who: 'anyone',
    answers: {
      '200': { description: 'The key', json: 'TtpPublicKey' },
      '404': notFound('No key created yet (node fileservice keys create)'),
    },
  },
  {
    method: 'put',
    path: '/tasks/{taskId}/files/{name}',
    summary: 'Sender: upload a file (raw bytes, streamed; atomic; the same bytes twice are harmless)',
    who: 'sender',
    binaryBody: true,
    headers: [
      {
        name: 'X-Content-SHA256',
        description: 'The SHA-256 of the body; bytes that do not match it are refused and not stored',
        schema: { type: 'string', pattern: '^[a-fA-F0-9]{64}$' },
      },
    ],
    answers: {
      '201': { description: 'Stored (replacing the same name from this sender, if any)', json: 'FileEntry' },
      '200': { description: 'The same bytes were already stored under this name', json: 'FileEntry' },
      '400': {
        description: 'Invalid task id or file name, malformed X-Content-SHA256, or bytes not matching it',
        json: 'Error',
      },
      '409': { description: 'The sender has the most files allowed for this task', json: 'Error' },
      '413': { description: 'Larger than the limit', json: 'Error' },
      '507': { description: 'The file service is out of disk space; retry later', json: 'Error' },
    },
  },
  {
    method: 'get',
    path: '/tasks/{taskId}/files',
    summary: 'Reader: every file received for a task',
    who: 'reader',
    answers: { '200': { description: 'The files, possibly none', json: 'FileEntryList' } },
  },
  {
    method: 'get',
    path: '/tasks/{taskId}/files/{sender}/{name}',
    summary: "Reader: a file's bytes (X-Content-SHA256 gives their hash)",
    who: 'reader',
    answers: {
      '200': { description: 'The bytes', media: 'application/octet-stream' },
      '404': notFound('No such file'),
    },
  },
  {
    method: 'delete',
    path: '/tasks/{taskId}/files/{sender}/{name}',
    summary: 'Reader: delete a file',
    who: 'reader',
    answers: { '204': { description: 'Deleted' }, '404': notFound('No such file') },
  },
  {
    method: 'get',
    path: '/openapi.json',
    summary: 'This document',
    who: 'anyone',
    answers: { '200': { description: 'OpenAPI 3.1' } },
  },
];

/** Every status a route answers: its own, and those of its kind (keys, malformed path). */
export function statusesOf(route: FileServiceRouteDoc): Record<string, Answer> {
  const out: Record<string, Answer> = { ...route.answers };
  const error = (description: string): Answer => ({ description, json: 'Error' });
  if (pathParams(route.path).length > 0) out['400'] ??= error('Invalid task id, sender or file name');
  if (route.who !== 'anyone') {
    out['401'] ??= error('Missing or unknown key');
    out['403'] ??= error(
      route.who === 'sender'
        ? 'Not a sender (site) key, or the sender is disabled'
        : 'Not a reader token, or the reader is disabled',
    );
  }
  return out;
}

const builder = new OpenApiBuilder<SchemaName>(FILE_SERVICE_SCHEMAS, PATH_PARAMS);

function operationDoc(route: FileServiceRouteDoc): object {
  const parameters = [
    ...builder.pathParameters(route.path),
    ...(route.headers ?? []).map((h) => ({ in: 'header', required: false, ...h })),
  ];
  return builder.operation(route, statusesOf(route), {
    parameters,
    requestBody: route.binaryBody ? BINARY_BODY : undefined,
  });
}

/** The OpenAPI 3.1 document, built from the same schemas the file service's clients check with. */
export function fileServiceOpenApi(): object {
  return builder.document(
    {
      title: 'PHT file service',
      description:
        "A trusted third party's inbox: sites (senders) upload files per task, the TTP's own processes (readers) list, read and delete them.",
    },
    [
      { name: 'sender', description: 'Sites: upload files for a TTP' },
      { name: 'reader', description: "The TTP's own processes: list, read and delete received files" },
      { name: 'meta', description: 'About the service itself' },
    ],
    FILE_SERVICE_ROUTES.map((route) => ({ method: route.method, path: route.path, doc: operationDoc(route) })),
  );
}
