import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runAdminCommand, UsageError } from '../../master/admin-cli.js';
import {
  FingerprintPins,
  KeyChangedError,
  generateKeyPair,
  parsePublicKey,
  publicKeyToJson,
  signRotation,
  writePublicKeyFile,
} from '../../shared/crypto/index.js';
import { validateKeyRecord } from '../../shared/key-schemas.js';
import { storeLocation } from '../helpers/registry-fixture.js';
import { expectApiError, world } from './helpers.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

describe('public keys at the registry', () => {
  it('registers a site key and relays it to researchers, and a researcher key to sites', async () => {
    const w = await world({ siteCount: 1 });
    const site = w.sites[0]!;
    const siteKey = generateKeyPair();
    const first = await site.post('/api/v1/site/public-key', { publicKey: publicKeyToJson(siteKey.publicKey) });
    expect(first.status).toBe(201);
    expect(first.body.fingerprint).toBe(siteKey.publicKey.fingerprint);
    const relayed = await w.researcher.get(`/api/v1/keys/site/${site.name}`);
    expect(relayed.status).toBe(200);
    expect(validateKeyRecord(relayed.body)).toBe(true);
    expect(parsePublicKey(relayed.body.publicKey).fingerprint).toBe(siteKey.publicKey.fingerprint);

    const userKey = generateKeyPair();
    await w.researcher.post('/api/v1/public-key', { publicKey: publicKeyToJson(userKey.publicKey) }).expect(201);
    const forSite = await site.get('/api/v1/site/keys/user/alice');
    expect(forSite.body.fingerprint).toBe(userKey.publicKey.fingerprint);
    expectApiError(await site.get('/api/v1/site/keys/user/bob'), 404, 'not_found');
  });

  it('refuses to replace a key without a rotation signed by the registered key', async () => {
    const w = await world({ siteCount: 1 });
    const site = w.sites[0]!;
    const [k1, k2, eve] = [generateKeyPair(), generateKeyPair(), generateKeyPair()];
    await site.post('/api/v1/site/public-key', { publicKey: publicKeyToJson(k1.publicKey) }).expect(201);
    expectApiError(
      await site.post('/api/v1/site/public-key', { publicKey: publicKeyToJson(eve.publicKey) }),
      409,
      'conflict',
    );
    const forged = { ...signRotation(eve, eve.publicKey), old: publicKeyToJson(k1.publicKey) };
    expectApiError(
      await site.post('/api/v1/site/public-key', { publicKey: publicKeyToJson(eve.publicKey), rotation: forged }),
      409,
      'conflict',
    );
    const rotation = signRotation(k1, k2.publicKey);
    const rotated = await site.post('/api/v1/site/public-key', { publicKey: publicKeyToJson(k2.publicKey), rotation });
    expect(rotated.status).toBe(201);
    expect(rotated.body.rotations).toHaveLength(1);
    // A client that pinned k1 follows the relayed rotation to k2.
    const pins = new FingerprintPins(null);
    pins.accept(`site:${site.name}`, k1.publicKey);
    const record = (await w.researcher.get(`/api/v1/keys/site/${site.name}`)).body;
    expect(pins.accept(`site:${site.name}`, parsePublicKey(record.publicKey), record.rotations).fingerprint).toBe(
      k2.publicKey.fingerprint,
    );
    expect(() => pins.accept(`site:${site.name}`, eve.publicKey, record.rotations)).toThrow(KeyChangedError);
  });

  it('registers a TTP from the command line and stops handing out a revoked key', async () => {
    const w = await world({ siteCount: 1 });
    const dir = makeTempDir('pht-ttp-');
    try {
      const ttp = generateKeyPair();
      writePublicKeyFile(path.join(dir, 'ttp.pub'), ttp.publicKey);
      const out: string[] = [];
      const flags = { url: 'http://10.0.0.5:5100/', 'public-key': path.join(dir, 'ttp.pub'), json: true as const };
      await runAdminCommand('add-ttp', ['ttp-one'], flags, storeLocation(w.reg.dataDir), (t) => out.push(t));
      expect(JSON.parse(out[0]!)).toEqual({
        name: 'ttp-one',
        url: 'http://10.0.0.5:5100',
        fingerprint: ttp.publicKey.fingerprint,
      });
      const record = (await w.sites[0]!.get('/api/v1/site/keys/ttp/ttp-one').expect(200)).body;
      expect(record.url).toBe('http://10.0.0.5:5100');
      await expect(
        runAdminCommand('add-ttp', ['ttp-two'], { url: 'ftp://x' }, storeLocation(w.reg.dataDir), () => {}),
      ).rejects.toThrow(UsageError);
      await expect(
        runAdminCommand('add-ttp', ['ttp-two'], { url: 'http://x:1' }, storeLocation(w.reg.dataDir), () => {}),
      ).rejects.toThrow(/--public-key/);
      await runAdminCommand('revoke-key', ['ttp', 'ttp-one'], {}, storeLocation(w.reg.dataDir), () => {});
      const revoked = await w.researcher.get('/api/v1/keys/ttp/ttp-one');
      expectApiError(revoked, 410, 'key_revoked');
      expect(revoked.body.message).toContain('ttp "ttp-one"');
      await expect(
        runAdminCommand('revoke-key', ['ttp', 'ttp-one'], {}, storeLocation(w.reg.dataDir), () => {}),
      ).rejects.toThrow(UsageError);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
