/**
 * End-to-end encryption through the real train: a sealed task runs in a real container at a real
 * site client, and afterwards the registry's whole data directory (SQLite file, WAL, result
 * files) is scanned for the plaintext config and result markers: none may be there. The
 * researcher opens everything transparently.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runKeysCommand } from '../../client/keys-command.js';
import type { SiteClient } from '../../client/site-client.js';
import { startSparqlServer, type RunningSparqlServer } from '../../demo/sparql-server.js';
import { PhtClient } from '../../sdk/client.js';
import { PhtSealingError, ResearcherKeys } from '../../sdk/sealed.js';
import { generateKeyPair, sealTaskConfig } from '../../shared/crypto/index.js';
import { buildAndPushImage } from '../helpers/docker.js';
import { startTestRegistry, type TestRegistry } from '../helpers/registry-fixture.js';
import { cleanupSite, clientConfig, E2E_REPO, startClient, uniqueSiteName } from './site-harness.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

const SEALED_IMAGE = `${E2E_REPO}/sealed:1`;
const source = fs.readFileSync(path.join(__dirname, 'images', 'sealed', 'main.js'), 'utf8');

/** Every file under `dir` that contains `needle` (bytes), with where. */
function scan(dir: string, needle: string): string[] {
  const hits: string[] = [];
  const bytes = Buffer.from(needle, 'utf8');
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && fs.readFileSync(p).includes(bytes)) hits.push(path.relative(dir, p));
    }
  };
  walk(dir);
  return hits;
}

describe('sealed tasks through the real train', () => {
  let registry: TestRegistry;
  let sparql: RunningSparqlServer;
  let site: string;
  let keylessSite: string;
  let client: SiteClient;
  let keylessClient: SiteClient;
  let pht: PhtClient;
  let keys: ResearcherKeys;
  let dir: string;

  beforeAll(async () => {
    dir = makeTempDir('pht-sealed-');
    registry = await startTestRegistry();
    sparql = await startSparqlServer({ host: '127.0.0.1', turtle: '<urn:p1> <urn:age> 40 .' });
    await buildAndPushImage(SEALED_IMAGE, { 'main.js': source }, { cmd: ['/app/main.js'] });
    site = uniqueSiteName('sealed');
    keylessSite = uniqueSiteName('keyless');
    const config = clientConfig(registry.url, await registry.createSite(site), sparql.url);
    // `node client keys create`: the site's key pair, registered with the registry.
    const printed: string[] = [];
    await runKeysCommand('create', {}, config, (t) => printed.push(t));
    expect(printed.join('\n')).toMatch(/fingerprint: SHA256:/);
    expect(fs.statSync(config.keys.keyFile).mode & 0o777).toBe(0o600);
    client = await startClient(config);
    keylessClient = await startClient(clientConfig(registry.url, await registry.createSite(keylessSite), sparql.url));
    pht = new PhtClient({ url: registry.url, token: await registry.createUser('rita') });
    keys = new ResearcherKeys({ keyFile: path.join(dir, 'rita.key'), pinsFile: path.join(dir, 'pins.json') });
    await keys.create(pht);
  });

  afterAll(async () => {
    await client?.close();
    await keylessClient?.close();
    await cleanupSite(site);
    await cleanupSite(keylessSite);
    await pht?.close();
    await sparql?.close();
    await registry?.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('runs a sealed task; the registry holds no plaintext and the researcher opens everything', async () => {
    const marker = `PLAINTEXT-${crypto.randomBytes(8).toString('hex')}`;
    const task = await keys.createSealedTask(pht, { image: SEALED_IMAGE, config: { marker }, sites: [site] });
    const done = await pht.waitForTask(task.id, { timeoutMs: 150_000 });
    const run = done.runs[0]!;
    expect(run.status, run.reason ?? '').toBe('completed');

    // What the registry holds and serves is ciphertext.
    expect(JSON.stringify(await pht.getTask(task.id))).not.toContain(marker);
    const rawLog = await pht.getRunLog(run.id);
    expect(rawLog).not.toContain(marker);
    expect(rawLog).toContain('pht-sealed:');
    const rawRun = await pht.getRun(run.id);
    expect(JSON.stringify(rawRun)).not.toContain(marker);
    const saved = await pht.saveRunFiles(run.id, path.join(dir, 'out'));
    expect(saved.map((f) => f.name).sort()).toEqual(['big.txt', 'result.json']);
    for (const f of saved) expect(fs.readFileSync(f.path).includes(marker)).toBe(false);

    // The scan: the registry's whole data directory (SQLite, WAL, result files), then again after
    // a checkpoint into the main database file when the registry closes.
    expect(scan(registry.dataDir, marker)).toEqual([]);

    // The researcher opens results, log and progress transparently.
    const opened = await keys.openFiles(saved);
    const result = JSON.parse(fs.readFileSync(opened.find((f) => f.name === 'result.json')!.path, 'utf8'));
    expect(result).toEqual({ marker: `${marker}-RESULT`, config: { marker } });
    expect(fs.readFileSync(opened.find((f) => f.name === 'big.txt')!.path, 'utf8')).toBe(
      `${marker}-BIG\n`.repeat(20000),
    );
    expect(keys.openLog(rawLog)).toContain(`log line with ${marker}-LOG`);
    expect(keys.openLog(String(rawRun.progress?.message ?? ''))).toBe(`${marker}-PROGRESS`);
  });

  it('refuses at submit a sealed task to a site without a registered key, naming the site', async () => {
    await expect(
      keys.createSealedTask(pht, { image: SEALED_IMAGE, config: { marker: 'x' }, sites: [site, keylessSite] }),
    ).rejects.toThrow(
      new PhtSealingError(`site "${keylessSite}" has no registered public key, so nothing can be sealed for it`),
    );
    expect((await pht.listTasks()).tasks.every((t) => t.runs.every((r) => r.site !== keylessSite))).toBe(true);
  });

  it('fails a run whose sealed config the site cannot open, with the reason', async () => {
    // Sealed for another key than the site's (a registry that swapped keys would produce this).
    const stranger = generateKeyPair();
    const config = sealTaskConfig(
      keys.ring().current,
      { owner: 'rita', config: { marker: 'never-run' }, resultRecipients: ['user:rita'], ttp: null },
      [stranger.publicKey],
    );
    // The registry refuses what it can tell is undeliverable (a target without a key) from any
    // client; a site that lost its key after registering fails closed (test/client/sealing.test.ts).
    await expect(pht.createTask({ image: SEALED_IMAGE, config, sites: [keylessSite, site] })).rejects.toMatchObject({
      status: 422,
      code: 'site_without_key',
    });
    const task = await pht.createTask({ image: SEALED_IMAGE, config, sites: [site] });
    const done = await pht.waitForTask(task.id, { timeoutMs: 60_000 });
    const byName = Object.fromEntries(done.runs.map((r) => [r.site, r]));
    expect(byName[site]!.status).toBe('failed');
    expect(byName[site]!.reason).toMatch(/not sealed for this key/);
  });

  it('scans clean after the registry has closed and checkpointed its WAL, where a plain task is found', async () => {
    const marker = `PLAINTEXT-${crypto.randomBytes(8).toString('hex')}`;
    const control = `CONTROL-${crypto.randomBytes(8).toString('hex')}`;
    const sealed = await keys.createSealedTask(pht, { image: SEALED_IMAGE, config: { marker }, sites: [site] });
    const plain = await pht.createTask({ image: SEALED_IMAGE, config: { marker: control }, sites: [site] });
    expect((await pht.waitForTask(sealed.id, { timeoutMs: 150_000 })).status).toBe('completed');
    expect((await pht.waitForTask(plain.id, { timeoutMs: 150_000 })).status).toBe('completed');
    await client.close();
    await registry.close();
    expect(scan(registry.dataDir, marker)).toEqual([]);
    // The control: the same scan finds a plain task's marker (config, log, result files).
    expect(scan(registry.dataDir, control).length).toBeGreaterThanOrEqual(2);
  });
});
