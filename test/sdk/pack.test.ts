import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRegistry, type TestRegistry } from '../helpers/registry-fixture.js';
import { ensureSdkBuilt, ROOT } from './sdk-build.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<Result> {
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      { cwd, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir(), ...env }, timeout: 240_000 },
      (error, stdout, stderr) =>
        resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });
}

/**
 * The researcher's install: the SDK and CLI packed as a tarball (scripts/pack-sdk.js), installed
 * into an empty project without any network (its dependencies travel inside), then used against a
 * real registry.
 */
describe('the packed SDK and pht CLI on a researcher machine', () => {
  let registry: TestRegistry;
  let work: string;
  let project: string;
  let tarball: string;
  let install: Result;

  beforeAll(async () => {
    ensureSdkBuilt();
    work = makeTempDir('pht-pack-');
    const packed = await run(process.execPath, ['scripts/pack-sdk.js', '--out', work], ROOT);
    expect(packed.code, packed.stderr).toBe(0);
    tarball = packed.stdout.trim().split('\n').pop()!;
    project = path.join(work, 'project');
    fs.mkdirSync(project);
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'my-study', private: true }));
    install = await run('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball], project, {
      npm_config_cache: path.join(os.homedir(), '.npm'),
    });
    registry = await startTestRegistry();
    await registry.createSite('hospital-pack');
  }, 300_000);

  afterAll(async () => {
    await registry?.destroy();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('installs offline from the tarball without warnings, and leaves the registry and site code out', async () => {
    expect(install.code, install.stderr).toBe(0);
    expect(install.stderr).not.toMatch(/warn|ERR/i);
    const listing = await run('tar', ['tzf', tarball], work);
    expect(listing.stdout).toContain('package/dist/sdk/index.js');
    expect(listing.stdout).toContain('package/sdk/pht.js');
    expect(listing.stdout).not.toMatch(/better-sqlite3|dockerode|express|dist\/master|dist\/client/);
  });

  it('pht --help runs from the installed package', async () => {
    const help = await run(path.join(project, 'node_modules/.bin/pht'), ['--help'], project);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^Usage: pht <command>/);
  });

  it('pht sites lists the sites of a real registry', async () => {
    const token = await registry.createUser('pat');
    const sites = await run(path.join(project, 'node_modules/.bin/pht'), ['sites', '--json'], project, {
      PHT_URL: registry.url,
      PHT_TOKEN: token,
    });
    expect(sites.code, sites.stderr).toBe(0);
    expect((JSON.parse(sites.stdout) as { name: string }[]).map((s) => s.name)).toContain('hospital-pack');
  });

  it("require('pht') gives the SDK, which talks to the registry", async () => {
    const token = await registry.createUser('sam');
    const script = `const { PhtClient } = require('pht');
      const pht = new PhtClient({ url: process.env.PHT_URL, token: process.env.PHT_TOKEN });
      pht.listSites().then((s) => { console.log(s.map((x) => x.name).join(',')); return pht.close(); });`;
    const out = await run(process.execPath, ['-e', script], project, { PHT_URL: registry.url, PHT_TOKEN: token });
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout.trim().split(',')).toContain('hospital-pack');
  });

  it('npx pht works from a checkout of the repository', async () => {
    const help = await run('npx', ['--offline', 'pht', '--help'], ROOT);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^Usage: pht <command>/);
  });
});
