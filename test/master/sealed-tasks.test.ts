import { describe, expect, it } from 'vitest';
import { runAdminCommand } from '../../master/admin-cli.js';
import { generateKeyPair, publicKeyToJson, SEALED_CONFIG_FORMAT } from '../../shared/crypto/index.js';
import { storeLocation } from '../helpers/registry-fixture.js';
import { expectApiError, IMAGE, world, type World } from './helpers.js';

/** What a sealed config looks like to the registry: it never opens the envelope. */
const SEALED = { format: SEALED_CONFIG_FORMAT, version: 1, envelope: Buffer.from('opaque').toString('base64') };

async function registerKey(w: World, index: number): Promise<void> {
  const site = w.sites[index]!;
  await site.post('/api/v1/site/public-key', { publicKey: publicKeyToJson(generateKeyPair().publicKey) }).expect(201);
}

async function taskCount(w: World): Promise<number> {
  return ((await w.researcher.get('/api/v1/tasks').expect(200)).body as { total: number }).total;
}

describe('sealed tasks at the registry', () => {
  it('refuses a sealed task aimed at a site without a public key, naming the site, and creates nothing', async () => {
    const w = await world({ siteCount: 3 });
    await registerKey(w, 0);
    await registerKey(w, 2);
    const res = await w.researcher.post('/api/v1/tasks', {
      image: IMAGE,
      config: SEALED,
      sites: ['site-a', 'site-b', 'site-c'],
    });
    expectApiError(res, 422, 'site_without_key');
    expect(res.body.details).toEqual({ sites: ['site-b'] });
    expect(res.body.message).toContain('"site-b"');
    expect(await taskCount(w)).toBe(0);
  });

  it('refuses a sealed task aimed at a site whose key was revoked', async () => {
    const w = await world({ siteCount: 2 });
    await registerKey(w, 0);
    await registerKey(w, 1);
    await runAdminCommand('revoke-key', ['site', 'site-a'], {}, storeLocation(w.reg.dataDir), () => {});
    const res = await w.researcher.post('/api/v1/tasks', { image: IMAGE, config: SEALED, sites: ['site-a', 'site-b'] });
    expectApiError(res, 422, 'site_without_key');
    expect(res.body.details).toEqual({ sites: ['site-a'] });
    expect(await taskCount(w)).toBe(0);
  });

  it('refuses a sealed task that names no sites (it is sealed for named sites only)', async () => {
    const w = await world({ siteCount: 1 });
    await registerKey(w, 0);
    expectApiError(
      await w.researcher.post('/api/v1/tasks', { image: IMAGE, config: SEALED }),
      400,
      'validation_failed',
    );
    expect(await taskCount(w)).toBe(0);
  });

  it('accepts a sealed task when every site has an active key, and a plain task at sites without keys', async () => {
    const w = await world({ siteCount: 2 });
    await registerKey(w, 0);
    await registerKey(w, 1);
    const sealed = await w.researcher.post('/api/v1/tasks', {
      image: IMAGE,
      config: SEALED,
      sites: ['site-a', 'site-b'],
    });
    expect(sealed.status, JSON.stringify(sealed.body)).toBe(201);
    const w2 = await world({ siteCount: 1 });
    const plain = await w2.researcher.post('/api/v1/tasks', {
      image: IMAGE,
      config: { format: 'other' },
      sites: ['site-a'],
    });
    expect(plain.status).toBe(201);
  });
});
