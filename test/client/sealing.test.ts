import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compileClientConfig, type ClientConfig } from '../../client/config.js';
import { RunSealing, SealingSiteApi } from '../../client/sealing.js';
import { loadRawConfig } from '../../shared/config-loader.js';
import { clientConfigSchema } from '../../shared/config-schemas.js';
import {
  createKeyFiles,
  generateKeyPair,
  open,
  openSealedText,
  publicKeyToJson,
  sealTaskConfig,
} from '../../shared/crypto/index.js';
import type { RunAssignment } from '../../shared/types.js';
import { startTestRegistry, type TestRegistry } from '../helpers/registry-fixture.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

let registry: TestRegistry;
let dir: string;
let config: ClientConfig;
let siteKey: string;
const researcher = generateKeyPair();

beforeEach(async () => {
  registry = await startTestRegistry();
  dir = makeTempDir('pht-sealing-');
  siteKey = await registry.createSite('site-a');
  const userToken = await registry.createUser('alice');
  await fetch(`${registry.url}/api/v1/public-key`, {
    method: 'POST',
    headers: { authorization: `Bearer ${userToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ publicKey: publicKeyToJson(researcher.publicKey) }),
  });
  config = compileClientConfig(
    loadRawConfig({
      file: null,
      fileRequired: false,
      schema: clientConfigSchema,
      env: {},
      envOverrides: [],
      flagOverrides: {
        registryUrl: registry.url,
        apiKey: siteKey,
        sparqlEndpoint: 'http://127.0.0.1:1/sparql',
        allowedImages: [],
        workDir: dir,
      },
    }),
    null,
    dir,
  );
});

afterEach(async () => {
  await registry.destroy();
  fs.rmSync(dir, { recursive: true, force: true });
});

function sealingFor(api: SealingSiteApi): RunSealing {
  const sealing = new RunSealing(config, api, () => 'site-a');
  api.sealing = sealing;
  return sealing;
}

async function sealedRun(api: SealingSiteApi): Promise<RunAssignment> {
  const site = createKeyFiles(config.keys.keyFile);
  await api.registerPublicKey({ publicKey: publicKeyToJson(site.publicKey) });
  const sealed = sealTaskConfig(
    researcher,
    { owner: 'alice', config: { secret: 1 }, resultRecipients: ['user:alice'], ttp: null },
    [site.publicKey],
  );
  const task = await registry.store.createTask(
    (await registry.store.authenticate(await registry.createUser('poster')))!,
    {
      name: null,
      image: 'x/y:1',
      config: Buffer.from(JSON.stringify(sealed)),
      configType: 'application/json',
      sites: ['site-a'],
    },
  );
  expect(task.id).toBeGreaterThan(0);
  return (await api.claimNext(0))!;
}

describe('sealing at the site', () => {
  it('keeps sealing a run after a restart, and cuts long logs under the append limit', async () => {
    const api = new SealingSiteApi(registry.url, siteKey);
    const run = await sealedRun(api);
    const prepared = await sealingFor(api).prepare(run);
    expect(prepared.failure).toBeNull();
    expect(prepared.run.config).toEqual({ secret: 1 });
    await api.start(run.id);
    await api.close();

    // A new client process (restart): nothing in memory, the record on disk still seals.
    const restarted = new SealingSiteApi(registry.url, siteKey);
    sealingFor(restarted);
    const text = 'ü'.repeat(60_000) + '😀'.repeat(30_000) + '\n';
    await restarted.log(run.id, text);
    const body = Buffer.from('{"plain": "PLAINTEXT-RESULT"}');
    await restarted.uploadFile(run.id, 'result.json', Readable.from([body]), body.length);
    await restarted.close();

    const log = await registry.store.readLog(run.id);
    expect(log).not.toContain('ü');
    expect(log.split('\n').filter(Boolean).length).toBeGreaterThan(1);
    expect(openSealedText(researcher, log)).toBe(text);
    const stored = (await registry.store.getFile(run.id, 'result.json'))!;
    const bytes = fs.readFileSync(path.join(registry.dataDir, 'files', stored.storedAs));
    expect(open(researcher, bytes).equals(body)).toBe(true);
  });

  it('fails a sealed run when the site has no key, naming the command that makes one', async () => {
    const api = new SealingSiteApi(registry.url, siteKey);
    const run = await sealedRun(api);
    fs.rmSync(config.keys.keyFile);
    const prepared = await sealingFor(api).prepare(run);
    expect(prepared.failure).toMatch(/site site-a cannot open the sealed config: .*node client keys create/);
    expect(prepared.run.config).toBeNull();
    await api.close();
  });
});
