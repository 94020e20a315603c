import { Router, type NextFunction, type Request, type Response } from 'express';
import { ERROR_CODES } from '../../shared/error-codes.js';
import { SITE_NAME_PATTERN } from '../../shared/names.js';
import type { CreatedSite, CreatedUser, SiteEnabled, UserInfo } from '../../shared/types.js';
import { BadRequestError, NotFoundError, RegistryError } from '../errors.js';
import { principalOf, requireUser } from './auth.js';
import type { RegistryContext } from './context.js';
import { jsonBody, query } from './request-parsing.js';
import { validateCreateSite, validateCreateUser, validateEmptyBody, validateEmptyQuery } from '../../shared/schemas.js';

const SITE_NAME = new RegExp(SITE_NAME_PATTERN);

function requireAdmin(_req: Request, res: Response, next: NextFunction): void {
  if (principalOf(res).role !== 'admin')
    throw new RegistryError(403, ERROR_CODES.forbidden, 'this route is for admins; use an admin token');
  next();
}

/**
 * Admin operations over REST (/api/v1/admin), the same as the `node master` admin commands:
 * create and disable sites, create researchers. A new key or token is in the response body
 * once and never stored in clear; responses carrying one are marked not to be cached.
 */
export function adminRoutes(ctx: RegistryContext): Router {
  const { store, events } = ctx;
  const router = Router();
  router.use(requireUser, requireAdmin);

  function siteNameParam(req: Request): string {
    const name = req.params.site;
    if (typeof name !== 'string' || !SITE_NAME.test(name))
      throw new BadRequestError(`invalid site name "${String(name).slice(0, 64)}"`, ERROR_CODES.badRequest);
    return name;
  }

  router.post('/sites', async (req, res) => {
    const body = jsonBody(req, validateCreateSite);
    const { secret } = await store.createPrincipal('site', body.name, 'site');
    ctx.logger.info('site created', { site: body.name, by: principalOf(res).name });
    const created: CreatedSite = { name: body.name, apiKey: secret };
    res.status(201).setHeader('Cache-Control', 'no-store').json(created);
  });

  router.post('/sites/:site/disable', async (req, res) => {
    const name = siteNameParam(req);
    jsonBody(req, validateEmptyBody, true);
    const site = (await store.listPrincipals('site')).find((p) => p.name === name);
    if (!site) throw new NotFoundError(`site "${name}"`);
    // Disabling fails the site's open runs: their tasks' watchers must hear of it.
    const open = await store.listSiteRuns(site.id, ['queued', 'assigned', 'running']);
    await store.setPrincipalEnabled('site', name, false);
    for (const taskId of new Set(open.map((r) => r.taskId))) events.notifyTask(taskId);
    // A disabled site's long poll is answered now rather than when it times out.
    events.notifySite(name);
    ctx.logger.info('site disabled', { site: name, by: principalOf(res).name });
    const body: SiteEnabled = { name, enabled: false };
    res.json(body);
  });

  // As `node master enable`: a key was revoked because it may be in the wrong hands, so enabling
  // the site issues a new one (shown once) and the old key stays revoked. The key is replaced
  // while the site is still disabled: there is no moment at which the old key works again.
  router.post('/sites/:site/enable', async (req, res) => {
    const name = siteNameParam(req);
    jsonBody(req, validateEmptyBody, true);
    const site = (await store.listPrincipals('site')).find((p) => p.name === name);
    if (!site) throw new NotFoundError(`site "${name}"`);
    if (site.enabled) {
      const body: SiteEnabled = { name, enabled: true };
      res.json(body);
      return;
    }
    const secret = await store.rotateSecret('site', name);
    if (!secret || !(await store.setPrincipalEnabled('site', name, true))) throw new NotFoundError(`site "${name}"`);
    ctx.logger.info('site enabled with a new key', { site: name, by: principalOf(res).name });
    const body: SiteEnabled = { name, enabled: true, apiKey: secret };
    res.setHeader('Cache-Control', 'no-store').json(body);
  });

  router.get('/users', async (req, res) => {
    query(req, validateEmptyQuery);
    const users: UserInfo[] = (await store.listPrincipals('user')).map((p) => ({
      name: p.name,
      role: p.role === 'admin' ? 'admin' : 'researcher',
      enabled: p.enabled,
      createdAt: p.createdAt,
      lastSeen: p.lastSeen,
    }));
    res.json(users);
  });

  router.post('/users', async (req, res) => {
    const body = jsonBody(req, validateCreateUser);
    const { secret } = await store.createPrincipal('user', body.name, body.role);
    ctx.logger.info('user created', { user: body.name, role: body.role, by: principalOf(res).name });
    const created: CreatedUser = { name: body.name, role: body.role, token: secret };
    res.status(201).setHeader('Cache-Control', 'no-store').json(created);
  });

  return router;
}
