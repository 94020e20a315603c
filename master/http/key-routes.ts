import { Router, type Request } from 'express';
import { ERROR_CODES } from '../../shared/error-codes.js';
import { KEY_KINDS, validateRegisterKey, type KeyKind } from '../../shared/key-schemas.js';
import { SITE_NAME_PATTERN, USER_NAME_PATTERN } from '../../shared/names.js';
import { BadRequestError } from '../errors.js';
import type { PublicKeys } from '../public-keys.js';
import { principalOf, requireSite, requireUser } from './auth.js';
import type { RegistryContext } from './context.js';
import { jsonBody } from './request-parsing.js';

const SITE_NAME = new RegExp(SITE_NAME_PATTERN);
const USER_NAME = new RegExp(USER_NAME_PATTERN);

function keyParams(req: Request): { kind: KeyKind; name: string } {
  const kind = req.params.kind;
  if (!KEY_KINDS.includes(kind as KeyKind))
    throw new BadRequestError(`kind must be one of ${KEY_KINDS.join(', ')}`, ERROR_CODES.badRequest);
  const name = String(req.params.principal ?? '');
  if (!(kind === 'user' ? USER_NAME : SITE_NAME).test(name))
    throw new BadRequestError(`invalid ${kind} name "${name.slice(0, 64)}"`, ERROR_CODES.badRequest);
  return { kind: kind as KeyKind, name };
}

/**
 * Public-key registration and relay. Sites and researchers register their own key (a change needs
 * a rotation signed by the registered key); both fetch the keys of others. Clients pin what they
 * get: the registry relays keys but cannot swap them unnoticed.
 */
export function keyRoutes(ctx: RegistryContext, keys: PublicKeys): Router {
  const router = Router();
  router.post('/site/public-key', requireSite, async (req, res) => {
    const body = jsonBody(req, validateRegisterKey);
    const site = principalOf(res);
    const { record, changed } = await keys.register('site', site.name, body.publicKey, body.rotation);
    if (changed) ctx.logger.info('public key registered', { site: site.name, fingerprint: record.fingerprint });
    res.status(changed ? 201 : 200).json(record);
  });
  router.get('/site/keys/:kind/:principal', requireSite, async (req, res) => {
    const { kind, name } = keyParams(req);
    res.json(await keys.get(kind, name));
  });
  router.post('/public-key', requireUser, async (req, res) => {
    const body = jsonBody(req, validateRegisterKey);
    const user = principalOf(res);
    const { record, changed } = await keys.register('user', user.name, body.publicKey, body.rotation);
    if (changed) ctx.logger.info('public key registered', { user: user.name, fingerprint: record.fingerprint });
    res.status(changed ? 201 : 200).json(record);
  });
  router.get('/keys/:kind/:principal', requireUser, async (req, res) => {
    const { kind, name } = keyParams(req);
    res.json(await keys.get(kind, name));
  });
  return router;
}
