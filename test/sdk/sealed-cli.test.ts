import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../../sdk/cli/main.js';
import {
  generateKeyPair,
  openTaskConfig,
  parsePublicKey,
  publicKeyToJson,
  seal,
  sealText,
} from '../../shared/crypto/index.js';
import { IMAGE, startWorld, type RegistryWorld } from './registry-world.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

let world: RegistryWorld;
let tmp: string;
let env: NodeJS.ProcessEnv;

beforeEach(async () => {
  world = await startWorld();
  tmp = makeTempDir('pht-sealed-cli-');
  env = {
    PHT_URL: world.registry.url,
    PHT_TOKEN: world.token,
    PHT_KEY_FILE: path.join(tmp, 'alice.key'),
    PHT_PINS_FILE: path.join(tmp, 'pins.json'),
  };
});

afterEach(async () => {
  await world.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function pht(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(args, {
    stdout: { write: (t: string) => (out += t), isTTY: false, columns: 100 },
    stderr: { write: (t: string) => (err += t) },
    env,
  });
  return { code, out, err };
}

/** Registers a site key through the site's own route, as `node client keys create` does. */
async function registerSiteKey(site: 'siteA' | 'siteB') {
  const key = generateKeyPair();
  await world[site].call('POST', '/public-key', { publicKey: publicKeyToJson(key.publicKey) });
  return key;
}

describe('pht with end-to-end encryption', () => {
  it('keys create makes a 0600 key pair and registers it; a second run keeps it', async () => {
    const first = await pht(['keys', 'create']);
    expect(first.code).toBe(0);
    const fingerprint = /fingerprint: (SHA256:\S+)/.exec(first.out)![1];
    expect(fs.statSync(env.PHT_KEY_FILE!).mode & 0o777).toBe(0o600);
    const registered = (await world.client.publicKey('user', 'alice')) as { fingerprint: string };
    expect(registered.fingerprint).toBe(fingerprint);
    expect((await pht(['keys', 'create'])).out).toContain(fingerprint!);
  });

  it('refuses --encrypt to a site without a registered key, naming it, and posts nothing', async () => {
    await pht(['keys', 'create']);
    await registerSiteKey('siteA');
    const r = await pht(['task', 'create', '--image', IMAGE, '--sites', 'site-a,site-b', '--encrypt']);
    expect(r.code).toBe(3);
    expect(r.err).toContain('site "site-b" has no registered public key');
    expect((await world.client.listTasks()).total).toBe(0);
    expect((await pht(['task', 'create', '--image', IMAGE, '--recipients', 'user:bob'])).code).toBe(2);
  });

  it('refuses --encrypt to a site whose key was revoked, saying so', async () => {
    await pht(['keys', 'create']);
    await registerSiteKey('siteA');
    const { PublicKeyStore } = await import('../../master/public-keys.js');
    const keys = new PublicKeyStore(world.registry.dataDir);
    await keys.revoke('site', 'site-a');
    await keys.close();
    const r = await pht(['task', 'create', '--image', IMAGE, '--sites', 'site-a', '--encrypt']);
    expect(r.code).toBe(3);
    expect(r.err).toMatch(/the public key of site "site-a" was revoked/);
    expect((await world.client.listTasks()).total).toBe(0);
  });

  it('posts a config only the sites can read, and opens the sealed log and results', async () => {
    await pht(['keys', 'create']);
    const siteKey = await registerSiteKey('siteA');
    const configFile = path.join(tmp, 'config.json');
    fs.writeFileSync(configFile, JSON.stringify({ secret: 'PLAINTEXT-CONFIG' }));
    const created = await pht([
      'task',
      'create',
      '--image',
      IMAGE,
      '--config',
      configFile,
      '--sites',
      'site-a',
      '--encrypt',
      '--json',
    ]);
    expect(created.code).toBe(0);
    const stored = await world.registry.store.getTaskConfig(JSON.parse(created.out).id);
    expect(stored!.config.toString()).not.toContain('PLAINTEXT-CONFIG');

    // The site opens it, checks the researcher's signature and seals what it sends back.
    const run = await world.siteA.claim();
    const opened = openTaskConfig(siteKey, run.config);
    const researcher = (await world.siteA.call('GET', '/keys/user/alice')).body as { publicKey: unknown };
    const researcherKey = parsePublicKey(researcher.publicKey);
    opened.verify(researcherKey);
    expect(opened.sealing.config).toEqual({ secret: 'PLAINTEXT-CONFIG' });
    await world.siteA.start(run.id);
    await world.siteA.log(run.id, sealText([researcherKey], 'PLAINTEXT-LOG\n'));
    await world.siteA.upload(
      run.id,
      'result.json',
      seal([researcherKey], Buffer.from('{"answer":"PLAINTEXT-RESULT"}')),
    );
    await world.siteA.call('POST', `/runs/${run.id}/finish`, { state: 'completed', exitCode: 0 });

    const logs = await pht(['task', 'logs', String(run.taskId)]);
    expect(logs.out).toContain('PLAINTEXT-LOG');
    const out = path.join(tmp, 'out');
    const results = await pht(['task', 'results', String(run.taskId), '--out', out]);
    expect(results.code).toBe(0);
    expect(fs.readFileSync(path.join(out, 'site-a', 'result.json'), 'utf8')).toBe('{"answer":"PLAINTEXT-RESULT"}');
  });
});
