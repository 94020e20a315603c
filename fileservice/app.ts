import fs from 'node:fs';
import express, { type NextFunction, type Request, type Response } from 'express';
import { publicKeyToJson, readPublicKeyFile, readRotationsFile, keyFilePaths } from '../shared/crypto/index.js';
import { ERROR_CODES } from '../shared/error-codes.js';
import { FILE_TASK_ID_PATTERN, UPLOAD_NAME_PATTERN } from '../shared/fileservice-schemas.js';
import { coerceError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { SITE_NAME_PATTERN } from '../shared/names.js';
import type { FileServiceConfig } from './config.js';
import { FileServiceError } from './errors.js';
import type { FileBytes } from './file-store.js';
import { fileServiceOpenApi } from './openapi.js';
import type { FileServiceStore, Principal, StoredFile } from './store.js';

export interface FileServiceContext {
  store: FileServiceStore;
  bytes: FileBytes;
  config: FileServiceConfig;
  logger: Logger;
}

/** Task ids are the registry's (positive integers); kept as text, never used in a path. */
const TASK_ID = new RegExp(FILE_TASK_ID_PATTERN);
/**
 * No traversal, no absolute path, no control or separator characters (see UPLOAD_NAME_PATTERN).
 * Names are only labels: bytes are stored under random names anyway.
 */
export const UPLOAD_NAME = new RegExp(UPLOAD_NAME_PATTERN);
const SENDER = new RegExp(SITE_NAME_PATTERN);
const SHA256 = /^[a-fA-F0-9]{64}$/;

const entry = (f: StoredFile) => ({ sender: f.sender, name: f.name, size: f.size, sha256: f.sha256 });

function param(req: Request, key: string, pattern: RegExp, what: string): string {
  const value = req.params[key];
  if (typeof value !== 'string' || !pattern.test(value))
    throw new FileServiceError(400, ERROR_CODES.badRequest, `invalid ${what}: ${describe(value)}`);
  return value;
}

/** Quotes a refused value for an error message without echoing control characters or megabytes. */
function describe(value: unknown): string {
  if (typeof value !== 'string') return 'missing';
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
}

function principalOf(res: Response): Principal {
  return res.locals.principal as Principal;
}

function authenticate(store: FileServiceStore) {
  return (req: Request, res: Response, next: NextFunction) => {
    const header = req.headers.authorization;
    const match = header ? /^Bearer ([A-Za-z0-9_.~+/=-]{8,512})$/.exec(header) : null;
    if (!match) {
      res.setHeader('WWW-Authenticate', 'Bearer');
      throw new FileServiceError(
        401,
        ERROR_CODES.unauthorized,
        'missing or malformed Authorization header: send "Bearer <key>"',
      );
    }
    const principal = store.authenticate(match[1]!);
    if (!principal) throw new FileServiceError(401, ERROR_CODES.unauthorized, 'unknown API key or token');
    if (!principal.enabled)
      throw new FileServiceError(403, ERROR_CODES.forbidden, `${principal.kind} "${principal.name}" is disabled`);
    res.locals.principal = principal;
    next();
  };
}

const requireKind = (kind: Principal['kind']) => (_req: Request, res: Response, next: NextFunction) => {
  if (principalOf(res).kind !== kind)
    throw new FileServiceError(
      403,
      ERROR_CODES.forbidden,
      kind === 'sender'
        ? 'only senders (sites) upload files; use a sender API key'
        : 'only readers list, read and delete files; use a reader token',
    );
  next();
};

/** The file service's Express application (no listening socket: see server.ts). */
export function createFileServiceApp(ctx: FileServiceContext): express.Express {
  const { store, bytes, config, logger } = ctx;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  const openApi = fileServiceOpenApi();
  app.get('/api/v1/openapi.json', (_req, res) => {
    res.json(openApi);
  });
  app.get('/api/v1/public-key', (_req, res) => {
    const paths = keyFilePaths(config.keyFile);
    if (!fs.existsSync(paths.publicFile))
      throw new FileServiceError(
        404,
        ERROR_CODES.notFound,
        'this file service has no key yet: run "node fileservice keys create"',
      );
    const key = readPublicKeyFile(paths.publicFile);
    res.json({
      publicKey: publicKeyToJson(key),
      fingerprint: key.fingerprint,
      rotations: readRotationsFile(paths.rotationsFile),
    });
  });

  const api = express.Router();
  api.use(authenticate(store));

  api.put('/tasks/:taskId/files/:name', requireKind('sender'), async (req, res) => {
    const sender = principalOf(res).name;
    const taskId = param(req, 'taskId', TASK_ID, 'task id');
    const name = param(
      req,
      'name',
      UPLOAD_NAME,
      'file name (letters, digits, ".", "_", "-"; not starting with "."; at most 255)',
    );
    const announced = req.headers['x-content-sha256'];
    if (announced !== undefined && (typeof announced !== 'string' || !SHA256.test(announced)))
      throw new FileServiceError(400, ERROR_CODES.badRequest, 'X-Content-SHA256 must be 64 hexadecimal digits');
    const maxBytes = config.limits.fileBytes;
    const declared = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : null;
    if (declared !== null && declared > maxBytes)
      throw new FileServiceError(
        413,
        ERROR_CODES.payloadTooLarge,
        `file is ${declared} bytes; at most ${maxBytes} are allowed`,
      );
    if (!store.getFile(taskId, sender, name) && store.countFiles(taskId, sender) >= config.limits.filesPerSenderAndTask)
      throw new FileServiceError(
        409,
        ERROR_CODES.conflict,
        `sender "${sender}" already has ${config.limits.filesPerSenderAndTask} files for task ${taskId}`,
      );
    const stored = await bytes.receive(req, maxBytes, announced?.toLowerCase() ?? null);
    let outcome;
    try {
      outcome = store.recordFile({ taskId, sender, name, ...stored });
    } catch (e) {
      bytes.remove(stored.storedAs);
      throw e;
    }
    if (outcome.duplicate) {
      bytes.remove(stored.storedAs);
      res.status(200).json(entry(outcome.duplicate));
      return;
    }
    if (outcome.previous) bytes.remove(outcome.previous.storedAs);
    logger.info('file received', {
      taskId,
      sender,
      file: name,
      size: stored.size,
      replaced: outcome.previous !== null,
    });
    res.status(201).json({ sender, name, size: stored.size, sha256: stored.sha256 });
  });

  api.get('/tasks/:taskId/files', requireKind('reader'), (req, res) => {
    const taskId = param(req, 'taskId', TASK_ID, 'task id');
    res.json(store.listFiles(taskId).map(entry));
  });

  const fileOf = (req: Request) => ({
    taskId: param(req, 'taskId', TASK_ID, 'task id'),
    sender: param(req, 'sender', SENDER, 'sender name'),
    name: param(req, 'name', UPLOAD_NAME, 'file name'),
  });

  api.get('/tasks/:taskId/files/:sender/:name', requireKind('reader'), async (req, res) => {
    const { taskId, sender, name } = fileOf(req);
    const file = store.getFile(taskId, sender, name);
    if (!file)
      throw new FileServiceError(404, ERROR_CODES.notFound, `no file "${name}" from "${sender}" for task ${taskId}`);
    let stream: fs.ReadStream;
    try {
      stream = fs.createReadStream(bytes.pathOf(file.storedAs));
      await new Promise<void>((resolve, reject) => stream.once('open', () => resolve()).once('error', reject));
    } catch {
      // Deleted (retention, a reader's DELETE) between the lookup and the open.
      throw new FileServiceError(404, ERROR_CODES.notFound, `no file "${name}" from "${sender}" for task ${taskId}`);
    }
    res.setHeader('Content-Type', 'application/octet-stream');
    res.setHeader('Content-Length', String(file.size));
    res.setHeader('X-Content-SHA256', file.sha256);
    stream.pipe(res);
    stream.once('error', () => res.destroy());
  });

  api.delete('/tasks/:taskId/files/:sender/:name', requireKind('reader'), (req, res) => {
    const { taskId, sender, name } = fileOf(req);
    const removed = store.deleteFile(taskId, sender, name);
    if (!removed)
      throw new FileServiceError(404, ERROR_CODES.notFound, `no file "${name}" from "${sender}" for task ${taskId}`);
    bytes.remove(removed.storedAs);
    logger.info('file deleted', { taskId, sender, file: name, by: principalOf(res).name });
    res.status(204).end();
  });

  app.use('/api/v1', api);
  app.use((req: Request, _res: Response, next: NextFunction) => {
    next(new FileServiceError(404, ERROR_CODES.notFound, `no route for ${req.method} ${req.path.slice(0, 200)}`));
  });
  app.use((thrown: unknown, req: Request, res: Response, _next: NextFunction) => {
    const { status, code, message } = toError(thrown);
    if (status >= 500 && status !== 507)
      logger.error('request failed', { method: req.method, path: req.path, error: coerceError(thrown).stack });
    else logger.debug('request refused', { method: req.method, status, code });
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // A refused upload's remaining bytes are not worth reading: close instead of draining.
    if (req.method === 'PUT' && !req.complete) res.setHeader('Connection', 'close');
    res.status(status).json({ code, message });
  });
  return app;
}

function toError(thrown: unknown): { status: number; code: string; message: string } {
  if (thrown instanceof FileServiceError) return { status: thrown.status, code: thrown.code, message: thrown.message };
  const e = thrown as { code?: string; status?: number; expose?: boolean; message?: string };
  if (thrown instanceof URIError)
    return { status: 400, code: ERROR_CODES.badRequest, message: 'the URL has a malformed percent-encoding' };
  if (e?.code === 'ECONNRESET' || e?.code === 'ERR_STREAM_PREMATURE_CLOSE')
    return { status: 400, code: ERROR_CODES.badRequest, message: 'request aborted' };
  if (e?.code === 'ENOSPC' || e?.code === 'SQLITE_FULL')
    return {
      status: 507,
      code: ERROR_CODES.storageFull,
      message: 'the file service is out of disk space; retry later',
    };
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500 && e.expose)
    return { status: e.status, code: ERROR_CODES.badRequest, message: e.message ?? 'bad request' };
  return { status: 500, code: ERROR_CODES.internal, message: 'internal error; see the file service log' };
}
