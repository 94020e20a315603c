/**
 * What may run at a governed site, against the real Docker engine and the loopback image registry:
 * signatures bound to the digest (signed, unsigned, wrong signer, moved tag, distinct
 * organizations) and who may ask (researcher and organization denied, project allow rules).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SiteClient } from '../../client/site-client.js';
import { startSparqlServer, type RunningSparqlServer } from '../../demo/sparql-server.js';
import { main as pht } from '../../sdk/cli/main.js';
import { generateReviewerKeyPair } from '../../shared/governance.js';
import { buildAndPushImage, deleteLocalImage, docker } from '../helpers/docker.js';
import { startTestRegistry, type TestRegistry } from '../helpers/registry-fixture.js';
import { cleanupSite, clientConfig, E2E_REPO, Researcher, startClient, uniqueSiteName } from './site-harness.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

const ALGORITHM = `const fs = require('fs');
fs.writeFileSync(process.env.PHT_OUTPUT_DIR + '/result.json', JSON.stringify({ variant: fs.readFileSync('/app/variant.txt', 'utf8') }));
`;

/** A reviewer: a key pair on disk and a registry token to store signatures with. */
interface Reviewer {
  name: string;
  organization: string;
  keyFile: string;
  publicKey: string;
  token: string;
}

async function cli(argv: string[], env: Record<string, string>): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await pht(argv, {
    stdout: { write: (t: string) => (out += t) },
    stderr: { write: (t: string) => (err += t) },
    env,
  });
  return { code, out, err };
}

async function isLocal(ref: string): Promise<boolean> {
  try {
    await docker().getImage(ref).inspect();
    return true;
  } catch {
    return false;
  }
}

describe('a governed site decides what may run before pulling anything', () => {
  let registry: TestRegistry;
  let sparql: RunningSparqlServer;
  let researcher: Researcher;
  let mallory: Researcher;
  const reviewers: Reviewer[] = [];
  const clients: SiteClient[] = [];
  const sites: string[] = [];
  const repo = `${E2E_REPO}/gov-${crypto.randomBytes(4).toString('hex')}`;
  let keyDir: string;

  async function reviewer(name: string, organization: string): Promise<Reviewer> {
    const { publicKey, privateKeyPem } = generateReviewerKeyPair();
    const keyFile = path.join(keyDir, `${name}.pem`);
    fs.writeFileSync(keyFile, privateKeyPem, { mode: 0o600 });
    const r = { name, organization, keyFile, publicKey, token: await registry.createUser(name) };
    reviewers.push(r);
    return r;
  }

  async function sign(image: string, r: Reviewer): Promise<string> {
    const res = await cli(['image', 'sign', image, '--key', r.keyFile, '--json'], {
      PHT_URL: registry.url,
      PHT_TOKEN: r.token,
    });
    expect(res.code, res.err).toBe(0);
    return (JSON.parse(res.out) as { digest: string }).digest;
  }

  async function site(policy: Record<string, unknown>): Promise<string> {
    const name = uniqueSiteName('gov');
    sites.push(name);
    const config = clientConfig(registry.url, await registry.createSite(name), sparql.url, {
      network: { mode: 'none' },
      policy,
    });
    clients.push(await startClient(config));
    return name;
  }

  async function runOnce(image: string, siteName: string, who: Researcher = researcher) {
    await deleteLocalImage(image);
    const task = await who.post(image, {}, [siteName]);
    const done = await who.waitDone(task.id);
    return done.runs[0]!;
  }

  const trusted = (...rs: Reviewer[]) =>
    rs.map((r) => ({ name: r.name, organization: r.organization, publicKey: r.publicKey }));

  beforeAll(async () => {
    keyDir = makeTempDir('pht-keys-');
    registry = await startTestRegistry();
    sparql = await startSparqlServer({ host: '127.0.0.1', turtle: '<urn:p1> <urn:age> 40 .' });
    researcher = new Researcher(registry, await registry.createUser('alice'));
    mallory = new Researcher(registry, await registry.createUser('mallory'));
    await registry.store.createOrganization('umc');
    await registry.store.createOrganization('mumc');
    await registry.store.setOrganization('user', 'alice', 'umc');
    await reviewer('rev-umc', 'umc');
    await reviewer('rev-umc-2', 'umc');
    await reviewer('rev-mumc', 'mumc');
    await reviewer('outsider', 'other');
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    for (const s of sites) await cleanupSite(s);
    await sparql?.close();
    await registry?.destroy();
    fs.rmSync(keyDir, { recursive: true, force: true });
  });

  it('runs exactly the signed digest, and refuses an unsigned or wrongly signed image without pulling it', async () => {
    const [umc, umc2, mumc, outsider] = reviewers as [Reviewer, Reviewer, Reviewer, Reviewer];
    const siteName = await site({ run: { trustedKeys: trusted(umc, umc2, mumc), requiredSignatures: 1 } });
    const signedTag = `${repo}/signed:1`;
    const pushed = await buildAndPushImage(
      signedTag,
      { 'main.js': ALGORITHM, 'variant.txt': 'a' },
      { cmd: ['/app/main.js'] },
    );
    const digest = await sign(signedTag, umc);
    expect(pushed.endsWith(`@${digest}`)).toBe(true);
    const listed = await cli(['image', 'signatures', signedTag, '--json'], {
      PHT_URL: registry.url,
      PHT_TOKEN: umc.token,
    });
    expect(JSON.parse(listed.out).signatures).toMatchObject([{ signer: 'rev-umc', valid: true }]);

    const ok = await runOnce(signedTag, siteName);
    expect(ok.status, ok.reason ?? '').toBe('completed');
    expect(ok.digest).toBe(pushed);
    expect(JSON.parse(await researcher.file(ok.id, 'result.json'))).toEqual({ variant: 'a' });

    const unsignedTag = `${repo}/unsigned:1`;
    await buildAndPushImage(unsignedTag, { 'main.js': ALGORITHM, 'variant.txt': 'u' }, { cmd: ['/app/main.js'] });
    const unsigned = await runOnce(unsignedTag, siteName);
    expect(unsigned.status).toBe('rejected');
    expect(unsigned.reason).toMatch(/has no valid signature by a trusted key; the site requires 1 signature\(s\)$/);
    expect(await isLocal(unsignedTag)).toBe(false);

    const wrongTag = `${repo}/wrong-signer:1`;
    await buildAndPushImage(wrongTag, { 'main.js': ALGORITHM, 'variant.txt': 'w' }, { cmd: ['/app/main.js'] });
    await sign(wrongTag, outsider);
    const wrong = await runOnce(wrongTag, siteName);
    expect(wrong.status).toBe('rejected');
    expect(wrong.reason).toContain('no valid signature by a trusted key');
    expect(wrong.reason).toContain('also 1 by keys the site does not trust');
    expect(await isLocal(wrongTag)).toBe(false);
  });

  it('refuses a tag moved to an unsigned digest after the signed one was reviewed', async () => {
    const [umc, umc2, mumc] = reviewers as [Reviewer, Reviewer, Reviewer];
    const siteName = await site({ run: { trustedKeys: trusted(umc, umc2, mumc), requiredSignatures: 1 } });
    const tag = `${repo}/moving:1`;
    await buildAndPushImage(tag, { 'main.js': ALGORITHM, 'variant.txt': 'reviewed' }, { cmd: ['/app/main.js'] });
    const signed = await sign(tag, umc);
    const moved = await buildAndPushImage(
      tag,
      { 'main.js': ALGORITHM, 'variant.txt': 'swapped' },
      { cmd: ['/app/main.js'] },
    );
    expect(moved.endsWith(signed)).toBe(false);
    const run = await runOnce(tag, siteName);
    expect(run.status).toBe('rejected');
    expect(run.reason).toContain(`image digest ${moved.split('@')[1]} has no valid signature`);
    expect(await isLocal(tag)).toBe(false);
  });

  it('needs signatures from distinct organizations when the policy says so', async () => {
    const [umc, umc2, mumc] = reviewers as [Reviewer, Reviewer, Reviewer];
    const siteName = await site({
      run: { trustedKeys: trusted(umc, umc2, mumc), requiredSignatures: 2, distinctOrganizations: 2 },
    });
    const tag = `${repo}/two-orgs:1`;
    await buildAndPushImage(tag, { 'main.js': ALGORITHM, 'variant.txt': 'two' }, { cmd: ['/app/main.js'] });
    await sign(tag, umc);
    await sign(tag, umc2);
    const oneOrg = await runOnce(tag, siteName);
    expect(oneOrg.status).toBe('rejected');
    expect(oneOrg.reason).toContain('has 2 valid signature(s) by trusted keys (rev-umc of umc, rev-umc-2 of umc)');
    expect(oneOrg.reason).toContain('requires 2 signature(s) from 2 organization(s)');
    await sign(tag, mumc);
    const twoOrgs = await runOnce(tag, siteName);
    expect(twoOrgs.status, twoOrgs.reason ?? '').toBe('completed');
  });

  it('refuses a denied researcher and a denied organization with the reason, and honours allow rules', async () => {
    const siteName = await site({
      run: {
        deny: [
          { researcher: 'mallory', reason: 'left the consortium' },
          { organization: 'umc', image: '.*/denied-for-umc:.*', reason: 'umc may not run this analysis here' },
        ],
        allow: [{ organization: 'umc' }, { researcher: 'mallory' }],
      },
    });
    const tag = `${repo}/plain:1`;
    await buildAndPushImage(tag, { 'main.js': ALGORITHM, 'variant.txt': 'p' }, { cmd: ['/app/main.js'] });
    const denied = await runOnce(tag, siteName, mallory);
    expect(denied.status).toBe('rejected');
    expect(denied.reason).toBe(
      `refused by site ${siteName}: denied by site policy (policy.run.deny[0]: researcher mallory): left the consortium`,
    );
    expect(await isLocal(tag)).toBe(false);

    const orgTag = `${repo}/denied-for-umc:1`;
    await buildAndPushImage(orgTag, { 'main.js': ALGORITHM, 'variant.txt': 'o' }, { cmd: ['/app/main.js'] });
    const orgDenied = await runOnce(orgTag, siteName);
    expect(orgDenied.status).toBe('rejected');
    expect(orgDenied.reason).toContain('organization umc');
    expect(orgDenied.reason).toContain('umc may not run this analysis here');

    const allowed = await runOnce(tag, siteName);
    expect(allowed.status, allowed.reason ?? '').toBe('completed');

    const bob = new Researcher(registry, await registry.createUser('bob'));
    const notAllowed = await runOnce(tag, siteName, bob);
    expect(notAllowed.status).toBe('rejected');
    expect(notAllowed.reason).toContain('no allow rule of the site policy matches (researcher bob, organization none');
  });
});
