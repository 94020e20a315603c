import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../fileservice/main.js';
import { FileServiceStore } from '../../fileservice/store.js';
import { readKeyRingFile, readRotationsFile } from '../../shared/crypto/index.js';
import { makeTempDir } from '../helpers/temp-dirs.js';

let dir: string;
beforeEach(() => {
  dir = makeTempDir('pht-fs-cli-');
});
afterEach(() => {
  vi.restoreAllMocks();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Runs `node fileservice ARGS` in-process (main() is what the entry point calls). */
async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(a.join(' ')));
  const code = await main([...args, '--data-dir', dir], {});
  vi.restoreAllMocks();
  return { code, out: out.join('\n'), err: err.join('\n') };
}

function authenticates(secret: string): boolean {
  const store = new FileServiceStore(dir);
  try {
    return store.authenticate(secret)?.enabled === true;
  } finally {
    store.close();
  }
}

describe('node fileservice admin commands', () => {
  it('create-sender --json prints {name, apiKey}; create-reader --json prints {name, token}', async () => {
    const s = await cli('create-sender', 'hospital-a', '--json');
    expect(s.code).toBe(0);
    const sender = JSON.parse(s.out);
    expect(Object.keys(sender)).toEqual(['name', 'apiKey']);
    expect(sender.name).toBe('hospital-a');
    const r = await cli('create-reader', 'ttp-worker', '--json');
    const reader = JSON.parse(r.out);
    expect(Object.keys(reader)).toEqual(['name', 'token']);
    expect(authenticates(sender.apiKey) && authenticates(reader.token)).toBe(true);
    expect((await cli('create-sender', 'hospital-a')).code).toBe(2);
  });

  it('revokes, enables and rotates keys', async () => {
    const { apiKey } = JSON.parse((await cli('create-sender', 'hospital-a', '--json')).out);
    expect((await cli('revoke', 'sender', 'hospital-a')).code).toBe(0);
    expect(authenticates(apiKey)).toBe(false);
    expect((await cli('enable', 'sender', 'hospital-a')).code).toBe(0);
    expect(authenticates(apiKey)).toBe(true);
    const rotated = JSON.parse((await cli('rotate-key', 'sender', 'hospital-a', '--json')).out);
    expect(authenticates(apiKey)).toBe(false);
    expect(authenticates(rotated.apiKey)).toBe(true);
    expect((await cli('revoke', 'sender', 'nobody')).code).toBe(2);
    const list = JSON.parse((await cli('list', '--json')).out);
    expect(list).toEqual([expect.objectContaining({ kind: 'sender', name: 'hospital-a', enabled: true })]);
  });

  it.each([
    [['--bogus'], /unknown option --bogus/],
    [['create-sender', 'Bad Name'], /invalid sender name/],
    [['create-sender'], /missing sender name/],
    [['revoke', 'site', 'x'], /"sender" or "reader"/],
    [['frobnicate'], /unknown command/],
    [['--port', 'x'], /--port/],
    [['keys', 'burn'], /keys takes/],
    [['keys', 'rotate', '--grace', 'soon'], /--grace/],
  ])('refuses %j with exit 2 and a usage message', async (args, message) => {
    const r = await cli(...args);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
  });

  it('keys create writes a 0600 private key and its public key; rotate keeps the old key readable', async () => {
    const created = await cli('keys', 'create', '--json');
    expect(created.code).toBe(0);
    const { fingerprint, privateKeyFile, publicKeyFile } = JSON.parse(created.out);
    expect(privateKeyFile).toBe(path.join(dir, 'keys', 'ttp.key'));
    expect(fs.statSync(privateKeyFile).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(publicKeyFile, 'utf8')).not.toContain('"d"');
    expect((await cli('keys', 'show')).out).toBe(fingerprint);
    // A second create must not destroy the key that existing ciphertext needs.
    const again = await cli('keys', 'create');
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/already exists/);
    const rotated = await cli('keys', 'rotate', '--grace', '2h');
    expect(rotated.code).toBe(0);
    expect(rotated.out).toMatch(/stay readable until/);
    const ring = readKeyRingFile(privateKeyFile);
    expect(ring.previous.map((p) => p.key.publicKey.fingerprint)).toEqual([fingerprint]);
    expect(readRotationsFile(path.join(dir, 'keys', 'ttp.rotations.json'))).toHaveLength(1);
  });

  it('refuses to use a private key file others can read', async () => {
    await cli('keys', 'create');
    fs.chmodSync(path.join(dir, 'keys', 'ttp.key'), 0o644);
    const r = await cli('keys', 'rotate');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/chmod 600/);
  });
});
