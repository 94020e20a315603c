/**
 * A trusted third party through the real train: two data sites leave their patients' ages in the
 * TTP outbox; the site clients seal them for the TTP and send them to its file service (never to
 * the registry); a run at the TTP pools them and returns the exact median and quartiles, sealed
 * for the researcher.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runKeysCommand } from '../../client/keys-command.js';
import type { SiteClient } from '../../client/site-client.js';
import { startSparqlServer, type RunningSparqlServer } from '../../demo/sparql-server.js';
import { runAdminCommand } from '../../master/admin-cli.js';
import { PhtClient } from '../../sdk/client.js';
import { ResearcherKeys } from '../../sdk/sealed.js';
import { createKeyFiles, keyFilePaths, looksSealed } from '../../shared/crypto/index.js';
import { silentLogger } from '../../shared/logger.js';
import { buildAndPushImage } from '../helpers/docker.js';
import { startTestRegistry, type TestRegistry } from '../helpers/registry-fixture.js';
import { startTestFileService, type TestFileService } from '../fileservice/harness.js';
import { cleanupSite, clientConfig, E2E_REPO, startClient, uniqueSiteName } from './site-harness.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

const TTP_IMAGE = `${E2E_REPO}/ttp:1`;
const source = fs.readFileSync(path.join(__dirname, 'images', 'ttp', 'main.js'), 'utf8');
const AGES = { a: [31, 45, 52, 67, 70], b: [19, 23, 38, 44, 58, 81] };

describe('a trusted third party through the real train', () => {
  let registry: TestRegistry;
  let fileService: TestFileService;
  const sparqls: RunningSparqlServer[] = [];
  const clients: SiteClient[] = [];
  const sites: string[] = [];
  let ttpSite: string;
  let pht: PhtClient;
  let keys: ResearcherKeys;
  let dir: string;

  beforeAll(async () => {
    dir = makeTempDir('pht-ttp-e2e-');
    registry = await startTestRegistry();
    fileService = await startTestFileService();
    await buildAndPushImage(TTP_IMAGE, { 'main.js': source }, { cmd: ['/app/main.js'] });
    // The TTP: its key pair, published by its file service and registered by an admin.
    const ttpKeyFile = fileService.config.keyFile;
    createKeyFiles(ttpKeyFile);
    await runAdminCommand(
      'add-ttp',
      ['ttp'],
      { url: fileService.service.url, 'public-key': keyFilePaths(ttpKeyFile).publicFile },
      { dataDir: registry.dataDir, database: null },
      () => {},
    );
    for (const [letter, ages] of Object.entries(AGES)) {
      const sparql = await startSparqlServer({
        host: '127.0.0.1',
        turtle: ages.map((age, i) => `<urn:${letter}${i}> <urn:age> ${age} .`).join('\n'),
      });
      sparqls.push(sparql);
      const site = uniqueSiteName(`ttp${letter}`);
      sites.push(site);
      const config = clientConfig(registry.url, await registry.createSite(site), sparql.url, {
        keys: { ttpApiKeys: { ttp: fileService.sender(site) } },
      });
      await runKeysCommand('create', {}, config, () => {});
      clients.push(await startClient(config));
    }
    // The TTP's own site client: same key pair, reads the file service's inbox.
    ttpSite = uniqueSiteName('ttp');
    const ttpConfig = clientConfig(registry.url, await registry.createSite(ttpSite), sparqls[0]!.url, {
      keys: {
        keyFile: ttpKeyFile,
        ttpInbox: { url: fileService.service.url, token: fileService.reader('ttp-worker') },
      },
    });
    await runKeysCommand('create', {}, ttpConfig, () => {});
    clients.push(await startClient(ttpConfig, silentLogger()));
    pht = new PhtClient({ url: registry.url, token: await registry.createUser('rita') });
    keys = new ResearcherKeys({ keyFile: path.join(dir, 'rita.key'), pinsFile: path.join(dir, 'pins.json') });
    await keys.create(pht);
  });

  afterAll(async () => {
    for (const c of clients) await c.close();
    for (const s of [...sites, ttpSite]) if (s) await cleanupSite(s);
    await pht?.close();
    for (const s of sparqls) await s.close();
    await fileService?.close();
    await registry?.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('pools the sites’ values at the TTP; the registry and the researcher see only the quantiles', async () => {
    const round1 = await keys.createSealedTask(pht, { image: TTP_IMAGE, config: { mode: 'send' }, sites, ttp: 'ttp' });
    const sent = await pht.waitForTask(round1.id, { timeoutMs: 150_000 });
    for (const run of sent.runs) expect(run.status, run.reason ?? '').toBe('completed');
    // The registry got only each site's result.json, never the outbox.
    for (const run of sent.runs) expect((await pht.listRunFiles(run.id)).map((f) => f.name)).toEqual(['result.json']);
    // The file service got one sealed file per site.
    const inbox = fileService.service.store.listFiles(String(round1.id));
    expect(inbox.map((f) => [f.sender, f.name])).toEqual(sites.map((s) => [s, 'ages.json']).sort());
    for (const f of inbox) {
      const bytes = fs.readFileSync(path.join(fileService.dataDir, 'files', f.storedAs));
      expect(looksSealed(bytes)).toBe(true);
    }

    const round2 = await keys.createSealedTask(pht, {
      image: TTP_IMAGE,
      config: { mode: 'pool', ttpInbox: { taskId: round1.id } },
      sites: [ttpSite],
    });
    const pooled = await pht.waitForTask(round2.id, { timeoutMs: 150_000 });
    const run = pooled.runs[0]!;
    expect(run.status, run.reason ?? '').toBe('completed');
    const saved = await keys.openFiles(await pht.saveRunFiles(run.id, path.join(dir, 'out')));
    const result = JSON.parse(fs.readFileSync(saved[0]!.path, 'utf8'));
    // Central computation over all 11 values: 19 23 31 38 44 45 52 58 67 70 81.
    expect(result).toEqual({ sites: [...sites].sort(), n: 11, q1: 34.5, median: 45, q3: 62.5 });
  });

  it('fails a run that fills the TTP outbox when its task names no TTP, sending nothing', async () => {
    const task = await keys.createSealedTask(pht, { image: TTP_IMAGE, config: { mode: 'send' }, sites: [sites[0]!] });
    const done = await pht.waitForTask(task.id, { timeoutMs: 150_000 });
    expect(done.runs[0]!.status).toBe('failed');
    expect(done.runs[0]!.reason).toMatch(/names none/);
    expect(fileService.service.store.listFiles(String(task.id))).toEqual([]);
  });
});
