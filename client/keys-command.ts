import fs from 'node:fs';
import {
  createKeyFiles,
  keyFilePaths,
  publicKeyToJson,
  readKeyRingFile,
  rotateKeyFiles,
} from '../shared/crypto/index.js';
import { parseDurationMs } from '../shared/duration.js';
import { ConfigError } from '../shared/errors.js';
import type { ClientConfig } from './config.js';
import { SiteRegistryApi } from './registry-api.js';

export const KEYS_USAGE = `  node client keys create [--config FILE]     create the site's key pair (private key: keys.keyFile, mode 0600)
                                             and register its public key with the registry
  node client keys rotate [--grace 168h]     a new key pair, registered with a rotation signed by the old key;
                                             configs sealed to the old key stay readable for the grace period
  node client keys show                      the site's key fingerprint`;

/** `node client keys …`: the site's key pair. Prints what an operator needs (never a private key). */
export async function runKeysCommand(
  sub: string | undefined,
  flags: Record<string, string | true>,
  config: ClientConfig,
  print: (text: string) => void,
): Promise<void> {
  const file = config.keys.keyFile;
  const api = new SiteRegistryApi(config.registryUrl, config.apiKey);
  try {
    switch (sub) {
      case 'create': {
        // An existing key is registered again rather than replaced: old sealed configs need it.
        const key = fs.existsSync(file) ? readKeyRingFile(file).current : createKeyFiles(file);
        await api.registerPublicKey({ publicKey: publicKeyToJson(key.publicKey) });
        print(
          flags.json === true
            ? JSON.stringify({ fingerprint: key.publicKey.fingerprint, privateKeyFile: file })
            : `site key pair ready and registered\nprivate key: ${file} (mode 0600; never leaves this machine)\npublic key:  ${keyFilePaths(file).publicFile}\nfingerprint: ${key.publicKey.fingerprint}\n(researchers can pin it: "site:<name>": "${key.publicKey.fingerprint}")`,
        );
        return;
      }
      case 'rotate': {
        const grace = typeof flags.grace === 'string' ? flags.grace : '168h';
        let graceMs: number;
        try {
          graceMs = parseDurationMs(grace);
        } catch {
          throw new ConfigError(`--grace must be a duration like 168h, got "${grace}"`, null);
        }
        const { ring, statement } = rotateKeyFiles(file, graceMs);
        await api.registerPublicKey({ publicKey: statement.new, rotation: statement });
        print(
          `key rotated and registered\nnew fingerprint: ${ring.current.publicKey.fingerprint}\nconfigs sealed to the old key stay readable until ${ring.previous[0]!.readableUntil}`,
        );
        return;
      }
      case 'show':
        print(readKeyRingFile(file).current.publicKey.fingerprint);
        return;
      default:
        throw new ConfigError(`keys takes "create", "rotate" or "show"\n${KEYS_USAGE}`, null);
    }
  } finally {
    await api.close();
  }
}
