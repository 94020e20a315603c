import type { IncomingMessage, ServerResponse } from 'node:http';
import querystring from 'node:querystring';
import express, { type NextFunction, type Request, type Response } from 'express';
import { ERROR_CODES } from '../../shared/error-codes.js';
import { coerceError } from '../../shared/errors.js';
import type { ApiErrorBody } from '../../shared/types.js';
import { RegistryError } from '../errors.js';
import { WaitingPolls } from '../hand-out.js';
import { validateClaimQuery } from '../../shared/schemas.js';
import type { Principal } from '../store/registry-store.js';
import { authenticate, principalResolver, requireSite, type PrincipalResolver } from './auth.js';
import type { RegistryContext } from './context.js';
import { adminRoutes } from './admin-routes.js';
import { API_CSP, dashboardRoutes, defaultDashboardDir } from './dashboard.js';
import { PublicKeyStore } from '../public-keys.js';
import { keyRoutes } from './key-routes.js';
import { openApiDocument } from './openapi.js';
import { overviewRoutes } from './overview-routes.js';
import { governanceRoutes } from './governance-routes.js';
import { limitJsonDepth } from './request-parsing.js';
import { researcherRoutes } from './researcher-routes.js';
import { sendJsonText } from './json-answer.js';
import { nextRunHandler, pollForWork, siteRoutes } from './site-routes.js';

/** The long poll for work, the registry's most frequent request and what 10,000 parked sites hold. */
const POLL_PATH = '/api/v1/site/runs/next';

/** The registry's Express application (no listening socket: see server.ts). */
export function createApp(context: RegistryContext, dashboardDir = defaultDashboardDir()): express.Express {
  return buildRegistryHttp(context, dashboardDir).app;
}

/**
 * The registry's request listener for node:http: the Express application, except that a site's
 * well-formed long poll for work (GET /api/v1/site/runs/next with a valid site key and query) is
 * served without Express. Express gives every request its own prototypes (a hidden class per
 * request and response object), router closures and per-request state, which a parked poll holds
 * for up to a minute: at 10,000 parked sites that was most of the registry's memory above a bare
 * node:http server's (issue 13, target 5; bench/parked-polls.ts). Anything else about such a
 * request (no or a bad key, a researcher's token, a bad query, an unavailable database) is left
 * to Express, which answers it as for every other route.
 */
export function createRequestListener(
  context: RegistryContext,
  dashboardDir = defaultDashboardDir(),
): (req: IncomingMessage, res: ServerResponse) => void {
  return buildRegistryHttp(context, dashboardDir).listener;
}

function buildRegistryHttp(
  context: RegistryContext,
  dashboardDir: string,
): { app: express.Express; listener: (req: IncomingMessage, res: ServerResponse) => void } {
  const ctx: RegistryContext = { ...context, polls: context.polls ?? new WaitingPolls() };
  const resolvePrincipal = principalResolver(ctx.store);
  const app = createExpressApp(ctx, resolvePrincipal, dashboardDir);
  const serve = pollForWork(ctx);
  const toExpress = (req: IncomingMessage, res: ServerResponse) => {
    app(req as Request, res as Response);
  };
  const fastPoll = async (req: IncomingMessage, res: ServerResponse, search: string): Promise<void> => {
    const arrived = performance.now();
    let principal: Principal;
    try {
      principal = await resolvePrincipal(req.headers.authorization);
    } catch {
      return toExpress(req, res);
    }
    const q: unknown = { ...querystring.parse(search) };
    if (principal.kind !== 'site' || !validateClaimQuery(q)) return toExpress(req, res);
    res.setHeader('Content-Security-Policy', API_CSP);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    // Timed when the poll has answered or its poller hung up (no close listener per parked poll).
    await serve(principal, q.wait ?? 0, req, res);
    ctx.metrics?.recordRequest('GET', POLL_PATH, res.statusCode, (performance.now() - arrived) / 1000);
  };
  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url ?? '';
    if (
      req.method !== 'GET' ||
      !url.startsWith(POLL_PATH) ||
      (url.length > POLL_PATH.length && url[POLL_PATH.length] !== '?')
    )
      return toExpress(req, res);
    fastPoll(req, res, url.slice(POLL_PATH.length + 1)).catch((thrown: unknown) =>
      answerError(ctx, thrown, req.method ?? 'GET', POLL_PATH, req, res),
    );
  };
  return { app, listener };
}

function createExpressApp(
  ctx: RegistryContext,
  resolvePrincipal: PrincipalResolver,
  dashboardDir: string,
): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');
  if (ctx.metrics) app.use(ctx.metrics.middleware(['/api/v1/site', '/api/v1']));
  app.use((_req, res, next) => {
    res.setHeader('Content-Security-Policy', API_CSP);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    next();
  });
  // The dashboard (static files built into dist/ui); it talks to the API below like any client.
  app.get('/', (_req, res) => res.redirect(302, '/ui/'));
  app.use('/ui', dashboardRoutes(dashboardDir));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', waiting: ctx.events.waiting() });
  });
  const openApi = openApiDocument();
  app.get('/api/v1/openapi.json', (_req, res) => {
    res.json(openApi);
  });

  const auth = authenticate(resolvePrincipal);
  const nextRun = nextRunHandler(ctx);
  // A site polling for work is the most common request at scale (issue 13, target 3): it goes
  // straight to its handler after authentication, past the API router's body parsing and the
  // routers in front of the site routes. A GET's body is never read, here or there.
  // (A router of its own, so that the metrics label its route like the other site routes.)
  const polling = express.Router();
  polling.get('/runs/next', auth, requireSite, nextRun);
  app.use('/api/v1/site', polling);

  const api = express.Router();
  api.use(auth);
  const parseJson = express.json({
    limit: ctx.config.limits.jsonBodyBytes,
    strict: false,
    type: ['application/json', 'application/*+json'],
  });
  // PUT carries a result file's raw bytes, whatever its Content-Type (a site may label result.json
  // as JSON): the upload route streams them to disk itself, so they must not be parsed here.
  api.use((req, res, next) => (req.method === 'PUT' ? next() : parseJson(req, res, next)));
  api.use(limitJsonDepth());
  // One key store for the key routes and for POST /tasks (which refuses unsealable tasks).
  ctx.keys ??= new PublicKeyStore(ctx.config.dataDir);
  api.use(keyRoutes(ctx, ctx.keys));
  const governance = governanceRoutes(ctx);
  api.use('/site', governance.site);
  api.use('/site', siteRoutes(ctx));
  api.use('/admin', adminRoutes(ctx));
  api.use(overviewRoutes(ctx));
  api.use(governance.user);
  api.use(researcherRoutes(ctx));
  app.use('/api/v1', api);

  app.use((req: Request, _res: Response, next: NextFunction) => {
    next(new RegistryError(404, ERROR_CODES.notFound, `no route for ${req.method} ${req.path}`));
  });
  app.use(errorHandler(ctx));
  return app;
}

interface BodyParserError {
  type?: string;
  status?: number;
  expose?: boolean;
}

function errorHandler(ctx: RegistryContext) {
  return (thrown: unknown, req: Request, res: Response, _next: NextFunction): void => {
    answerError(ctx, thrown, req.method, req.path, req, res);
  };
}

/** Logs a failed request as its status deserves and answers it with the error body. */
function answerError(
  ctx: RegistryContext,
  thrown: unknown,
  method: string,
  path: string,
  req: IncomingMessage,
  res: ServerResponse,
): void {
  const { status, body } = toErrorResponse(thrown);
  if (status === 503) {
    // The database is out of reach (restarting, failing over): the caller retries.
    ctx.logger.warn('request refused: database unavailable', { method, path });
  } else if (status >= 500 && status !== 507) {
    ctx.logger.error('request failed', { method, path, error: coerceError(thrown).stack });
  } else {
    ctx.logger.debug('request refused', { method, path, status, code: body.code });
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  // A refused request's remaining body is not worth reading (or waiting for): close instead.
  if (status === 413 || !req.complete) res.setHeader('Connection', 'close');
  sendJsonText(res, status, JSON.stringify(body));
}

export function toErrorResponse(thrown: unknown): { status: number; body: ApiErrorBody } {
  if (thrown instanceof RegistryError) {
    return {
      status: thrown.status,
      body: {
        code: thrown.code,
        message: thrown.message,
        ...(thrown.details !== undefined ? { details: thrown.details } : {}),
      },
    };
  }
  const e = thrown as BodyParserError & { message?: string; code?: string };
  switch (e?.type) {
    case 'entity.parse.failed':
      return {
        status: 400,
        body: { code: ERROR_CODES.invalidJson, message: `request body is not valid JSON: ${e.message ?? ''}` },
      };
    case 'entity.too.large':
      return { status: 413, body: { code: ERROR_CODES.payloadTooLarge, message: 'request body is too large' } };
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return {
        status: 415,
        body: { code: ERROR_CODES.unsupportedMediaType, message: e.message ?? 'unsupported encoding' },
      };
    case 'request.aborted':
      return { status: 400, body: { code: ERROR_CODES.badRequest, message: 'request aborted' } };
  }
  // Express could not percent-decode a path parameter (e.g. "%ZZ"): the client's URL is broken.
  if (thrown instanceof URIError)
    return { status: 400, body: { code: ERROR_CODES.badRequest, message: 'the URL has a malformed percent-encoding' } };
  if (e?.code === 'ENOSPC' || e?.code === 'SQLITE_FULL')
    return {
      status: 507,
      body: { code: ERROR_CODES.storageFull, message: 'the registry is out of disk space; retry later' },
    };
  if (e?.code === 'ECONNRESET' || e?.code === 'ERR_STREAM_PREMATURE_CLOSE') {
    return { status: 400, body: { code: ERROR_CODES.badRequest, message: 'request aborted' } };
  }
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500 && e.expose) {
    return { status: e.status, body: { code: ERROR_CODES.badRequest, message: e.message ?? 'bad request' } };
  }
  return { status: 500, body: { code: ERROR_CODES.internal, message: 'internal error; see the registry log' } };
}
