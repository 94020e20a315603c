import type { NextFunction, Request, Response } from 'express';
import { ERROR_CODES } from '../../shared/error-codes.js';
import { RegistryError } from '../errors.js';
import type { Principal, RegistryStore } from '../store/registry-store.js';

const SEEN_WRITE_INTERVAL_MS = 5000;

/**
 * Resolves `Authorization: Bearer <secret>` to a principal. Unknown secrets and disabled
 * principals are refused; the secret itself is never logged.
 */
export function authenticate(store: RegistryStore) {
  // lastSeen is written at most every few seconds per principal: a thousand polling sites must not
  // turn every poll into a write.
  const lastWrite = new Map<number, number>();
  return async (req: Request, res: Response, next: NextFunction) => {
    const header = req.headers.authorization;
    const match = header ? /^Bearer ([A-Za-z0-9_.~+/=-]{8,512})$/.exec(header) : null;
    if (!match) {
      res.setHeader('WWW-Authenticate', 'Bearer');
      throw new RegistryError(
        401,
        ERROR_CODES.unauthorized,
        header
          ? 'malformed Authorization header: expected "Bearer <key>"'
          : 'missing Authorization header: send "Bearer <key>"',
      );
    }
    const principal = await store.authenticate(match[1]!);
    if (!principal) throw new RegistryError(401, ERROR_CODES.unauthorized, 'unknown API key or token');
    if (!principal.enabled)
      throw new RegistryError(403, ERROR_CODES.forbidden, `${principal.kind} "${principal.name}" is disabled`);
    const now = Date.now();
    if ((lastWrite.get(principal.id) ?? 0) + SEEN_WRITE_INTERVAL_MS < now) {
      lastWrite.set(principal.id, now);
      // Bookkeeping only: a full disk or a busy database must not turn a read into an error.
      await store.recordSeen(principal.id, new Date(now)).catch(() => undefined);
    }
    res.locals.principal = principal;
    next();
  };
}

export function principalOf(res: Response): Principal {
  return res.locals.principal as Principal;
}

export function requireSite(_req: Request, res: Response, next: NextFunction): void {
  if (principalOf(res).kind !== 'site')
    throw new RegistryError(403, ERROR_CODES.forbidden, 'this route is for sites; use a site API key');
  next();
}

export function requireUser(_req: Request, res: Response, next: NextFunction): void {
  if (principalOf(res).kind !== 'user')
    throw new RegistryError(403, ERROR_CODES.forbidden, 'this route is for researchers; use a researcher token');
  next();
}
