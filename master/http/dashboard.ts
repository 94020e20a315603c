import fs from 'node:fs';
import path from 'node:path';
import express, { Router } from 'express';
import { ERROR_CODES } from '../../shared/error-codes.js';
import { RegistryError } from '../errors.js';

/**
 * The dashboard's Content-Security-Policy: its own scripts and styles only (no inline code, no
 * eval), requests to this registry only, nothing framed and no form posted anywhere. Output is
 * escaped by the UI itself; this is the second line of defence.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join('; ');

/** For everything else the registry serves (JSON, logs, result files): no active content at all. */
export const API_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox";

/**
 * Where `npm run build` puts the dashboard: dist/ui, beside dist/master. Found from this module's
 * place both when it runs compiled (dist/master/http) and from source (master/http, in tests).
 */
export function defaultDashboardDir(): string {
  const root = path.resolve(__dirname, '..', '..');
  return path.basename(root) === 'dist' ? path.join(root, 'ui') : path.join(root, 'dist', 'ui');
}

/** Serves the built dashboard (static files) under the path it is mounted on (/ui). */
export function dashboardRoutes(dir: string): Router {
  const router = Router();
  router.use((_req, res, next) => {
    res.setHeader('Content-Security-Policy', DASHBOARD_CSP);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    next();
  });
  router.use((req, _res, next) => {
    if (!fs.existsSync(path.join(dir, 'index.html')))
      throw new RegistryError(404, ERROR_CODES.notFound, 'the dashboard is not built: run `npm run build`');
    next();
  });
  router.use(
    express.static(dir, {
      index: 'index.html',
      dotfiles: 'ignore',
      redirect: true,
      setHeaders(res, file) {
        // Vite names assets by content hash: they never change under the same name.
        if (file.includes(`${path.sep}assets${path.sep}`))
          res.setHeader('Cache-Control', 'public, max-age=31536000, immutable');
        else res.setHeader('Cache-Control', 'no-cache');
      },
    }),
  );
  return router;
}
