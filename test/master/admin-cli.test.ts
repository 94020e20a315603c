import fs from 'node:fs';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../master/main.js';
import { ensureBuilt, registry, ResearcherClient, runMaster, SiteClient } from './helpers.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

const dirs: string[] = [];
function dataDir(): string {
  const d = makeTempDir('pht-admin-cli-');
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

beforeAll(() => ensureBuilt(), 180_000);

describe('node master admin commands', () => {
  it('create-site --json prints the name and an API key that the registry accepts', async () => {
    const reg = await registry();
    const res = await runMaster(['create-site', 'hospital-1', '--json', '--data-dir', reg.dataDir]);
    expect(res.code, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout) as { name: string; apiKey: string };
    expect(Object.keys(out).sort()).toEqual(['apiKey', 'name']);
    expect(out.name).toBe('hospital-1');
    expect(out.apiKey).toMatch(/^pht_site_[A-Za-z0-9_-]{43}$/);
    expect((await new SiteClient(reg.url, out.apiKey, 'hospital-1').get('/api/v1/site/me').expect(200)).body).toEqual({
      name: 'hospital-1',
      kind: 'site',
    });
  });

  it('create-user --json prints the name, role (researcher unless --role admin) and a token', async () => {
    const reg = await registry();
    const [alice, root, carol] = await Promise.all([
      runMaster(['create-user', 'alice', '--role', 'researcher', '--json', '--data-dir', reg.dataDir]),
      runMaster(['create-user', 'root@example.org', '--role=admin', '--json', '--data-dir', reg.dataDir]),
      runMaster(['create-user', 'carol', '--json', '--data-dir', reg.dataDir]),
    ]);
    for (const r of [alice, root, carol]) expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(alice.stdout)).toEqual({
      name: 'alice',
      role: 'researcher',
      token: expect.stringMatching(/^pht_user_/),
    });
    expect(JSON.parse(carol.stdout)).toEqual({
      name: 'carol',
      role: 'researcher',
      token: expect.stringMatching(/^pht_user_/),
    });
    const admin = JSON.parse(root.stdout) as { name: string; role: string; token: string };
    expect(admin.role).toBe('admin');
    expect((await new ResearcherClient(reg.url, admin.token).get('/api/v1/me').expect(200)).body).toEqual({
      name: 'root@example.org',
      kind: 'user',
      role: 'admin',
    });
    expect(
      (await new ResearcherClient(reg.url, JSON.parse(alice.stdout).token).get('/api/v1/me').expect(200)).body.role,
    ).toBe('researcher');
  });

  it('prints the key once in plain text without --json', async () => {
    const r = await runMaster(['create-site', 'plain', '--data-dir', dataDir()]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^site "plain" created\napi key \(shown once\): pht_site_\S+\n$/);
  });

  it('refuses a duplicate site or user name with a clear message and exit code 2', async () => {
    const reg = await registry();
    await reg.createSite('twin');
    await reg.createUser('dora');
    const [site, user, sameNameOtherKind] = await Promise.all([
      runMaster(['create-site', 'twin', '--json', '--data-dir', reg.dataDir]),
      runMaster(['create-user', 'dora', '--role', 'admin', '--data-dir', reg.dataDir]),
      // A site and a user may share a name: they are different kinds of principal.
      runMaster(['create-user', 'twin', '--data-dir', reg.dataDir]),
    ]);
    expect(site.code).toBe(2);
    expect(site.stdout).toBe('');
    expect(site.stderr.trim()).toBe('error: a site named "twin" already exists');
    expect(user.code).toBe(2);
    expect(user.stderr.trim()).toBe('error: a user named "dora" already exists');
    expect(sameNameOtherKind.code, sameNameOtherKind.stderr).toBe(0);
  });

  it('exits 2 with a usage error as a child process too', async () => {
    const r = await runMaster(['create-site', 'Upper-Case', '--json', '--data-dir', dataDir()]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim()).toBe('error: invalid site name (lowercase letters, digits, "-" and "_"): "Upper-Case"');
  });

  // The same entry point in-process (main() is what `node master` calls): no process per case.
  it.each([
    [['create-site'], /missing site name/],
    [['create-site', 'Upper-Case'], /invalid site name/],
    [['create-site', '../escape'], /invalid site name/],
    [['create-user', 'eve', '--role', 'root'], /--role must be researcher or admin/],
    [['create-user', 'has space'], /invalid user name/],
    [['revoke', 'site'], /missing site name/],
    [['revoke', 'group', 'x'], /expected "site" or "user"/],
    [['revoke', 'site', 'nobody'], /no site named "nobody"/],
    [['enable', 'user', 'nobody'], /no user named "nobody"/],
    [['rotate-key', 'site', 'nobody'], /no site named "nobody"/],
    [['list', 'everything'], /list takes "sites", "users", "orgs" or "projects"/],
    [['explode'], /unknown command "explode"/],
    [['--port', 'abc'], /--port must be an integer/],
    [['--prot', '5001'], /unknown option --prot\nUsage: node master/],
    [['serve', '--port', '5001', '--verbose'], /unknown option --verbose/],
    [['create-site', 'x', '--port', '5001'], /option --port is not an option of "create-site"/],
    [['create-site', 'x', 'y'], /"create-site" takes at most 1 argument/],
    [['list', '--role', 'admin'], /option --role is not an option of "list"/],
  ])('node master %j exits 2 with a usage error', async (args, message) => {
    const out: string[] = [];
    const err: string[] = [];
    const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
    const error = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(a.join(' ')));
    try {
      expect(await main([...args, '--data-dir', dataDir()], {})).toBe(2);
    } finally {
      log.mockRestore();
      error.mockRestore();
    }
    expect(out).toEqual([]);
    expect(err.join('\n')).toMatch(message);
    expect(err.join('\n')).not.toMatch(/\n\s+at /);
  });

  it('lists sites and users as JSON without ids or secrets', async () => {
    const reg = await registry();
    await reg.createSite('site-b');
    await reg.createSite('site-a');
    await reg.createUser('alice');
    await reg.store.setPrincipalEnabled('site', 'site-b', false);
    const [all, sitesOnly] = await Promise.all([
      runMaster(['list', '--json', '--data-dir', reg.dataDir]),
      runMaster(['list', 'sites', '--json', '--data-dir', reg.dataDir]),
    ]);
    expect(all.code, all.stderr).toBe(0);
    const principals = JSON.parse(all.stdout) as Record<string, unknown>[];
    expect(principals.map((p) => [p.kind, p.name, p.role, p.enabled])).toEqual([
      ['site', 'site-a', 'site', true],
      ['site', 'site-b', 'site', false],
      ['user', 'alice', 'researcher', true],
    ]);
    for (const p of principals)
      expect(Object.keys(p).sort()).toEqual(['createdAt', 'enabled', 'kind', 'lastSeen', 'name', 'role']);
    expect((JSON.parse(sitesOnly.stdout) as { name: string }[]).map((p) => p.name)).toEqual(['site-a', 'site-b']);
  });

  it('rotate-key --json prints a new token for a user and the old one stops working', async () => {
    const reg = await registry();
    const token = await reg.createUser('alice');
    const rotated = await runMaster(['rotate-key', 'user', 'alice', '--json', '--data-dir', reg.dataDir]);
    expect(rotated.code, rotated.stderr).toBe(0);
    const out = JSON.parse(rotated.stdout) as { kind: string; name: string; token: string };
    expect(out).toEqual({ kind: 'user', name: 'alice', token: expect.stringMatching(/^pht_user_/) });
    await new ResearcherClient(reg.url, token).get('/api/v1/me').expect(401);
    await new ResearcherClient(reg.url, out.token).get('/api/v1/me').expect(200);
  });

  it('prints usage with --help and exits 0', async () => {
    const r = await runMaster(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('node master create-site NAME');
  });
});
