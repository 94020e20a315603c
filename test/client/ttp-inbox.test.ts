import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { compileClientConfig } from '../../client/config.js';
import { readInbox } from '../../client/ttp.js';
import { loadRawConfig } from '../../shared/config-loader.js';
import { clientConfigSchema } from '../../shared/config-schemas.js';
import { createKeyFiles } from '../../shared/crypto/index.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

/** A file service that answers every list with `list`, and counts the file downloads asked of it. */
async function hostileFileService(list: unknown): Promise<{ url: string; downloads: () => number }> {
  let downloads = 0;
  const server = http.createServer((req, res) => {
    if (req.url?.endsWith('/files')) {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(list));
    } else {
      downloads++;
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, downloads: () => downloads };
}

function ttpConfig(inboxUrl: string) {
  const dir = makeTempDir('pht-inbox-');
  cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
  const config = compileClientConfig(
    loadRawConfig({
      file: null,
      fileRequired: false,
      schema: clientConfigSchema,
      env: {},
      envOverrides: [],
      flagOverrides: {
        registryUrl: 'http://127.0.0.1:1',
        apiKey: 'pht_site_' + 'A'.repeat(43),
        sparqlEndpoint: 'http://127.0.0.1:1/sparql',
        allowedImages: [],
        workDir: dir,
        keys: { ttpInbox: { url: inboxUrl, token: 'pht_fsreader_' + 'B'.repeat(43) } },
      },
    }),
    null,
    dir,
  );
  createKeyFiles(config.keys.keyFile);
  return config;
}

describe('a TTP reading its inbox from the file service', () => {
  it('refuses a file list whose sizes are not numbers (they would slip past the byte bound)', async () => {
    const fsvc = await hostileFileService([
      { sender: 'site-a', name: 'a.bin', size: '9999999999999', sha256: 'a'.repeat(64) },
    ]);
    await expect(readInbox(ttpConfig(fsvc.url), 7)).rejects.toThrow(/file list is malformed: .*size/);
    expect(fsvc.downloads()).toBe(0);
  });

  it('refuses a file list naming a sender or file that could climb out of the inbox path', async () => {
    const fsvc = await hostileFileService([
      { sender: '..', name: '../../etc/passwd', size: 1, sha256: 'a'.repeat(64) },
    ]);
    await expect(readInbox(ttpConfig(fsvc.url), 7)).rejects.toThrow(/file list is malformed/);
    expect(fsvc.downloads()).toBe(0);
  });
});
