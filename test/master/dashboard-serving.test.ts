import fs from 'node:fs';
import path from 'node:path';
import express from 'express';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DASHBOARD_CSP, dashboardRoutes } from '../../master/http/dashboard.js';
import { registry } from './helpers.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

/** The dashboard's files as `npm run build` lays them out, in a temp dir. */
function fakeBuild(): string {
  const dir = makeTempDir('pht-ui-');
  fs.mkdirSync(path.join(dir, 'assets'));
  fs.writeFileSync(path.join(dir, 'index.html'), '<!doctype html><title>PHT</title>');
  fs.writeFileSync(path.join(dir, 'assets', 'index-abc123.js'), 'console.log(1)');
  fs.writeFileSync(path.join(dir, '.env'), 'SECRET=1');
  return dir;
}

describe('the dashboard served by the registry', () => {
  let dir: string;
  let app: express.Express;
  beforeAll(() => {
    dir = fakeBuild();
    app = express();
    app.use('/ui', dashboardRoutes(dir));
    app.use((_req, res) => void res.status(404).send('fallthrough'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('serves index.html at /ui/ with a strict CSP and no caching', async () => {
    const res = await request(app).get('/ui/').expect(200);
    expect(res.text).toContain('<title>PHT</title>');
    expect(res.headers['content-security-policy']).toBe(DASHBOARD_CSP);
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['x-frame-options']).toBe('DENY');
    expect(res.headers['referrer-policy']).toBe('no-referrer');
    expect(res.headers['cache-control']).toBe('no-cache');
  });

  it('allows no inline script or style, no eval and nothing from another origin', () => {
    const directives = new Map(
      DASHBOARD_CSP.split(';').map((d) => {
        const [name, ...values] = d.trim().split(/\s+/);
        return [name!, values] as const;
      }),
    );
    expect(directives.get('default-src')).toEqual(["'none'"]);
    for (const name of ['script-src', 'style-src', 'connect-src', 'img-src'])
      expect(directives.get(name), name).toEqual(["'self'"]);
    expect(DASHBOARD_CSP).not.toMatch(/unsafe-inline|unsafe-eval|https?:|\*|data:/);
    expect(directives.get('frame-ancestors')).toEqual(["'none'"]);
  });

  it('caches hashed assets for good', async () => {
    const res = await request(app).get('/ui/assets/index-abc123.js').expect(200);
    expect(res.headers['cache-control']).toContain('immutable');
    expect(res.headers['content-security-policy']).toBe(DASHBOARD_CSP);
  });

  it('serves nothing outside its folder and no dotfiles', async () => {
    for (const p of ['/ui/../package.json', '/ui/%2e%2e/%2e%2e/etc/passwd', '/ui/assets/..%2f..%2f..%2fetc%2fpasswd']) {
      const res = await request(app).get(p);
      expect(res.status, p).toBeGreaterThanOrEqual(400);
      expect(res.text).not.toContain('root:');
      expect(res.text).not.toContain('"name": "pht"');
    }
    const env = await request(app).get('/ui/.env');
    expect(env.text).not.toContain('SECRET');
  });

  it('answers 404 with a hint when the dashboard is not built', async () => {
    const empty = makeTempDir('pht-ui-empty-');
    const bare = express();
    bare.use('/ui', dashboardRoutes(empty));
    bare.use(
      (
        err: { status: number; message: string },
        _req: express.Request,
        res: express.Response,
        _next: express.NextFunction,
      ) => {
        res.status(err.status).send(err.message);
      },
    );
    const res = await request(bare).get('/ui/');
    expect(res.status).toBe(404);
    expect(res.text).toContain('npm run build');
    fs.rmSync(empty, { recursive: true, force: true });
  });
});

describe('the registry around the dashboard', () => {
  it('redirects / to /ui/ and sends a no-content CSP with every API answer', async () => {
    const reg = await registry();
    const root = await request(reg.url).get('/').expect(302);
    expect(root.headers.location).toBe('/ui/');
    const health = await request(reg.url).get('/healthz').expect(200);
    expect(health.headers['content-security-policy']).toMatch(/^default-src 'none'/);
    expect(health.headers['x-content-type-options']).toBe('nosniff');
    const refused = await request(reg.url).get('/api/v1/tasks').expect(401);
    expect(refused.headers['content-security-policy']).toMatch(/^default-src 'none'/);
    // The dashboard never needs a cookie: the registry sets none.
    expect(refused.headers['set-cookie']).toBeUndefined();
    expect((await request(reg.url).get('/ui/')).headers['set-cookie']).toBeUndefined();
  });
});
