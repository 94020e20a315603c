/** The OpenAPI 3.1 description of the file service's /api/v1. */
const error = { content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
const errors = {
  '400': { description: 'Invalid task id, file name or checksum', ...error },
  '401': { description: 'Missing or unknown key', ...error },
  '403': { description: 'Wrong kind of principal, or disabled', ...error },
  '404': { description: 'Not found', ...error },
};
const taskId = {
  name: 'taskId',
  in: 'path',
  required: true,
  schema: { type: 'string', pattern: '^[1-9][0-9]{0,14}$' },
};
const name = {
  name: 'name',
  in: 'path',
  required: true,
  schema: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$' },
};
const sender = {
  name: 'sender',
  in: 'path',
  required: true,
  schema: { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' },
};

export function fileServiceOpenApi(): object {
  return {
    openapi: '3.1.0',
    info: {
      title: 'PHT file service',
      version: '1',
      description:
        "A trusted third party's inbox: sites (senders) upload files per task, the TTP's own processes (readers) list, read and delete them.",
    },
    servers: [{ url: '/api/v1' }],
    security: [{ bearer: [] }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Error: {
          type: 'object',
          required: ['code', 'message'],
          properties: { code: { type: 'string' }, message: { type: 'string' } },
        },
        FileEntry: {
          type: 'object',
          required: ['sender', 'name', 'size', 'sha256'],
          additionalProperties: false,
          properties: {
            sender: { type: 'string' },
            name: { type: 'string' },
            size: { type: 'integer', minimum: 0 },
            sha256: { type: 'string', pattern: '^[a-f0-9]{64}$' },
          },
        },
        PublicKey: {
          type: 'object',
          required: ['publicKey', 'fingerprint', 'rotations'],
          properties: {
            publicKey: { type: 'object' },
            fingerprint: { type: 'string' },
            rotations: { type: 'array', items: { type: 'object' } },
          },
        },
      },
    },
    paths: {
      '/public-key': {
        get: {
          security: [],
          summary: "The TTP's public key (X25519 + Ed25519), its fingerprint and signed rotations",
          responses: {
            '200': {
              description: 'The key',
              content: { 'application/json': { schema: { $ref: '#/components/schemas/PublicKey' } } },
            },
            '404': { description: 'No key created yet', ...error },
          },
        },
      },
      '/tasks/{taskId}/files/{name}': {
        put: {
          summary: 'Sender: upload a file (raw bytes, streamed; atomic; the same bytes twice are harmless)',
          parameters: [
            taskId,
            name,
            {
              name: 'X-Content-SHA256',
              in: 'header',
              required: false,
              schema: { type: 'string', pattern: '^[a-fA-F0-9]{64}$' },
            },
          ],
          requestBody: {
            required: true,
            content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
          },
          responses: {
            '201': {
              description: 'Stored',
              content: { 'application/json': { schema: { $ref: '#/components/schemas/FileEntry' } } },
            },
            '200': {
              description: 'The same bytes were already stored',
              content: { 'application/json': { schema: { $ref: '#/components/schemas/FileEntry' } } },
            },
            '413': { description: 'Larger than the limit', ...error },
            ...errors,
          },
        },
      },
      '/tasks/{taskId}/files': {
        get: {
          summary: 'Reader: every file received for a task',
          parameters: [taskId],
          responses: {
            '200': {
              description: 'Files',
              content: {
                'application/json': { schema: { type: 'array', items: { $ref: '#/components/schemas/FileEntry' } } },
              },
            },
            ...errors,
          },
        },
      },
      '/tasks/{taskId}/files/{sender}/{name}': {
        get: {
          summary: "Reader: a file's bytes",
          parameters: [taskId, sender, name],
          responses: { '200': { description: 'The bytes', content: { 'application/octet-stream': {} } }, ...errors },
        },
        delete: {
          summary: 'Reader: delete a file',
          parameters: [taskId, sender, name],
          responses: { '204': { description: 'Deleted' }, ...errors },
        },
      },
    },
  };
}
