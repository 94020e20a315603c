import type { ServerResponse } from 'node:http';
import type { NextFunction, Request, Response } from 'express';
import { ERROR_CODES } from '../../shared/error-codes.js';
import { RegistryError } from '../errors.js';
import type { Principal, RegistryStore } from '../store/registry-store.js';

const SEEN_WRITE_INTERVAL_MS = 5000;

/** Resolves an Authorization header to an enabled principal, or throws the RegistryError to answer. */
export type PrincipalResolver = (authorization: string | undefined, res?: ServerResponse) => Promise<Principal>;

/**
 * Resolves `Authorization: Bearer <secret>` to a principal. Unknown secrets and disabled
 * principals are refused; the secret itself is never logged. With `res`, a missing or malformed
 * header also gets its WWW-Authenticate answer header.
 */
export function principalResolver(store: RegistryStore): PrincipalResolver {
  // lastSeen is written at most every few seconds per principal: a thousand polling sites must not
  // turn every poll into a write.
  const lastWrite = new Map<number, number>();
  return async (header, res) => {
    const match = header ? /^Bearer ([A-Za-z0-9_.~+/=-]{8,512})$/.exec(header) : null;
    if (!match) {
      res?.setHeader('WWW-Authenticate', 'Bearer');
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
    return principal;
  };
}

/** Express middleware: the request's principal in res.locals (see principalOf). */
export function authenticate(resolve: PrincipalResolver) {
  return async (req: Request, res: Response, next: NextFunction) => {
    res.locals.principal = await resolve(req.headers.authorization, res);
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
