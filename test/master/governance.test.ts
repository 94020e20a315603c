import fs from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { main as masterMain } from '../../master/main.js';
import { runAdminCommand, UsageError } from '../../master/admin-cli.js';
import { generateReviewerKeyPair, keyIdOf, signDigest } from '../../shared/governance.js';
import type { RunAssignment } from '../../shared/types.js';
import { storeLocation } from '../helpers/registry-fixture.js';
import { world, type World } from './helpers.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

async function admin(w: World, ...argv: string[]): Promise<string> {
  const out: string[] = [];
  const flags: Record<string, string | true> = {};
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--json') flags.json = true;
    else if (argv[i] === '--org') flags.org = argv[++i]!;
    else args.push(argv[i]!);
  }
  await runAdminCommand(args[0]!, args.slice(1), flags, storeLocation(w.reg.dataDir), (t) => out.push(t));
  return out.join('\n');
}

/** Two organizations, one project "diabetes" holding site-a and alice; site-b outside it. */
async function governedWorld(): Promise<World> {
  const w = await world({ siteCount: 3 });
  await admin(w, 'create-org', 'umc');
  await admin(w, 'create-org', 'mumc');
  await admin(w, 'set-org', 'user', 'alice', 'umc');
  await admin(w, 'set-org', 'site', 'site-a', 'mumc');
  expect(JSON.parse(await admin(w, 'create-project', 'diabetes', '--json'))).toEqual({ project: 'diabetes' });
  expect(JSON.parse(await admin(w, 'add-to-project', 'diabetes', 'site', 'site-a', '--json'))).toEqual({
    project: 'diabetes',
    kind: 'site',
    name: 'site-a',
    added: true,
  });
  await admin(w, 'add-to-project', 'diabetes', 'site', 'site-c');
  await admin(w, 'add-to-project', 'diabetes', 'user', 'alice');
  return w;
}

describe('organizations and projects at the registry', () => {
  it('without any project, today rules hold: any enabled site, and the site learns who posted', async () => {
    const w = await world();
    const task = await w.researcher.createTask({ sites: ['site-b'] });
    expect(task.runs.map((r) => r.site)).toEqual(['site-b']);
    const run = await w.sites[1]!.claim();
    expect(run.postedBy).toEqual({ researcher: 'alice', organization: null, project: null });
    const refused = await w.researcher.post('/api/v1/tasks', { image: 'a/b:1', project: 'diabetes' });
    expect(refused.status).toBe(422);
    expect(refused.body.message).toContain('no projects are defined');
  });

  it('sends a task without sites to the enabled sites of the researcher only project, naming who posted', async () => {
    const w = await governedWorld();
    const task = await w.researcher.createTask();
    expect(task.runs.map((r) => r.site)).toEqual(['site-a', 'site-c']);
    const run: RunAssignment = await w.sites[0]!.claim();
    expect(run.postedBy).toEqual({ researcher: 'alice', organization: 'umc', project: 'diabetes' });
  });

  it('refuses a site outside the researcher project, naming it', async () => {
    const w = await governedWorld();
    const res = await w.researcher.post('/api/v1/tasks', { image: 'a/b:1', sites: ['site-a', 'site-b'] });
    expect(res.status).toBe(403);
    expect(res.body).toMatchObject({ code: 'forbidden', message: 'site(s) not in project "diabetes": site-b' });
    expect((await w.sites[1]!.get('/api/v1/site/runs/next').expect(204)).status).toBe(204);
  });

  it('refuses a researcher in no project, and a project the researcher is not in', async () => {
    const w = await governedWorld();
    const none = await w.other.post('/api/v1/tasks', { image: 'a/b:1' });
    expect(none.status).toBe(403);
    expect(none.body.message).toContain('you are in no project');
    const notMine = await w.other.post('/api/v1/tasks', { image: 'a/b:1', project: 'diabetes' });
    expect(notMine.status).toBe(403);
    expect(notMine.body.message).toBe('you are not a member of project "diabetes"');
    const unknown = await w.researcher.post('/api/v1/tasks', { image: 'a/b:1', project: 'nope' });
    expect(unknown.status).toBe(422);
  });

  it('asks a researcher in several projects to name one, and honours the named one', async () => {
    const w = await governedWorld();
    await admin(w, 'create-project', 'oncology');
    await admin(w, 'add-to-project', 'oncology', 'user', 'alice');
    await admin(w, 'add-to-project', 'oncology', 'site', 'site-b');
    const ambiguous = await w.researcher.post('/api/v1/tasks', { image: 'a/b:1' });
    expect(ambiguous.status).toBe(422);
    expect(ambiguous.body.message).toContain('several projects (diabetes, oncology)');
    const task = await w.researcher.createTask({ project: 'oncology' });
    expect(task.runs.map((r) => r.site)).toEqual(['site-b']);
    expect((await w.sites[1]!.claim()).postedBy).toEqual({
      researcher: 'alice',
      organization: 'umc',
      project: 'oncology',
    });
  });

  it('admin commands refuse bad names, unknown members and duplicates with a usage error', async () => {
    const w = await governedWorld();
    await expect(admin(w, 'create-org', 'UMC!')).rejects.toThrow(UsageError);
    await expect(admin(w, 'create-org', 'umc')).rejects.toThrow('already exists');
    await expect(admin(w, 'add-to-project', 'diabetes', 'site', 'site-z')).rejects.toThrow('site "site-z" not found');
    await expect(admin(w, 'add-to-project', 'nope', 'site', 'site-a')).rejects.toThrow('project "nope" not found');
    await expect(admin(w, 'create-site', 'site-q', '--org', 'nope')).rejects.toThrow('no organization named "nope"');
    expect(await admin(w, 'create-site', 'site-r', '--org', 'umc')).toContain('site "site-r" created');
    const orgs = JSON.parse(await admin(w, 'list', 'orgs', '--json')) as { name: string; members: string[] }[];
    expect(orgs.find((o) => o.name === 'umc')!.members.sort()).toEqual(['site:site-r', 'user:alice']);
    const projects = JSON.parse(await admin(w, 'list', 'projects', '--json')) as { name: string; members: string[] }[];
    expect(projects[0]!.members.sort()).toEqual(['site:site-a', 'site:site-c', 'user:alice']);
  });
});

describe('image signatures at the registry', () => {
  const digest = `sha256:${'ab'.repeat(32)}`;

  it('stores a valid signature beside its digest and lists it to researchers and sites', async () => {
    const w = await world();
    const { publicKey, privateKeyPem } = generateReviewerKeyPair();
    const signed = signDigest(privateKeyPem, digest);
    const res = await w.researcher.post('/api/v1/images/signatures', { digest, ...signed, signer: 'Dr. Jansen' });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body).toEqual({ digest, keyId: keyIdOf(publicKey), signer: 'Dr. Jansen' });
    const listed = (await w.other.get(`/api/v1/images/signatures?digest=${digest}`).expect(200)).body;
    expect(listed).toEqual([
      {
        digest,
        keyId: keyIdOf(publicKey),
        publicKey,
        signature: signed.signature,
        signer: 'Dr. Jansen',
        createdAt: expect.any(String),
      },
    ]);
    expect((await w.sites[0]!.get(`/api/v1/site/images/signatures?digest=${digest}`).expect(200)).body).toEqual(listed);
    expect((await w.other.get(`/api/v1/images/signatures?digest=sha256:${'cd'.repeat(32)}`).expect(200)).body).toEqual(
      [],
    );
  });

  it('refuses a signature of another digest, by another key, or malformed', async () => {
    const w = await world();
    const a = generateReviewerKeyPair();
    const b = generateReviewerKeyPair();
    const other = signDigest(a.privateKeyPem, `sha256:${'cd'.repeat(32)}`);
    const wrongDigest = await w.researcher.post('/api/v1/images/signatures', { digest, ...other, signer: 'x' });
    expect(wrongDigest.status).toBe(422);
    const mine = signDigest(a.privateKeyPem, digest);
    const wrongKey = await w.researcher.post('/api/v1/images/signatures', {
      digest,
      signature: mine.signature,
      publicKey: b.publicKey,
      signer: 'x',
    });
    expect(wrongKey.status).toBe(422);
    const bad = await w.researcher.post('/api/v1/images/signatures', { digest: 'latest', ...mine, signer: 'x' });
    expect(bad.status).toBe(400);
    expect((await w.researcher.get('/api/v1/images/signatures?digest=nope')).status).toBe(400);
    expect((await w.sites[0]!.post('/api/v1/images/signatures', { digest, ...mine, signer: 'x' })).status).toBe(403);
  });
});

describe('node master governance commands on the command line', () => {
  async function master(argv: string[]): Promise<{ code: number; out: string; err: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
    const error = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(a.join(' ')));
    try {
      return { code: await masterMain(argv, {}), out: out.join('\n'), err: err.join('\n') };
    } finally {
      log.mockRestore();
      error.mockRestore();
    }
  }

  it('creates organizations and projects and adds members, with --json, and refuses extra arguments', async () => {
    const dataDir = makeTempDir('pht-gov-cli-');
    try {
      const d = ['--data-dir', dataDir];
      expect(await master(['create-org', 'umc', '--json', ...d])).toMatchObject({
        code: 0,
        out: '{"organization":"umc"}',
      });
      expect((await master(['create-site', 'hospital-a', '--org', 'umc', ...d])).code).toBe(0);
      expect(await master(['create-project', 'diabetes', ...d])).toMatchObject({ code: 0 });
      const added = await master(['add-to-project', 'diabetes', 'site', 'hospital-a', '--json', ...d]);
      expect(added, added.err).toMatchObject({ code: 0 });
      expect(JSON.parse(added.out)).toEqual({ project: 'diabetes', kind: 'site', name: 'hospital-a', added: true });
      expect((await master(['add-to-project', 'diabetes', 'site', 'hospital-a', 'x', ...d])).code).toBe(2);
      expect((await master(['set-org', 'site', 'hospital-a', 'nope', ...d])).err).toContain(
        'organization "nope" not found',
      );
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
