import { describe, expect, it } from 'vitest';
import {
  FingerprintPins,
  InvalidKeyError,
  KeyChangedError,
  KeyDirectory,
  MalformedEnvelopeError,
  TamperedError,
  WrongKeyError,
  generateKeyPair,
  isSealedConfig,
  openSealedText,
  openTaskConfig,
  publicKeyToJson,
  sealTaskConfig,
  sealText,
} from '../../shared/crypto/index.js';

const researcher = generateKeyPair();
const site = generateKeyPair();
const registryKey = generateKeyPair();

describe('sealed task configs', () => {
  const sealing = { owner: 'alice', config: { secret: 'PLAIN' }, resultRecipients: ['user:alice'], ttp: null };

  it('opens for a target site and verifies against the owner key', () => {
    const sealed = sealTaskConfig(researcher, sealing, [site.publicKey]);
    expect(isSealedConfig(sealed)).toBe(true);
    expect(JSON.stringify(sealed)).not.toContain('PLAIN');
    const opened = openTaskConfig(site, sealed);
    opened.verify(researcher.publicKey);
    expect(opened.sealing).toMatchObject(sealing);
  });

  it('refuses a config signed by someone else (a registry forging tasks for its own key)', () => {
    // The registry knows the site's public key, so it can seal; it cannot sign as alice.
    const forged = sealTaskConfig(registryKey, { ...sealing, resultRecipients: ['user:mallory'] }, [site.publicKey]);
    const opened = openTaskConfig(site, forged);
    expect(() => opened.verify(researcher.publicKey)).toThrow(TamperedError);
  });

  it('refuses a config sealed for another site, and one that is not a sealed config', () => {
    const sealed = sealTaskConfig(researcher, sealing, [generateKeyPair().publicKey]);
    expect(() => openTaskConfig(site, sealed)).toThrow(WrongKeyError);
    expect(() => openTaskConfig(site, { format: 'pht-sealed-config', version: 2, envelope: '' })).toThrow(
      MalformedEnvelopeError,
    );
    expect(() => sealTaskConfig(researcher, { ...sealing, resultRecipients: ['alice'] }, [site.publicKey])).toThrow(
      RangeError,
    );
  });

  it('seals log lines that open again, leaving the registry’s own notices as they are', () => {
    const log =
      sealText([researcher.publicKey], 'line one\n') +
      '[log truncated by the registry]\n' +
      sealText([researcher.publicKey], 'line two\n');
    expect(log).not.toContain('line one');
    expect(openSealedText(researcher, log)).toBe('line one\n[log truncated by the registry]\nline two\n');
    expect(openSealedText(site, log)).toMatch(/could not be opened: the envelope is not sealed for this key/);
  });
});

describe('key directory', () => {
  const record = (kind: string, name: string, key = site.publicKey) => ({
    kind,
    name,
    publicKey: publicKeyToJson(key),
    fingerprint: key.fingerprint,
    rotations: [],
    url: null,
  });

  it('pins the first key and refuses a registry that later swaps it, naming the principal', async () => {
    let answer: unknown = record('site', 'hospital-a');
    const directory = new KeyDirectory(async () => answer, new FingerprintPins(null));
    expect((await directory.get('site', 'hospital-a')).key.fingerprint).toBe(site.publicKey.fingerprint);
    answer = record('site', 'hospital-a', registryKey.publicKey);
    await expect(directory.get('site', 'hospital-a')).rejects.toThrow(KeyChangedError);
    await expect(directory.get('site', 'hospital-a')).rejects.toThrow(/site:hospital-a/);
  });

  it('refuses records for another principal, with a wrong fingerprint, or malformed', async () => {
    const answers: unknown[] = [
      record('site', 'hospital-b'),
      { ...record('site', 'hospital-a'), fingerprint: registryKey.publicKey.fingerprint },
      { ...record('site', 'hospital-a'), extra: 1 },
      null,
    ];
    for (const answer of answers) {
      const directory = new KeyDirectory(async () => answer, new FingerprintPins(null));
      await expect(directory.get('site', 'hospital-a')).rejects.toThrow(InvalidKeyError);
    }
  });
});
